//! Feeder: moves due jobs Postgres → Redis for the tenants of this node's
//! partitions that have work — never visiting the others. Its round works the
//! *active* tenants: it reads their list depths in one round trip and tops up
//! those below half the window (`queue.window`) with at most `queue.feed_batch`
//! jobs, claimed `pending|deferred → queued` with `SKIP LOCKED`, then wakes their
//! Tenant actors (`TenantSupMsg::Activate`, which starts one if none runs).
//! Postgres stays the backlog; Redis holds a bounded window.
//!
//! A tenant becomes active when something says it has work: a control
//! notification (a campaign started or resumed, leads imported into a running
//! one, an IP resumed: [`activate`]), a takeover that found its `queued` jobs, or
//! the partition scan (`store::due::scan`: per running campaign of the owned
//! partitions, its first waiting job), which runs on a wake-up, when a planned
//! due time comes and at least every `queue.feed_idle_ms` as a safety net.
//! Each scan first starts the owned partitions' scheduled campaigns whose
//! `start_at` came ([`start_scheduled`]); the earliest later `start_at` counts
//! as a due time, so the Feeder wakes for it on the engine's clock. A
//! tenant leaves the active set when a round finds nothing more due for it; its
//! Tenant actor stops on its own once its window is empty and it idled for
//! `queue.tenant_idle_ms`. An idle tenant costs no timer, command or query.
//!
//! Rounds follow each other immediately while there is work. When a round feeds
//! nothing, the feeder sleeps until the earliest `run_at` the scan saw (on the
//! engine's clock; no sleep at all if the clock passed it during the round) or
//! `queue.feed_idle_ms`, whichever comes first; a job
//! returned to the backlog earlier than that ([`wake_at`]) wakes it sooner. A
//! tenant whose window was too full to top up is fed again as soon as its own
//! pops have taken the window below half ([`popped`]).
//!
//! The urgent lane: a tenant whose window is full is still fed its due jobs of
//! priority ≤ 50 ([`FeederState::feed_urgent`]), up to half a window over it, so
//! an urgent job never waits for bulk to drain the window; its Tenant actor is
//! told they are urgent (it pops without coalescing).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use penguin_engine::control::{self, ControlEvent};
use penguin_engine::domain::{Band, CampaignStatus};
use penguin_engine::store::{due, ledger, scheduled};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::context::Ctx;
use crate::db_timing::DbOp;
use crate::tenant_supervisor;

/// Pause between rounds while work keeps coming (lets pushes batch up).
const BUSY_DELAY: Duration = Duration::from_millis(5);

pub struct Feeder;

pub enum FeederMsg {
    /// A round (a wake-up, or the next while work keeps coming).
    Round,
    /// The planned wake-up of that generation came (a due time or the safety
    /// net): a round that scans first. Stale generations are ignored.
    Timer(u64),
    /// Scan the owned partitions now (ownership changed, recovered work).
    Wake,
    /// Something becomes due at this time: scan then, if not planned earlier.
    WakeAt(OffsetDateTime),
    /// This tenant has work (a notification said so): feed it now.
    Activate(Uuid),
    /// A tenant popped this many jobs from its Redis lists.
    Popped(Uuid, usize),
}

pub struct FeederState {
    ctx: Ctx,
    /// A `Round` is on its way (cast, or after `BUSY_DELAY`): wake-ups add
    /// nothing but their tenant, and plan nothing.
    round_queued: bool,
    /// The planned wake-up: the due time it waits for on the engine's clock
    /// (`None`: only the `feed_idle_ms` safety net, a real-time timer), its
    /// generation and its timer.
    planned: Option<(Option<OffsetDateTime>, u64, JoinHandle<()>)>,
    timer_generation: u64,
    /// Tenants the next round feeds.
    active: BTreeSet<Uuid>,
    /// The next round scans the partitions first.
    scan_due: bool,
    /// When the partitions were last scanned.
    scanned_at: Option<Instant>,
    /// The earliest later due time known (the last scan's, or a [`wake_at`]).
    next_due: Option<OffsetDateTime>,
    /// Tenants the last round skipped because their Redis window was at least
    /// half full, with the depth it saw: when their pops have taken it below
    /// half, a round follows (no polling while a window drains).
    full: HashMap<Uuid, usize>,
    /// Tenants fed since they last became active, whose Redis state was checked
    /// then (`reaper::recover_redis_loss`): a tenant's first push after a quiet
    /// spell must not land in a Redis that lost its earlier queue unnoticed, nor
    /// be released again by the Reaper for a missing marker.
    checked: HashSet<Uuid>,
}

