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
//!
//! The urgent lane (priority ≤ 50): the pop takes the high list first, the jobs
//! of one round (overflow and fresh pop together) are routed most urgent first
//! (stable, so FIFO within a priority), so urgent jobs spend the first credit and
//! an overflow serves them first. While urgent jobs wait (in the overflow, or in
//! Redis: the last pop brought some, or the feeder said so) credits are not
//! coalesced: each one pops at once.
//!
//! Allowances: an IP that has used its hourly or daily allowance refuses the jobs
//! it cannot send, with the time its next window opens; the tenant marks it blocked
//! until then and routes the jobs to another IP of their pool. When every IP of a
//! job's pool is blocked, the job goes back to Postgres with `run_at` at the
//! earliest reopening (the feeder sleeps until then): waiting costs nothing.
//!
//! Redis, the campaign pools and Postgres are reached through [`TenantPorts`]
//! (the real adapter, or the fakes of the actor tests in `tenant_tests.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use penguin_engine::domain::is_urgent;
use penguin_engine::queue::Popped;
use penguin_engine::store::routing::IpSpec;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::context::Ctx;
use crate::ip::{IpActor, IpMsg};
use crate::tenant_ports::TenantPorts;

/// Most jobs taken from Redis in one pop.
const MAX_POP: usize = 1_000;
/// Credits arriving within this window are served by one pop.
const COALESCE: Duration = Duration::from_millis(25);
/// Shortest safety tick; it follows `queue.feed_idle_ms` (or `queue.tenant_idle_ms`,
/// when shorter: the tick also looks whether the tenant went idle) when longer.
const SAFETY_TICK: Duration = Duration::from_secs(1);

pub struct TenantActor;

pub struct TenantArgs {
    pub ctx: Ctx,
    /// Redis lists, campaign pools, Postgres.
    pub ports: Arc<dyn TenantPorts>,
    pub tenant_id: Uuid,
    pub ips: Vec<IpSpec>,
}

pub enum TenantMsg {
    /// The feeder or reaper pushed jobs for this tenant.
    JobsAvailable,
    /// The safety tick: a pop, and a look whether the tenant has gone idle.
    Tick,
    /// The feeder pushed urgent jobs (priority ≤ 50): pop without coalescing
    /// until a pop finds none.
    UrgentAvailable,
    /// `n` jobs routed to `ip` are done with.
    Credit { ip: Uuid, n: usize },
    /// An Ip actor (re)started with nothing in flight.
    IpReady { ip: Uuid, capacity: usize },
    /// The tenant's IPs changed (added, paused, resumed).
    SetIps(Vec<IpSpec>),
    /// `ip` has no allowance for these jobs before `until` (credit comes back).
    Refused {
        ip: Uuid,
        jobs: Vec<Popped>,
        until: OffsetDateTime,
    },
    /// A planned pop; one of an older plan (superseded by a sooner one) is ignored.
    Pop(u64),
}

/// A planned pop: `Now` is sooner than `Coalescing`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Planned {
    Now,
    Coalescing,
}

struct Slot {
    active: bool,
    credit: usize,
    /// Used up its allowance until then.
    blocked_until: Option<OffsetDateTime>,
}

impl Slot {
    fn open(&self, now: OffsetDateTime) -> bool {
        self.active && self.blocked_until.is_none_or(|until| until <= now)
    }
}

/// Where a job can go.
enum Route {
    Ip(Uuid),
    /// Its pool's IPs have allowance but no credit right now.
    Busy,
    /// Every IP of its pool is blocked; the earliest reopening.
    Wait(OffsetDateTime),
    /// Every IP of its pool is paused: back to Postgres, where the feeder leaves
    /// it until one resumes (in Redis it would hold the window other IPs need).
    Paused,
}

pub struct TenantState {
    ctx: Ctx,
    ports: Arc<dyn TenantPorts>,
    tenant: Uuid,
    slots: HashMap<Uuid, Slot>,
    overflow: VecDeque<Popped>,
    /// The next pop already planned, if any.
    planned: Option<Planned>,
    /// The generation of the planned pop (see [`TenantMsg::Pop`]).
    pop_generation: u64,
    /// Urgent jobs wait (overflow, or Redis as far as this actor knows): credits
    /// pop at once instead of coalescing.
    urgent_waiting: bool,
    /// Wakes the tenant when the earliest blocked IP reopens.
    reopen_timer: Option<(OffsetDateTime, tokio::task::JoinHandle<()>)>,
    /// When a pop last found or routed a job.
    last_work: Instant,
}

