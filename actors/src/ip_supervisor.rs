//! IpSupervisor: keeps exactly one Ip actor per active-or-paused IP of the owned
//! tenants, as Cluster tells it (`SetIps`). A failed Ip actor is restarted with
//! backoff (its `pre_start` returns its orphaned `sending` jobs to `pending`);
//! `Drain` drains every Ip actor for shutdown; `Release` drains and stops the IPs
//! of tenants this node hands off, without holding up the others.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use penguin_engine::store::routing::IpSpec;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use uuid::Uuid;

use crate::children::Children;
use crate::context::Ctx;
use crate::ip::{IpActor, IpArgs, IpMsg};
use crate::ip_ports::EngineIpPorts;

pub struct IpSupervisor;

pub enum IpSupMsg {
    /// The IPs of the tenants this node works, and which of those tenants are
    /// being handed off (their released IPs stay stopped).
    SetIps(Vec<IpSpec>, HashSet<Uuid>),
    Respawn(Uuid),
    Drain(RpcReplyPort<()>),
    /// Drain these IPs (SMTP under way finishes, what has not started goes
    /// back), then stop their actors; answers when all are done. While their
    /// tenant is being handed off they are not started again.
    Release(Vec<Uuid>, RpcReplyPort<()>),
}

pub struct IpSupState {
    ctx: Ctx,
    wanted: HashMap<Uuid, IpSpec>,
    children: Children<Uuid>,
    draining: bool,
    /// IPs given up by `Release` whose tenant is still being handed off.
    released: HashSet<Uuid>,
}

impl Actor for IpSupervisor {
    type Msg = IpSupMsg;
    type State = IpSupState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(IpSupState {
            ctx,
            wanted: HashMap::new(),
            children: Children::default(),
            draining: false,
            released: HashSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IpSupMsg::SetIps(ips, leaving) => state.set_ips(&myself, ips, &leaving).await,
            IpSupMsg::Release(ips, reply) => state.release(ips, reply),
            IpSupMsg::Respawn(ip) => {
                if !state.draining
                    && !state.released.contains(&ip)
                    && !state.children.contains(&ip)
                    && state.wanted.contains_key(&ip)
                {
                    state.spawn(&myself, ip).await;
                }
            }
            IpSupMsg::Drain(reply) => {
                state.draining = true;
                let actors: Vec<ActorRef<IpMsg>> = state
                    .children
                    .keys()
                    .into_iter()
                    .filter_map(|ip| state.ctx.directory.ip(ip))
                    .collect();
                drain_all(&actors).await;
                let _ = reply.send(());
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
        let Some(ip) = state.children.dead_child(event, "ip actor") else {
            return Ok(());
        };
        state.ctx.directory.set_ip(ip, None);
        if !state.draining && state.wanted.contains_key(&ip) {
            state.ctx.metrics.actor_restart("ip");
            let delay = state.children.backoff(&ip);
            tracing::warn!(%ip, ?delay, "restarting ip actor");
            myself.send_after(delay, move || IpSupMsg::Respawn(ip));
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

/// Drains Ip actors at once (each: SMTP under way finishes, what has not
/// started goes back), waiting for all of them.
async fn drain_all(actors: &[ActorRef<IpMsg>]) {
    join_all(
        actors
            .iter()
            .map(|actor| actor.call(IpMsg::Drain, Some(Duration::from_secs(90)))),
    )
    .await;
}

impl IpSupState {
    async fn set_ips(
        &mut self,
        myself: &ActorRef<IpSupMsg>,
        ips: Vec<IpSpec>,
        leaving: &HashSet<Uuid>,
    ) {
        let wanted: HashMap<Uuid, IpSpec> = ips.into_iter().map(|ip| (ip.id, ip)).collect();
        for ip in self.children.keys() {
            match (self.wanted.get(&ip), wanted.get(&ip)) {
                (Some(old), Some(new)) if old == new => {}
                // Limits, warm-up day or status changed: updated in place, so SMTP
                // under way is never cut.
                (Some(old), Some(new)) if old.same_identity(new) => {
                    if let Some(actor) = self.ctx.directory.ip(ip) {
                        let _ = actor.cast(IpMsg::Update(new.clone()));
                    }
                }
                _ => {
                    if let Some(cell) = self.children.remove(&ip) {
                        self.ctx.directory.set_ip(ip, None);
                        cell.stop(Some("ip removed or changed".into()));
                    }
                }
            }
        }
        self.wanted = wanted;
        let wanted = &self.wanted;
        // A tenant that came back (its hand-off ended, then it was taken
        // again) gets its IPs started again.
        self.released.retain(|ip| {
            wanted
                .get(ip)
                .is_some_and(|spec| leaving.contains(&spec.tenant_id))
        });
        if self.draining {
            return;
        }
        let missing: Vec<Uuid> = self
            .wanted
            .keys()
            .filter(|ip| !self.children.contains(ip) && !self.released.contains(ip))
            .copied()
            .collect();
        for ip in missing {
            self.spawn(myself, ip).await;
        }
    }

    /// Takes the IPs out of supervision at once, then drains and stops them in
    /// a task of their own (the supervisor keeps serving the other IPs).
    fn release(&mut self, ips: Vec<Uuid>, reply: RpcReplyPort<()>) {
        let mut leaving = Vec::new();
        for ip in ips {
            self.released.insert(ip);
            if let Some(cell) = self.children.remove(&ip) {
                leaving.push((self.ctx.directory.ip(ip), cell));
                self.ctx.directory.set_ip(ip, None);
            }
        }
        tokio::spawn(async move {
            let actors: Vec<ActorRef<IpMsg>> = leaving
                .iter()
                .filter_map(|(actor, _)| actor.clone())
                .collect();
            drain_all(&actors).await;
            for (_, cell) in leaving {
                cell.stop(Some("tenant handed off".into()));
            }
            let _ = reply.send(());
        });
    }

    async fn spawn(&mut self, myself: &ActorRef<IpSupMsg>, ip: Uuid) {
        let Some(spec) = self.wanted.get(&ip).cloned() else {
            return;
        };
        let tenant = spec.tenant_id;
        let args = IpArgs {
            ctx: self.ctx.clone(),
            ports: Arc::new(EngineIpPorts::new(self.ctx.clone())),
            spec,
        };
        match Actor::spawn_linked(None, IpActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.children.insert(ip, actor.get_cell());
                self.ctx.directory.set_ip(ip, Some(actor));
                crate::ip::announce_ready(&self.ctx, tenant, ip);
            }
            Err(err) => {
                let delay = self.children.backoff(&ip);
                tracing::error!(%ip, error = %err, ?delay, "ip actor failed to start");
                myself.send_after(delay, move || IpSupMsg::Respawn(ip));
            }
        }
    }
}