impl Drop for FeederState {
    fn drop(&mut self) {
        if let Some((_, _, timer)) = self.planned.take() {
            timer.abort();
        }
    }
}

impl Actor for Feeder {
    type Msg = FeederMsg;
    type State = FeederState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(FeederMsg::Round)?;
        Ok(FeederState {
            ctx,
            round_queued: true,
            planned: None,
            timer_generation: 0,
            active: BTreeSet::new(),
            scan_due: true,
            scanned_at: None,
            next_due: None,
            full: HashMap::new(),
            checked: HashSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FeederMsg::Round => {
                state.round_queued = false;
                state.run(&myself).await;
            }
            FeederMsg::Timer(generation) => {
                if matches!(&state.planned, Some((_, g, _)) if *g == generation) {
                    state.planned = None;
                    state.scan_due = true;
                    if !state.round_queued {
                        state.run(&myself).await;
                    }
                }
            }
            FeederMsg::Popped(tenant, n) => {
                let half = state.ctx.config.queue.window / 2;
                let room_now = state.full.get_mut(&tenant).is_some_and(|depth| {
                    *depth = depth.saturating_sub(n);
                    *depth < half
                });
                if room_now {
                    state.full.remove(&tenant);
                    state.active.insert(tenant);
                    state.round_now(&myself)?;
                }
            }
            FeederMsg::Activate(tenant) => {
                state.active.insert(tenant);
                state.round_now(&myself)?;
            }
            FeederMsg::Wake => {
                state.scan_due = true;
                state.round_now(&myself)?;
            }
            FeederMsg::WakeAt(at) => {
                state.next_due = Some(state.next_due.map_or(at, |next| next.min(at)));
                // A queued round plans for it when it finds nothing; a plan that
                // waits for an earlier due time covers it. (The idle safety net
                // runs on real time: it says nothing about when `at` comes on
                // the engine's clock.)
                let covered =
                    matches!(&state.planned, Some((Some(planned), _, _)) if *planned <= at);
                if !state.round_queued && !covered {
                    state.plan(&myself, Some(at));
                }
            }
        }
        Ok(())
    }
}

impl FeederState {
    /// A round; then the next right after it while work keeps coming, else a
    /// plan for the next due time or the safety net.
    async fn run(&mut self, myself: &ActorRef<FeederMsg>) {
        self.ctx
            .wakeups
            .feeder_rounds
            .fetch_add(1, Ordering::Relaxed);
        if let Some((_, _, timer)) = self.planned.take() {
            timer.abort();
        }
        let fed = self.round().await;
        if fed > 0 {
            self.round_queued = true;
            myself.send_after(BUSY_DELAY, || FeederMsg::Round);
        } else {
            // Planned even when it already passed: the clock may have reached
            // it while the round ran (after the scan read the time), and only
            // this plan would scan for it — dropped, it would wait for the
            // safety net. A passed due time fires at once; the scan it runs
            // sets `next_due` after that scan's time, so this never spins.
            self.plan(myself, self.next_due);
        }
    }

    /// A round right away, unless one is on its way (it sees the new work too).
    fn round_now(&mut self, myself: &ActorRef<FeederMsg>) -> Result<(), ActorProcessingErr> {
        if !self.round_queued {
            self.round_queued = true;
            myself.cast(FeederMsg::Round)?;
        }
        Ok(())
    }

    /// Plans a scanning round: at `due` on the engine's clock (at once when
    /// it passed), or after `queue.feed_idle_ms` (the safety net), whichever
    /// is first.
    fn plan(&mut self, myself: &ActorRef<FeederMsg>, due: Option<OffsetDateTime>) {
        if let Some((_, _, timer)) = self.planned.take() {
            timer.abort();
        }
        self.timer_generation += 1;
        let generation = self.timer_generation;
        let idle = Duration::from_millis(self.ctx.config.queue.feed_idle_ms);
        let sleep = due.map(|at| self.ctx.clock.sleep_until(at));
        let myself = myself.clone();
        let timer = tokio::spawn(async move {
            match sleep {
                Some(sleep) => {
                    tokio::select! {
                        _ = sleep => {}
                        _ = tokio::time::sleep(idle) => {}
                    }
                }
                None => tokio::time::sleep(idle).await,
            }
            let _ = myself.cast(FeederMsg::Timer(generation));
        });
        self.planned = Some((due, generation, timer));
    }

