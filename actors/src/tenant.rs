//! Tenant(t): one per owned tenant. Pops the tenant's Redis lists in priority order
//! (reliable pop: popped jobs sit in the in-flight set until their Ip claims them)
//! and routes each job to an IP of its campaign's pool that has credit.
//!
//! Credits bound everything downstream: each IP grants `IpActor::capacity` jobs;
//! a job spends one when routed and returns it when its delivery finished (or it
//! was not claimed). The tenant pops only as many jobs as its IPs have credit for,
//! so Ip mailboxes and work queues stay bounded. Jobs that cannot be routed yet
//! (their pool's IPs are busy) wait in a small local overflow, counted against the
//! credit. Pops are coalesced: credits arriving within a few milliseconds share one
//! Redis round trip. A slow safety tick covers lost wake-ups; there is no busy loop.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use penguin_engine::queue::Popped;
use penguin_engine::store::routing::IpSpec;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use uuid::Uuid;

use crate::context::Ctx;
use crate::ip::{IpActor, IpMsg};

/// Most jobs taken from Redis in one pop.
const MAX_POP: usize = 1_000;
/// Credits arriving within this window are served by one pop.
const COALESCE: Duration = Duration::from_millis(25);
const SAFETY_TICK: Duration = Duration::from_secs(1);

pub struct TenantActor;

pub struct TenantArgs {
    pub ctx: Ctx,
    pub tenant_id: Uuid,
    pub ips: Vec<IpSpec>,
}

pub enum TenantMsg {
    /// The feeder or reaper pushed jobs for this tenant.
    JobsAvailable,
    /// `n` jobs routed to `ip` are done with.
    Credit {
        ip: Uuid,
        n: usize,
    },
    /// An Ip actor (re)started with nothing in flight.
    IpReady {
        ip: Uuid,
        capacity: usize,
    },
    /// The tenant's IPs changed (added, paused, resumed).
    SetIps(Vec<IpSpec>),
    Pop,
}

struct Slot {
    active: bool,
    credit: usize,
}

pub struct TenantState {
    ctx: Ctx,
    tenant: Uuid,
    slots: HashMap<Uuid, Slot>,
    overflow: VecDeque<Popped>,
    pop_scheduled: bool,
}

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = TenantArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: TenantArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = TenantState {
            ctx: args.ctx,
            tenant: args.tenant_id,
            slots: HashMap::new(),
            overflow: VecDeque::new(),
            pop_scheduled: false,
        };
        state.set_ips(args.ips);
        myself.send_interval(SAFETY_TICK, || TenantMsg::JobsAvailable);
        state.schedule_pop(&myself, Duration::ZERO);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TenantMsg::JobsAvailable => state.schedule_pop(&myself, Duration::ZERO),
            TenantMsg::Credit { ip, n } => {
                if let Some(slot) = state.slots.get_mut(&ip) {
                    slot.credit = (slot.credit + n).min(IpActor::capacity(&state.ctx));
                }
                state.schedule_pop(&myself, COALESCE);
            }
            TenantMsg::IpReady { ip, capacity } => {
                if let Some(slot) = state.slots.get_mut(&ip) {
                    slot.credit = capacity;
                }
                state.schedule_pop(&myself, Duration::ZERO);
            }
            TenantMsg::SetIps(ips) => {
                state.set_ips(ips);
                state.schedule_pop(&myself, Duration::ZERO);
            }
            TenantMsg::Pop => {
                state.pop_scheduled = false;
                let more = state.pop_and_route().await;
                if more {
                    state.schedule_pop(&myself, Duration::ZERO);
                }
            }
        }
        Ok(())
    }
}

impl TenantState {
    fn set_ips(&mut self, ips: Vec<IpSpec>) {
        let capacity = IpActor::capacity(&self.ctx);
        let mut slots = HashMap::with_capacity(ips.len());
        for ip in ips.into_iter().filter(|ip| ip.tenant_id == self.tenant) {
            let credit = self.slots.get(&ip.id).map_or(capacity, |s| s.credit);
            slots.insert(
                ip.id,
                Slot {
                    active: ip.active,
                    credit,
                },
            );
        }
        self.slots = slots;
    }

    fn schedule_pop(&mut self, myself: &ActorRef<TenantMsg>, delay: Duration) {
        if self.pop_scheduled {
            return;
        }
        self.pop_scheduled = true;
        if delay.is_zero() {
            let _ = myself.cast(TenantMsg::Pop);
        } else {
            myself.send_after(delay, || TenantMsg::Pop);
        }
    }

    fn free_credit(&self) -> usize {
        self.slots
            .values()
            .filter(|s| s.active)
            .map(|s| s.credit)
            .sum()
    }

    /// Routes the overflow, then pops what the remaining credit allows. Returns
    /// whether another pop right away could find more work.
    async fn pop_and_route(&mut self) -> bool {
        let mut items: Vec<Popped> = self.overflow.drain(..).collect();
        let room = self.free_credit().saturating_sub(items.len()).min(MAX_POP);
        let mut popped_full = false;
        if room > 0 {
            let deadline = self.ctx.now_ms() + self.ctx.config.queue.inflight_deadline_ms as i64;
            match self.ctx.queue.pop(self.tenant, room, deadline).await {
                Ok((popped, _dropped)) => {
                    popped_full = popped.len() == room;
                    items.extend(popped);
                }
                Err(err) => {
                    tracing::warn!(tenant = %self.tenant, error = %err, "popping jobs failed")
                }
            }
        }
        if items.is_empty() {
            return false;
        }
        let mut batches: HashMap<Uuid, Vec<Popped>> = HashMap::new();
        for item in items {
            match self.pick_ip(&item).await {
                Some(ip) => batches.entry(ip).or_default().push(item),
                None => self.overflow.push_back(item),
            }
        }
        for (ip, batch) in batches {
            let n = batch.len();
            let sent = self
                .ctx
                .directory
                .ip(ip)
                .is_some_and(|actor| actor.cast(IpMsg::Deliver(batch)).is_ok());
            if !sent {
                // The Ip actor is restarting: its IpReady will restore the credit; the
                // jobs stay in Redis' in-flight set until the reaper re-queues them.
                tracing::debug!(%ip, jobs = n, "ip actor unavailable");
            }
        }
        popped_full
    }

    /// The IP of the job's campaign pool with the most credit left, spending one.
    async fn pick_ip(&mut self, item: &Popped) -> Option<Uuid> {
        let job = item.payload.job();
        let campaign = self
            .ctx
            .campaigns
            .get(&self.ctx.pg, job.tenant_id, job.campaign_id)
            .await
            .ok()?;
        let best = campaign
            .spec
            .ip_ids
            .iter()
            .filter_map(|ip| self.slots.get(ip).map(|slot| (ip, slot)))
            .filter(|(_, slot)| slot.active && slot.credit > 0)
            .max_by_key(|(_, slot)| slot.credit)
            .map(|(ip, _)| *ip)?;
        if let Some(slot) = self.slots.get_mut(&best) {
            slot.credit -= 1;
        }
        Some(best)
    }
}
