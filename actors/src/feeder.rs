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

use std::sync::atomic::Ordering;
use std::time::Duration;

use penguin_engine::domain::Band;
use penguin_engine::store::jobs;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::context::Ctx;
use crate::metrics;
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
}

pub struct FeederState {
    ctx: Ctx,
    generation: u64,
    /// The planned idle wake-up (engine clock) and its timer.
    planned: Option<(OffsetDateTime, JoinHandle<()>)>,
    /// A round follows shortly (work kept coming): wake-ups add nothing.
    busy: bool,
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
                let fed = state.round().await;
                state.generation += 1;
                let next = state.generation;
                if fed > 0 {
                    myself.send_after(BUSY_DELAY, move || FeederMsg::Round(next));
                } else {
                    let due = state.next_due().await;
                    state.plan(&myself, due);
                }
            }
            FeederMsg::Round(_stale) => {}
            FeederMsg::Wake => {
                state.busy = false;
                state.generation += 1;
                myself.cast(FeederMsg::Round(state.generation))?;
            }
            FeederMsg::WakeAt(at) => {
                let earlier = state
                    .planned
                    .as_ref()
                    .is_none_or(|(planned, _)| at < *planned);
                if earlier {
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
        let at = due.unwrap_or_else(|| self.ctx.clock.now() + idle);
        self.planned = Some((at, timer));
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
        metrics::queue_depth(depths.iter().sum());
        let window = self.ctx.config.queue.window;
        let mut fed = 0;
        for (tenant, depth) in tenants.into_iter().zip(depths) {
            if depth * 2 >= window {
                continue;
            }
            let want = (window - depth).min(self.ctx.config.queue.feed_batch);
            fed += self.feed_tenant(tenant, want).await;
        }
        fed
    }

    async fn feed_tenant(&self, tenant: Uuid, want: usize) -> usize {
        let now = self.ctx.clock.now();
        let due = match jobs::claim_due(&self.ctx.pg, tenant, want, now).await {
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
            if let Err(err) = jobs::release_queued(&self.ctx.pg, tenant, self.ctx.clock.now()).await
            {
                tracing::error!(%tenant, error = %err, "releasing queued jobs failed; the reaper will retry");
            }
            return 0;
        }
        metrics::jobs_fed(encoded.len());
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

/// Wakes the feeder now (a campaign started or resumed).
pub fn wake(ctx: &Ctx) {
    if let Some(feeder) = ctx.directory.feeder() {
        let _ = feeder.cast(FeederMsg::Wake);
    }
}