    /// Adds the tenants of the owned partitions with jobs due to the active set
    /// and notes the earliest later due time.
    async fn scan(&mut self) {
        let owned = self.ctx.owned();
        self.scan_due = false;
        self.scanned_at = Some(Instant::now());
        let now = self.ctx.clock.now();
        let count = self.ctx.config.node.partitions;
        let next_start = start_scheduled(&self.ctx, &owned.partitions, now).await;
        let scan = due::scan(&self.ctx.pg, count, &owned.partitions, &[], now);
        match self.ctx.metrics.timed(DbOp::DueScan, scan).await {
            Ok(found) => {
                self.active.extend(found.due);
                self.next_due = found.next.map(|(at, _)| at);
            }
            Err(err) => {
                tracing::warn!(error = %err, "scanning the partitions for due work failed");
                self.next_due = None;
            }
        }
        if let Some(at) = next_start {
            self.next_due = Some(self.next_due.map_or(at, |next| next.min(at)));
        }
    }

    /// One pass over the active tenants; returns how many jobs were fed.
    async fn round(&mut self) -> usize {
        let idle = Duration::from_millis(self.ctx.config.queue.feed_idle_ms);
        if self.scan_due || self.scanned_at.is_none_or(|at| at.elapsed() >= idle) {
            self.scan().await;
        }
        let owned = self.ctx.owned();
        let count = self.ctx.config.node.partitions;
        self.active
            .retain(|t| owned.has(penguin_engine::partition::of(*t, count)));
        self.full
            .retain(|t, _| owned.has(penguin_engine::partition::of(*t, count)));
        let tenants: Vec<Uuid> = std::mem::take(&mut self.active).into_iter().collect();
        if tenants.is_empty() {
            if self.full.is_empty() {
                self.ctx.metrics.queue_depth(0);
            }
            return 0;
        }
        let depths = match self.ctx.queue.depths(&tenants).await {
            Ok(depths) => {
                let full: usize = self.full.values().sum();
                self.ctx
                    .metrics
                    .queue_depth(depths.iter().sum::<usize>() + full);
                depths
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading queue depths failed");
                self.active.extend(tenants);
                return 0;
            }
        };
        let window = self.ctx.config.queue.window;
        let mut fed = 0;
        for (tenant, depth) in tenants.into_iter().zip(depths) {
            if depth * 2 >= window {
                // The urgent lane: due jobs of priority ≤ 50 go to Redis even
                // into a full window (the Tenant pops the high list first).
                let urgent = self.feed_urgent(tenant, depth).await;
                self.full.insert(tenant, depth + urgent);
                tenant_supervisor::activate(&self.ctx, tenant, urgent > 0);
                fed += urgent;
                continue;
            }
            if self.checked.insert(tenant) {
                crate::reaper::recover_redis_loss(&self.ctx, tenant, false).await;
            }
            let want = (window - depth).min(self.ctx.config.queue.feed_batch);
            let (got, urgent) = self.feed_tenant(tenant, want, false).await;
            if got == want {
                // There may be more: the next round tries again.
                self.active.insert(tenant);
            }
            if got > 0 || depth > 0 {
                tenant_supervisor::activate(&self.ctx, tenant, urgent);
            }
            fed += got;
        }
        let (active, full) = (&self.active, &self.full);
        self.checked
            .retain(|t| active.contains(t) || full.contains_key(t));
        fed
    }

    /// The urgent lane of a tenant whose window is at least half full: its due
    /// jobs of priority ≤ 50 go to Redis anyway, as long as the lists hold less
    /// than a window and a half; the extra half bounds Redis when a tenant's
    /// whole backlog is urgent.
    async fn feed_urgent(&self, tenant: Uuid, depth: usize) -> usize {
        let window = self.ctx.config.queue.window;
        let room = (window + window / 2).saturating_sub(depth);
        let want = room.min(self.ctx.config.queue.feed_batch);
        if want == 0 {
            return 0;
        }
        self.feed_tenant(tenant, want, true).await.0
    }