impl Drop for TenantState {
    fn drop(&mut self) {
        if let Some((_, timer)) = self.reopen_timer.take() {
            timer.abort();
        }
    }
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
            ports: args.ports,
            tenant: args.tenant_id,
            slots: HashMap::new(),
            overflow: VecDeque::new(),
            planned: None,
            pop_generation: 0,
            urgent_waiting: false,
            reopen_timer: None,
            last_work: Instant::now(),
        };
        state.set_ips(args.ips);
        let queue = &state.ctx.config.queue;
        let tick =
            Duration::from_millis(queue.feed_idle_ms.min(queue.tenant_idle_ms)).max(SAFETY_TICK);
        myself.send_interval(tick, || TenantMsg::Tick);
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
            TenantMsg::Tick => {
                state.schedule_pop(&myself, Duration::ZERO);
                state.stop_when_idle().await;
            }
            TenantMsg::UrgentAvailable => {
                state.urgent_waiting = true;
                state.schedule_pop(&myself, Duration::ZERO);
            }
            TenantMsg::Credit { ip, n } => {
                if let Some(slot) = state.slots.get_mut(&ip) {
                    slot.credit = (slot.credit + n).min(IpActor::capacity(&state.ctx));
                }
                let delay = if state.urgent_waiting {
                    Duration::ZERO
                } else {
                    COALESCE
                };
                state.schedule_pop(&myself, delay);
            }
            TenantMsg::IpReady { ip, capacity } => {
                if let Some(slot) = state.slots.get_mut(&ip) {
                    slot.credit = capacity;
                }
                state.schedule_pop(&myself, Duration::ZERO);
            }
            TenantMsg::SetIps(ips) => {
                // Told on every heartbeat; only a change is worth a pop.
                if state.set_ips(ips) {
                    state.schedule_pop(&myself, Duration::ZERO);
                }
            }
            TenantMsg::Refused { ip, jobs, until } => {
                if let Some(slot) = state.slots.get_mut(&ip) {
                    slot.credit = (slot.credit + jobs.len()).min(IpActor::capacity(&state.ctx));
                    slot.blocked_until = Some(slot.blocked_until.map_or(until, |u| u.max(until)));
                }
                state.overflow.extend(jobs);
                state.arm_reopen_timer(&myself);
                state.schedule_pop(&myself, Duration::ZERO);
            }
            TenantMsg::Pop(generation) if generation != state.pop_generation => {}
            TenantMsg::Pop(_) => {
                state.planned = None;
                state
                    .ctx
                    .wakeups
                    .tenant_pops
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    /// Applies the tenant's IPs; returns whether any was added, removed, paused or
    /// resumed.
    fn set_ips(&mut self, ips: Vec<IpSpec>) -> bool {
        let capacity = IpActor::capacity(&self.ctx);
        let mut slots = HashMap::with_capacity(ips.len());
        for ip in ips.into_iter().filter(|ip| ip.tenant_id == self.tenant) {
            let old = self.slots.get(&ip.id);
            slots.insert(
                ip.id,
                Slot {
                    active: ip.active,
                    credit: old.map_or(capacity, |s| s.credit),
                    blocked_until: old.and_then(|s| s.blocked_until),
                },
            );
        }
        let changed = slots.len() != self.slots.len()
            || slots.iter().any(|(id, slot)| {
                self.slots
                    .get(id)
                    .is_none_or(|old| old.active != slot.active)
            });
        self.slots = slots;
        changed
    }

    /// Asks TenantSupervisor to stop this actor when the tenant has had nothing
    /// to do for `queue.tenant_idle_ms`: no job popped or waiting here, every
    /// credit back (nothing routed is still at an IP), nothing of it in Redis.
    /// An idle tenant then costs no timer and no Redis command until a
    /// notification, a takeover or the Feeder's partition scan wakes it.
    async fn stop_when_idle(&mut self) {
        let idle = Duration::from_millis(self.ctx.config.queue.tenant_idle_ms);
        let capacity = IpActor::capacity(&self.ctx);
        if self.last_work.elapsed() < idle
            || !self.overflow.is_empty()
            || self.slots.values().any(|slot| slot.credit < capacity)
        {
            return;
        }
        let since = Instant::now();
        match self.ports.held(self.tenant).await {
            Ok(0) => crate::tenant_supervisor::idle(&self.ctx, self.tenant, since),
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(tenant = %self.tenant, error = %err, "reading the tenant's redis state failed")
            }
        }
    }

    /// Plans a pop after `delay` (zero or [`COALESCE`]), unless one is planned
    /// no later; a pop wanted now supersedes a coalescing one.
    fn schedule_pop(&mut self, myself: &ActorRef<TenantMsg>, delay: Duration) {
        let wanted = if delay.is_zero() {
            Planned::Now
        } else {
            Planned::Coalescing
        };
        if self.planned.is_some_and(|planned| planned <= wanted) {
            return;
        }
        self.planned = Some(wanted);
        self.pop_generation += 1;
        let generation = self.pop_generation;
        match wanted {
            Planned::Now => {
                let _ = myself.cast(TenantMsg::Pop(generation));
            }
            Planned::Coalescing => {
                myself.send_after(delay, move || TenantMsg::Pop(generation));
            }
        }
    }

    fn free_credit(&self) -> usize {
        let now = self.ctx.clock.now();
        self.slots
            .values()
            .filter(|s| s.open(now))
            .map(|s| s.credit)
            .sum()
    }

    /// Schedules a wake-up for the earliest time a blocked IP reopens (on the
    /// engine's clock, so a test's manual clock drives it too).
    fn arm_reopen_timer(&mut self, myself: &ActorRef<TenantMsg>) {
        let now = self.ctx.clock.now();
        let Some(earliest) = self
            .slots
            .values()
            .filter_map(|s| s.blocked_until)
            .filter(|until| *until > now)
            .min()
        else {
            return;
        };
        if let Some((at, timer)) = &self.reopen_timer {
            if *at == earliest && !timer.is_finished() {
                return;
            }
            timer.abort();
        }
        let sleep = self.ctx.clock.sleep_until(earliest);
        let myself = myself.clone();
        let timer = tokio::spawn(async move {
            sleep.await;
            let _ = myself.cast(TenantMsg::JobsAvailable);
        });
        self.reopen_timer = Some((earliest, timer));
    }

    /// Routes the overflow, then pops what the remaining credit allows. Returns
    /// whether another pop right away could find more work.
    async fn pop_and_route(&mut self) -> bool {
        let mut items: Vec<Popped> = self.overflow.drain(..).collect();
        let room = if self.ctx.lease_valid() {
            self.free_credit().saturating_sub(items.len()).min(MAX_POP)
        } else {
            0 // the lease may be another node's by now: pop nothing
        };
        let mut popped_full = false;
        // Whether the pop brought urgent jobs (`None`: no pop, nothing learnt).
        let mut popped_urgent = None;
        if room > 0 {
            let deadline =
                self.ctx.inflight_now_ms() + self.ctx.config.queue.inflight_deadline_ms as i64;
            match self.ports.pop(self.tenant, room, deadline).await {
                Ok((popped, dropped)) => {
                    popped_full = popped.len() == room;
                    popped_urgent = Some(popped.iter().any(Self::urgent));
                    if !popped.is_empty() || dropped > 0 {
                        crate::feeder::popped(&self.ctx, self.tenant, popped.len() + dropped);
                    }
                    items.extend(popped);
                }
                Err(err) => {
                    tracing::warn!(tenant = %self.tenant, error = %err, "popping jobs failed")
                }
            }
        }
        if items.is_empty() {
            self.urgent_waiting = popped_urgent.unwrap_or(self.urgent_waiting);
            return false;
        }
        self.last_work = Instant::now();
        // Most urgent first (stable: FIFO within a priority), so urgent jobs take
        // the first credits and an overflow serves them before bulk.
        items.sort_by_key(|item| item.payload.job().priority);
        let mut batches: HashMap<Uuid, Vec<Popped>> = HashMap::new();
        let mut waiting: HashMap<OffsetDateTime, Vec<Popped>> = HashMap::new();
        for item in items {
            match self.pick_ip(&item).await {
                Route::Ip(ip) => batches.entry(ip).or_default().push(item),
                Route::Busy => self.overflow.push_back(item),
                Route::Wait(until) => waiting.entry(until).or_default().push(item),
                Route::Paused => waiting.entry(self.ctx.clock.now()).or_default().push(item),
            }
        }
        for (until, jobs) in waiting {
            self.wait_in_postgres(jobs, until).await;
        }
        // A pop that brought urgent jobs may have left more in the high list; one
        // that brought none found it empty (it is popped first).
        self.urgent_waiting =
            self.overflow.iter().any(Self::urgent) || popped_urgent.unwrap_or(self.urgent_waiting);
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

    fn urgent(item: &Popped) -> bool {
        is_urgent(item.payload.job().priority)
    }

    /// The open IP of the job's campaign pool with the most credit left (spending
    /// one), else whether it must wait for credit or for an allowance window.
    async fn pick_ip(&mut self, item: &Popped) -> Route {
        let job = item.payload.job();
        let Ok(campaign_ips) = self
            .ports
            .campaign_ips(job.tenant_id, job.campaign_id)
            .await
        else {
            return Route::Busy;
        };
        let now = self.ctx.clock.now();
        let known: Vec<(&Uuid, &Slot)> = campaign_ips
            .iter()
            .filter_map(|ip| self.slots.get(ip).map(|slot| (ip, slot)))
            .collect();
        if !known.is_empty() && known.iter().all(|(_, slot)| !slot.active) {
            return Route::Paused;
        }
        let pool: Vec<(&Uuid, &Slot)> = known.into_iter().filter(|(_, slot)| slot.active).collect();
        let best = pool
            .iter()
            .filter(|(_, slot)| slot.open(now) && slot.credit > 0)
            .max_by_key(|(_, slot)| slot.credit)
            .map(|(ip, _)| **ip);
        if let Some(best) = best {
            if let Some(slot) = self.slots.get_mut(&best) {
                slot.credit -= 1;
            }
            return Route::Ip(best);
        }
        let reopens = pool
            .iter()
            .map(|(_, slot)| slot.blocked_until.filter(|until| *until > now))
            .collect::<Option<Vec<_>>>();
        match reopens.and_then(|times| times.into_iter().min()) {
            Some(earliest) => Route::Wait(earliest),
            None => Route::Busy,
        }
    }

    /// Jobs whose whole pool has used its allowance (or is paused): back to
    /// Postgres until the earliest reopening, and out of Redis.
    async fn wait_in_postgres(&mut self, jobs: Vec<Popped>, until: OffsetDateTime) {
        let ids: Vec<Uuid> = jobs.iter().map(|p| p.payload.job_id()).collect();
        let now = self.ctx.clock.now();
        let Some(epoch) = self.ctx.fence(self.tenant) else {
            return;
        };
        match self
            .ports
            .postpone(self.tenant, epoch, &ids, until, now)
            .await
        {
            // Another node took the tenant over: the jobs (and their Redis copies)
            // are its own now.
            Ok(None) => self.ctx.metrics.fenced("postpone", ids.len()),
            Ok(Some(moved)) => {
                self.ctx.metrics.allowance_wait(moved as usize);
                tracing::debug!(tenant = %self.tenant, jobs = moved, %until, "pool used its allowance; jobs wait in postgres");
                let raws: Vec<&[u8]> = jobs.iter().map(|p| p.raw.as_slice()).collect();
                if let Err(err) = self.ports.ack(self.tenant, &raws).await {
                    tracing::warn!(error = %err, "acknowledging waiting jobs failed");
                }
                crate::feeder::wake_at(&self.ctx, until);
            }
            Err(err) => {
                // They stay in the in-flight set; the reaper re-queues them.
                tracing::warn!(tenant = %self.tenant, error = %err, "postponing jobs failed");
            }
        }
    }
}

#[cfg(test)]
#[path = "tenant_tests.rs"]
mod tests;
