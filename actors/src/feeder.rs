//! Feeder: moves due jobs Postgres → Redis for the tenants this node owns. Each
//! round reads every owned tenant's list depth in one round trip and tops up those
//! below half the window (`queue.window`) with at most `queue.feed_batch` jobs,
//! claimed `pending|deferred → queued` with `SKIP LOCKED`. Postgres stays the
//! backlog; Redis holds a bounded window.
//!
//! Rounds follow each other immediately while there is work. When a round finds
//! nothing due, the feeder sleeps until the earliest `run_at` of the backlog (on
//! the engine's clock) or `queue.feed_idle_ms`, whichever comes first; a control
//! notification (campaign started or resumed), a job returned to the backlog
//! earlier than that ([`wake_at`]) or recovered work wakes it sooner. Jobs waiting
//! for an allowance window therefore cost no wake-ups until the window opens.
//! A tenant whose window was too full to top up is fed again as soon as its own
//! pops have taken the window below half ([`popped`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use penguin_engine::domain::Band;
use penguin_engine::store::{jobs, ledger};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::context::Ctx;
use crate::tenant::TenantMsg;

/// Pause between rounds while work keeps coming (lets pushes batch up).
const BUSY_DELAY: Duration = Duration::from_millis(5);

pub struct Feeder;

pub enum FeederMsg {
    /// A round; stale generations (superseded by a wake-up) are ignored.
    Round(u64),
    Wake,
    /// Something becomes due at this time: wake then, if not planned earlier.
    WakeAt(OffsetDateTime),
    /// A tenant popped this many jobs from its Redis lists.
    Popped(Uuid, usize),
}

pub struct FeederState {
    ctx: Ctx,
    generation: u64,
    /// The planned wake-up: the due time it waits for on the engine's clock
    /// (`None`: only the `feed_idle_ms` safety net, a real-time timer) and its timer.
    planned: Option<(Option<OffsetDateTime>, JoinHandle<()>)>,
    /// A round follows within `BUSY_DELAY` (the last one fed work): wake-ups
    /// add nothing, and must not supersede it.
    busy: bool,
    /// Tenants the last round skipped because their Redis window was at least
    /// half full, with the depth it saw: when their pops have taken it below
    /// half, a round follows (no polling while a window drains).
    full: HashMap<Uuid, usize>,
}

impl Drop for FeederState {
    fn drop(&mut self) {
        if let Some((_, timer)) = self.planned.take() {
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
        myself.cast(FeederMsg::Round(0))?;
        Ok(FeederState {
            ctx,
            generation: 0,
            planned: None,
            busy: false,
            full: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FeederMsg::Round(generation) if generation == state.generation => {
                state
                    .ctx
                    .wakeups
                    .feeder_rounds
                    .fetch_add(1, Ordering::Relaxed);
                state.busy = false;
                if let Some((_, timer)) = state.planned.take() {
                    timer.abort();
                }
                let fed = state.round().await;
                state.generation += 1;
                let next = state.generation;
                if fed > 0 {
                    state.busy = true;
                    myself.send_after(BUSY_DELAY, move || FeederMsg::Round(next));
                } else {
                    let due = state.next_due().await;
                    state.plan(&myself, due);
                }
            }
            FeederMsg::Round(_stale) => {}
            FeederMsg::Popped(tenant, n) => {
                let half = state.ctx.config.queue.window / 2;
                let room_now = state.full.get_mut(&tenant).is_some_and(|depth| {
                    *depth = depth.saturating_sub(n);
                    *depth < half
                });
                if room_now {
                    state.full.remove(&tenant);
                    if !state.busy {
                        state.generation += 1;
                        myself.cast(FeederMsg::Round(state.generation))?;
                    }
                }
            }
            // A busy round follows within `BUSY_DELAY` and sees the new work (and
            // plans for what waits when it finds nothing): nothing to add.
            FeederMsg::Wake | FeederMsg::WakeAt(_) if state.busy => {}
            FeederMsg::Wake => {
                state.generation += 1;
                myself.cast(FeederMsg::Round(state.generation))?;
            }
            FeederMsg::WakeAt(at) => {
                // Only a plan that waits for an earlier due time makes this one
                // redundant. (The idle safety net runs on real time: it says
                // nothing about when `at` comes on the engine's clock.)
                let covered = matches!(&state.planned, Some((Some(planned), _)) if *planned <= at);
                if !covered {
                    state.generation += 1;
                    state.plan(&myself, Some(at));
                }
            }
        }
        Ok(())
    }
}

impl FeederState {
    /// The earliest `run_at` in the backlog still in the future (`None`: nothing
    /// waits, or something is due already but had no room in Redis).
    async fn next_due(&self) -> Option<OffsetDateTime> {
        let tenants = self.ctx.owned().tenants.clone();
        if tenants.is_empty() {
            return None;
        }
        match jobs::next_due(&self.ctx.pg, &tenants).await {
            Ok(due) => due.filter(|at| *at > self.ctx.clock.now()),
            Err(err) => {
                tracing::warn!(error = %err, "reading the next due time failed");
                None
            }
        }
    }

    /// Plans the next round of the current generation: at `due` on the engine's
    /// clock, or after `queue.feed_idle_ms` (the safety net), whichever is first.
    fn plan(&mut self, myself: &ActorRef<FeederMsg>, due: Option<OffsetDateTime>) {
        if let Some((_, timer)) = self.planned.take() {
            timer.abort();
        }
        let generation = self.generation;
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
            let _ = myself.cast(FeederMsg::Round(generation));
        });
        self.planned = Some((due, timer));
    }

    /// One pass over the owned tenants; returns how many jobs were fed.
    async fn round(&mut self) -> usize {
        let tenants = self.ctx.owned().tenants.clone();
        if tenants.is_empty() {
            return 0;
        }
        let depths = match self.ctx.queue.depths(&tenants).await {
            Ok(depths) => depths,
            Err(err) => {
                tracing::warn!(error = %err, "reading queue depths failed");
                return 0;
            }
        };
        self.ctx.metrics.queue_depth(depths.iter().sum());
        let window = self.ctx.config.queue.window;
        let mut fed = 0;
        self.full.clear();
        for (tenant, depth) in tenants.into_iter().zip(depths) {
            if depth * 2 >= window {
                self.full.insert(tenant, depth);
                continue;
            }
            let want = (window - depth).min(self.ctx.config.queue.feed_batch);
            fed += self.feed_tenant(tenant, want).await;
        }
        fed
    }

    async fn feed_tenant(&self, tenant: Uuid, want: usize) -> usize {
        let now = self.ctx.clock.now();
        let Some(epoch) = self.ctx.fence(tenant) else {
            return 0;
        };
        let due = match ledger::claim_due(&self.ctx.pg, tenant, epoch, want, now).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(%tenant, error = %err, "claiming due jobs failed");
                return 0;
            }
        };
        if due.is_empty() {
            return 0;
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
            return 0;
        }
        self.ctx.metrics.jobs_fed(encoded.len());
        if let Some(actor) = self.ctx.directory.tenant(tenant) {
            let _ = actor.cast(TenantMsg::JobsAvailable);
        }
        encoded.len()
    }
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

/// Wakes the feeder now (a campaign started or resumed).
pub fn wake(ctx: &Ctx) {
    if let Some(feeder) = ctx.directory.feeder() {
        let _ = feeder.cast(FeederMsg::Wake);
    }
}