    /// Claims up to `want` due jobs (only the urgent lane's when `urgent_only`)
    /// and pushes them to the tenant's lists: how many, and whether any is urgent.
    async fn feed_tenant(&self, tenant: Uuid, want: usize, urgent_only: bool) -> (usize, bool) {
        let now = self.ctx.clock.now();
        let Some(epoch) = self.ctx.fence(tenant) else {
            return (0, false);
        };
        let pg = &self.ctx.pg;
        let metrics = &self.ctx.metrics;
        let claimed = if urgent_only {
            let claim = ledger::claim_due_urgent(pg, tenant, epoch, want, now);
            metrics.timed(DbOp::ClaimDue, claim).await
        } else {
            let claim = ledger::claim_due(pg, tenant, epoch, want, now);
            metrics.timed(DbOp::ClaimDue, claim).await
        };
        let due = match claimed {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(%tenant, error = %err, "claiming due jobs failed");
                return (0, false);
            }
        };
        if due.is_empty() {
            return (0, false);
        }
        let mut encoded = Vec::with_capacity(due.len());
        for payload in &due {
            let band = Band::of(payload.job().priority);
            match payload.encode() {
                Ok(raw) => encoded.push((band, raw)),
                Err(err) => tracing::error!(error = %err, "encoding a job payload failed"),
            }
        }
        if let Err(err) = self.ctx.queue.push(tenant, &encoded).await {
            // The jobs are `queued` in Postgres without a Redis copy: hand them back.
            tracing::warn!(%tenant, error = %err, "pushing jobs to redis failed; releasing them");
            if let Err(err) =
                ledger::release_queued(&self.ctx.pg, tenant, epoch, self.ctx.clock.now()).await
            {
                tracing::error!(%tenant, error = %err, "releasing queued jobs failed; the reaper will retry");
            }
            return (0, false);
        }
        self.ctx.metrics.jobs_fed(encoded.len());
        let urgent = encoded.iter().any(|(band, _)| *band == Band::High);
        (encoded.len(), urgent)
    }
}

/// Starts the scheduled campaigns of `partitions` whose `start_at` is at or
/// before `now` (`store::scheduled`, fenced by this node's tokens), then tells
/// every node they run (as the API does for a start: the owner's Cluster
/// activates the tenant, the others forget the campaign was stopped); returns
/// the next later `start_at`. The scan that follows finds their jobs due.
async fn start_scheduled(
    ctx: &Ctx,
    partitions: &[penguin_engine::partition::Partition],
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let tokens: Vec<_> = {
        let fences = ctx.fences.read().expect("fences lock");
        partitions
            .iter()
            .filter_map(|p| fences.get(p).copied())
            .collect()
    };
    let count = ctx.config.node.partitions;
    let starts = match scheduled::start_due(&ctx.pg, count, &tokens, now).await {
        Ok(starts) => starts,
        Err(err) => {
            tracing::warn!(error = %err, "starting scheduled campaigns failed");
            return None;
        }
    };
    for (tenant_id, campaign_id) in starts.started {
        tracing::info!(%tenant_id, %campaign_id, "scheduled campaign started");
        ctx.set_stopped(campaign_id, false);
        let event = ControlEvent::CampaignChanged {
            tenant_id,
            campaign_id,
            status: CampaignStatus::Running,
        };
        if let Err(err) = control::publish(ctx.queue.pool(), &event).await {
            tracing::warn!(%tenant_id, error = %err, "control event not published");
        }
    }
    starts.next
}

/// Wakes the feeder at `at` (engine clock) unless it plans to wake earlier.
pub fn wake_at(ctx: &Ctx, at: OffsetDateTime) {
    if let Some(feeder) = ctx.directory.feeder() {
        let _ = feeder.cast(FeederMsg::WakeAt(at));
    }
}

/// Tells the feeder a tenant took `n` jobs off its Redis lists (popped, or
/// dropped as garbage): a window the feeder found full may have room again.
pub fn popped(ctx: &Ctx, tenant: Uuid, n: usize) {
    if let Some(feeder) = ctx.directory.feeder() {
        let _ = feeder.cast(FeederMsg::Popped(tenant, n));
    }
}

/// Wakes the feeder now to scan the owned partitions (ownership changed, work
/// recovered).
pub fn wake(ctx: &Ctx) {
    if let Some(feeder) = ctx.directory.feeder() {
        let _ = feeder.cast(FeederMsg::Wake);
    }
}

/// Tells the feeder `tenant` has work now (a campaign started or resumed,
/// leads imported, an IP resumed, jobs returned).
pub fn activate(ctx: &Ctx, tenant: Uuid) {
    if let Some(feeder) = ctx.directory.feeder() {
        let _ = feeder.cast(FeederMsg::Activate(tenant));
    }
}
