//! WarmupSupervisor: keeps one [`Warmup`] actor per warm-up schedule in use among
//! the IPs of the owned tenants, plus one for the warm IPs (no schedule; they only
//! recover their rate factor and end their pauses), as Cluster tells it
//! (`SetIps`, every heartbeat: cheap and idempotent).
//!
//! ```text
//! WarmupSupervisor
//! ├── Warmup("conservative")   the IPs on that ramp
//! ├── Warmup(<custom>)         …
//! └── Warmup(warm)             IPs without a schedule
//! ```
//!
//! A child whose IPs changed gets the new list; a schedule no longer in use stops
//! its child. A failed child is restarted with backoff (counted in
//! `penguin_actor_restarts_total{actor="warmup"}`); it rebuilds everything from
//! Postgres, so a restart judges no day twice.

use std::collections::HashMap;

use penguin_engine::store::routing::IpSpec;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::children::Children;
use crate::context::Ctx;
use crate::warmup::{Warmup, WarmupArgs, WarmupMsg};

/// A child's key: the schedule's name, `None` for the warm IPs.
type Schedule = Option<String>;

pub struct WarmupSupervisor;

pub enum WarmupSupMsg {
    /// Every IP of the tenants this node owns.
    SetIps(Vec<IpSpec>),
    Respawn(Schedule),
}

pub struct WarmupSupState {
    ctx: Ctx,
    wanted: HashMap<Schedule, Vec<IpSpec>>,
    children: Children<Schedule>,
    actors: HashMap<Schedule, ActorRef<WarmupMsg>>,
}

impl Actor for WarmupSupervisor {
    type Msg = WarmupSupMsg;
    type State = WarmupSupState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(WarmupSupState {
            ctx,
            wanted: HashMap::new(),
            children: Children::default(),
            actors: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WarmupSupMsg::SetIps(ips) => state.set_ips(&myself, ips).await,
            WarmupSupMsg::Respawn(schedule) => {
                if !state.children.contains(&schedule) && state.wanted.contains_key(&schedule) {
                    state.spawn(&myself, schedule).await;
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
        let Some(schedule) = state.children.dead_child(event, "warmup actor") else {
            return Ok(());
        };
        state.actors.remove(&schedule);
        if state.wanted.contains_key(&schedule) {
            state.ctx.metrics.actor_restart("warmup");
            let delay = state.children.backoff(&schedule);
            tracing::warn!(
                schedule = name(&schedule),
                ?delay,
                "restarting warmup actor"
            );
            myself.send_after(delay, move || WarmupSupMsg::Respawn(schedule));
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

impl WarmupSupState {
    async fn set_ips(&mut self, myself: &ActorRef<WarmupSupMsg>, ips: Vec<IpSpec>) {
        let mut wanted: HashMap<Schedule, Vec<IpSpec>> = HashMap::new();
        for ip in ips {
            wanted
                .entry(ip.warmup_schedule.clone())
                .or_default()
                .push(ip);
        }
        for schedule in self.children.keys() {
            match wanted.get(&schedule) {
                Some(new) if self.wanted.get(&schedule) == Some(new) => {}
                Some(new) => {
                    if let Some(actor) = self.actors.get(&schedule) {
                        let _ = actor.cast(WarmupMsg::SetIps(new.clone()));
                    }
                }
                None => {
                    self.actors.remove(&schedule);
                    if let Some(cell) = self.children.remove(&schedule) {
                        cell.stop(Some("schedule no longer in use".into()));
                    }
                }
            }
        }
        self.wanted = wanted;
        let missing: Vec<Schedule> = self
            .wanted
            .keys()
            .filter(|schedule| !self.children.contains(schedule))
            .cloned()
            .collect();
        for schedule in missing {
            self.spawn(myself, schedule).await;
        }
    }

    async fn spawn(&mut self, myself: &ActorRef<WarmupSupMsg>, schedule: Schedule) {
        let Some(ips) = self.wanted.get(&schedule).cloned() else {
            return;
        };
        let args = WarmupArgs {
            ctx: self.ctx.clone(),
            schedule: schedule.clone(),
            ips,
        };
        match Actor::spawn_linked(None, Warmup, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.children.insert(schedule.clone(), actor.get_cell());
                self.actors.insert(schedule, actor);
            }
            Err(err) => {
                let delay = self.children.backoff(&schedule);
                tracing::error!(schedule = name(&schedule), error = %err, ?delay, "warmup actor failed to start");
                myself.send_after(delay, move || WarmupSupMsg::Respawn(schedule));
            }
        }
    }
}

fn name(schedule: &Schedule) -> &str {
    schedule.as_deref().unwrap_or("warm")
}
