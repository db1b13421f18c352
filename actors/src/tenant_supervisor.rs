//! TenantSupervisor: one Tenant actor per owned tenant, as Cluster tells it
//! (`SetTenants`); restarts a failed Tenant actor with backoff. Jobs a dead Tenant
//! had popped stay in Redis' in-flight set and are re-queued by the Reaper.

use std::collections::HashMap;
use std::sync::Arc;

use penguin_engine::store::routing::IpSpec;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use uuid::Uuid;

use crate::children::Children;
use crate::context::Ctx;
use crate::tenant::{TenantActor, TenantArgs, TenantMsg};
use crate::tenant_ports::EngineTenantPorts;

pub struct TenantSupervisor;

pub enum TenantSupMsg {
    /// The owned tenants and their IPs.
    SetTenants(HashMap<Uuid, Vec<IpSpec>>),
    Respawn(Uuid),
}

pub struct TenantSupState {
    ctx: Ctx,
    wanted: HashMap<Uuid, Vec<IpSpec>>,
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
            wanted: HashMap::new(),
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
            TenantSupMsg::SetTenants(tenants) => state.set_tenants(&myself, tenants).await,
            TenantSupMsg::Respawn(tenant) => {
                if !state.children.contains(&tenant) && state.wanted.contains_key(&tenant) {
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
        if state.wanted.contains_key(&tenant) {
            state.ctx.metrics.actor_restart("tenant");
            let delay = state.children.backoff(&tenant);
            tracing::warn!(%tenant, ?delay, "restarting tenant actor");
            myself.send_after(delay, move || TenantSupMsg::Respawn(tenant));
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
    async fn set_tenants(
        &mut self,
        myself: &ActorRef<TenantSupMsg>,
        tenants: HashMap<Uuid, Vec<IpSpec>>,
    ) {
        for tenant in self.children.keys() {
            if !tenants.contains_key(&tenant)
                && let Some(cell) = self.children.remove(&tenant)
            {
                self.ctx.directory.set_tenant(tenant, None);
                cell.stop(Some("tenant no longer owned".into()));
            }
        }
        self.wanted = tenants;
        let tenants: Vec<Uuid> = self.wanted.keys().copied().collect();
        for tenant in tenants {
            if self.children.contains(&tenant) {
                if let Some(actor) = self.ctx.directory.tenant(tenant) {
                    let ips = self.wanted.get(&tenant).cloned().unwrap_or_default();
                    let _ = actor.cast(TenantMsg::SetIps(ips));
                }
            } else {
                self.spawn(myself, tenant).await;
            }
        }
    }

    async fn spawn(&mut self, myself: &ActorRef<TenantSupMsg>, tenant: Uuid) {
        let args = TenantArgs {
            ctx: self.ctx.clone(),
            ports: Arc::new(EngineTenantPorts(self.ctx.clone())),
            tenant_id: tenant,
            ips: self.wanted.get(&tenant).cloned().unwrap_or_default(),
        };
        match Actor::spawn_linked(None, TenantActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.children.insert(tenant, actor.get_cell());
                self.ctx.directory.set_tenant(tenant, Some(actor));
            }
            Err(err) => {
                let delay = self.children.backoff(&tenant);
                tracing::error!(%tenant, error = %err, ?delay, "tenant actor failed to start");
                myself.send_after(delay, move || TenantSupMsg::Respawn(tenant));
            }
        }
    }
}
