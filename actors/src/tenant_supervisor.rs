//! TenantSupervisor: one Tenant actor per owned tenant *with work*. The Feeder
//! (or a takeover) says a tenant has work ([`activate`]): a Tenant actor starts
//! if none runs, or the running one is told. A Tenant actor that has idled for
//! `queue.tenant_idle_ms` with nothing of its tenant left in Redis asks to stop
//! (`Idle`), and is stopped unless work arrived since it looked. Cluster tells it
//! the owned IPs (`SetIps`); a Tenant actor whose partition is no longer owned is
//! stopped. A failed Tenant actor is restarted with backoff. Jobs a dead Tenant
//! had popped stay in Redis' in-flight set and are re-queued by the Reaper.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use penguin_engine::store::routing::IpSpec;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use uuid::Uuid;

use crate::children::Children;
use crate::context::Ctx;
use crate::tenant::{TenantActor, TenantArgs, TenantMsg};
use crate::tenant_ports::EngineTenantPorts;

pub struct TenantSupervisor;

pub enum TenantSupMsg {
    /// The IPs of the owned partitions' tenants.
    SetIps(Vec<IpSpec>),
    /// The tenant has work (urgent work: `true`): start its actor or wake it.
    Activate(Uuid, bool),
    /// The tenant's actor found nothing to do since the given instant (when it
    /// began to look): stop it, unless it was activated since.
    Idle(Uuid, Instant),
    Respawn(Uuid),
}

pub struct TenantSupState {
    ctx: Ctx,
    /// The owned IPs, by tenant.
    ips: HashMap<Uuid, Vec<IpSpec>>,
    /// When each tenant with an actor was last activated.
    activated: HashMap<Uuid, Instant>,
    children: Children<Uuid>,
}

impl Actor for TenantSupervisor {
    type Msg = TenantSupMsg;
    type State = TenantSupState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(TenantSupState {
            ctx,
            ips: HashMap::new(),
            activated: HashMap::new(),
            children: Children::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TenantSupMsg::SetIps(ips) => state.set_ips(ips),
            TenantSupMsg::Activate(tenant, urgent) => {
                if !state.ctx.owns(tenant) {
                    return Ok(());
                }
                state.activated.insert(tenant, Instant::now());
                if !state.children.contains(&tenant) {
                    state.spawn(&myself, tenant).await;
                }
                if let Some(actor) = state.ctx.directory.tenant(tenant) {
                    let _ = actor.cast(if urgent {
                        TenantMsg::UrgentAvailable
                    } else {
                        TenantMsg::JobsAvailable
                    });
                }
            }
            TenantSupMsg::Idle(tenant, since) => {
                let woken = state.activated.get(&tenant).is_some_and(|at| *at > since);
                if !woken {
                    state.stop(tenant, "tenant idle");
                }
            }
            TenantSupMsg::Respawn(tenant) => {
                if !state.children.contains(&tenant)
                    && state.activated.contains_key(&tenant)
                    && state.ctx.owns(tenant)
                {
                    state.spawn(&myself, tenant).await;
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(tenant) = state.children.dead_child(event, "tenant actor") else {
            return Ok(());
        };
        state.ctx.directory.set_tenant(tenant, None);
        if state.ctx.owns(tenant) {
            state.ctx.metrics.actor_restart("tenant");
            let delay = state.children.backoff(&tenant);
            tracing::warn!(%tenant, ?delay, "restarting tenant actor");
            myself.send_after(delay, move || TenantSupMsg::Respawn(tenant));
        } else {
            state.activated.remove(&tenant);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for cell in state.children.drain() {
            cell.stop(Some("engine stopping".into()));
        }
        Ok(())
    }
}

impl TenantSupState {
    fn set_ips(&mut self, ips: Vec<IpSpec>) {
        let mut by_tenant: HashMap<Uuid, Vec<IpSpec>> = HashMap::new();
        for ip in ips {
            by_tenant.entry(ip.tenant_id).or_default().push(ip);
        }
        for tenant in self.children.keys() {
            if !self.ctx.owns(tenant) {
                self.stop(tenant, "tenant no longer owned");
            } else if let Some(actor) = self.ctx.directory.tenant(tenant) {
                let ips = by_tenant.get(&tenant).cloned().unwrap_or_default();
                let _ = actor.cast(TenantMsg::SetIps(ips));
            }
        }
        self.ips = by_tenant;
    }

    fn stop(&mut self, tenant: Uuid, why: &str) {
        self.activated.remove(&tenant);
        if let Some(cell) = self.children.remove(&tenant) {
            self.ctx.directory.set_tenant(tenant, None);
            cell.stop(Some(why.into()));
            self.ctx.metrics.active_tenants(self.children.len());
        }
    }

    async fn spawn(&mut self, myself: &ActorRef<TenantSupMsg>, tenant: Uuid) {
        let args = TenantArgs {
            ctx: self.ctx.clone(),
            ports: Arc::new(EngineTenantPorts(self.ctx.clone())),
            tenant_id: tenant,
            ips: self.ips.get(&tenant).cloned().unwrap_or_default(),
        };
        match Actor::spawn_linked(None, TenantActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.children.insert(tenant, actor.get_cell());
                self.ctx.directory.set_tenant(tenant, Some(actor));
                self.ctx.metrics.active_tenants(self.children.len());
            }
            Err(err) => {
                let delay = self.children.backoff(&tenant);
                tracing::error!(%tenant, error = %err, ?delay, "tenant actor failed to start");
                myself.send_after(delay, move || TenantSupMsg::Respawn(tenant));
            }
        }
    }
}

/// Tells TenantSupervisor `tenant` has work (`urgent`: priority ≤ 50 among
/// it): its Tenant actor starts, or is woken.
pub fn activate(ctx: &Ctx, tenant: Uuid, urgent: bool) {
    if let Some(supervisor) = ctx.directory.tenant_supervisor() {
        let _ = supervisor.cast(TenantSupMsg::Activate(tenant, urgent));
    }
}

/// A Tenant actor found nothing to do since `since`: it may be stopped.
pub fn idle(ctx: &Ctx, tenant: Uuid, since: Instant) {
    if let Some(supervisor) = ctx.directory.tenant_supervisor() {
        let _ = supervisor.cast(TenantSupMsg::Idle(tenant, since));
    }
}
