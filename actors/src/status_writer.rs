//! StatusWriter: the single writer of job outcomes. Delivery workers `cast`
//! [`Outcome`]s (through [`hand_over`], which waits out a restart of this
//! actor however long it takes, logging errors, rather than drop an outcome); they are written in batches with one `UPDATE … FROM unnest()`
//! every `queue.status_flush_ms` or every `queue.status_batch` transitions,
//! whichever comes first. A failed write keeps the batch and retries with backoff
//! (capped at 5 s), logging an error on every failure past the first few: an
//! outcome is never dropped while the node lives. At shutdown ([`flush`]) the
//! retries end after [`FLUSH_LIMIT`], logging every outcome still unwritten (the
//! Reaper or the next takeover returns those jobs), so shutdown stays bounded.
//!
//! Each transition carries the epoch and the claim id its job was claimed
//! under: one whose job a takeover or the Reaper returned in the meantime (and
//! maybe a later claim took) changes nothing and is counted as fenced
//! (`penguin_fenced_writes_total{write="status"}`).
//!
//! After each write, campaigns whose jobs changed are checked for completion.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use penguin_engine::domain::JobStatus;
use penguin_engine::store::jobs;
use penguin_engine::store::ledger::{self, Outcome};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use crate::context::Ctx;
use crate::db_timing::DbOp;

/// Least time between two completion checks.
const COMPLETION_CHECK_EVERY: Duration = Duration::from_millis(500);

/// Longest a [`StatusMsg::FlushNow`] retries failed writes before it logs what
/// is left and answers (below [`flush`]'s own call timeout).
pub const FLUSH_LIMIT: Duration = Duration::from_secs(20);

/// Failed writes in a row logged as warnings before each is an error.
const QUIET_WRITE_FAILURES: u32 = 3;

pub struct StatusWriter;

pub enum StatusMsg {
    Record(Vec<Outcome>),
    /// Timer: write whatever is buffered.
    Flush,
    /// Write everything buffered, then answer (shutdown, Ip restarts).
    FlushNow(RpcReplyPort<()>),
}

pub struct StatusState {
    ctx: Ctx,
    buffer: Vec<Outcome>,
    flush_scheduled: bool,
    failures: u32,
    /// Campaigns touched since the last completion check.
    touched: HashSet<(Uuid, Uuid)>,
    last_completion_check: Instant,
}

impl Actor for StatusWriter {
    type Msg = StatusMsg;
    type State = StatusState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(StatusState {
            ctx,
            buffer: Vec::new(),
            flush_scheduled: false,
            failures: 0,
            touched: HashSet::new(),
            last_completion_check: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StatusMsg::Record(mut transitions) => {
                state.buffer.append(&mut transitions);
                if state.buffer.len() >= state.ctx.config.queue.status_batch {
                    state.write().await;
                }
                state.schedule(&myself);
            }
            StatusMsg::Flush => {
                state.flush_scheduled = false;
                state.write().await;
                state.schedule(&myself);
            }
            StatusMsg::FlushNow(reply) => {
                let give_up = Instant::now() + FLUSH_LIMIT;
                let mut delay = Duration::from_millis(50);
                while !state.buffer.is_empty() {
                    if state.write().await {
                        continue;
                    }
                    if Instant::now() + delay >= give_up {
                        state.log_unwritten("flush gave up");
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        while !state.buffer.is_empty() {
            if !state.write().await {
                state.log_unwritten("status writer stopped");
                break;
            }
        }
        Ok(())
    }
}

impl StatusState {
    fn schedule(&mut self, myself: &ActorRef<StatusMsg>) {
        if self.flush_scheduled || self.buffer.is_empty() {
            return;
        }
        self.flush_scheduled = true;
        let base = self.ctx.config.queue.status_flush_ms;
        let delay = base.saturating_mul(1 << self.failures.min(8)).min(5_000);
        myself.send_after(Duration::from_millis(delay), || StatusMsg::Flush);
    }

    /// Writes up to one batch; returns whether the write succeeded.
    async fn write(&mut self) -> bool {
        if self.buffer.is_empty() {
            return true;
        }
        let take = self.buffer.len().min(self.ctx.config.queue.status_batch);
        let now = self.ctx.clock.now();
        let write = ledger::record_outcomes(&self.ctx.pg, &self.buffer[..take], now);
        match self.ctx.metrics.timed(DbOp::RecordOutcomes, write).await {
            Ok(applied) => {
                // A transition that changed nothing belongs to a claim that is no
                // longer this node's: a takeover returned the job (its epoch moved on).
                let refused = take - applied.written;
                if refused > 0 {
                    tracing::warn!(
                        refused,
                        "job outcomes refused: their claims passed to another node"
                    );
                    self.ctx.metrics.fenced("status", refused);
                }
                // Jobs back in the backlog: the feeder wakes when the first is due.
                let back = self.buffer[..take]
                    .iter()
                    .filter(|t| matches!(t.to, JobStatus::Pending | JobStatus::Deferred))
                    .map(|t| t.run_at.unwrap_or(now))
                    .min();
                // Follow-up steps this batch created: due after their delay.
                if let Some(at) = back.into_iter().chain(applied.follow_up_due).min() {
                    crate::feeder::wake_at(&self.ctx, at);
                }
                self.buffer.drain(..take);
                self.failures = 0;
                self.touched.extend(applied.campaigns);
                self.check_completion().await;
                true
            }
            Err(err) => {
                self.failures += 1;
                if self.failures > QUIET_WRITE_FAILURES {
                    tracing::error!(error = %err, failures = self.failures, pending = self.buffer.len(), "writing job outcomes keeps failing; will retry");
                } else {
                    tracing::warn!(error = %err, pending = self.buffer.len(), "writing job outcomes failed; will retry");
                }
                false
            }
        }
    }

    /// Logs every outcome still buffered (shutdown could not write them): the
    /// jobs stay `sending` until the Reaper or the next takeover returns them.
    fn log_unwritten(&self, why: &str) {
        tracing::error!(
            pending = self.buffer.len(),
            "{why} with unwritten job outcomes"
        );
        // Each job named, up to a bound that keeps one log burst readable.
        for t in self.buffer.iter().take(100) {
            tracing::error!(tenant = %t.tenant_id, job = %t.job_id, to = t.to.as_str(), "job outcome not written");
        }
    }

    /// At most every [`COMPLETION_CHECK_EVERY`]: a campaign's last outcomes complete
    /// it a moment later (or at the Reaper's next round), at a fraction of the cost.
    async fn check_completion(&mut self) {
        if self.touched.is_empty() || self.last_completion_check.elapsed() < COMPLETION_CHECK_EVERY
        {
            return;
        }
        self.last_completion_check = Instant::now();
        let campaigns: Vec<(Uuid, Uuid)> = self.touched.drain().collect();
        match jobs::complete_finished_campaigns(&self.ctx.pg, &campaigns, self.ctx.clock.now())
            .await
        {
            Ok(done) => {
                for (tenant, campaign) in done {
                    tracing::info!(%tenant, %campaign, "campaign completed");
                }
            }
            // The reaper's periodic check catches what this one missed.
            Err(err) => tracing::warn!(error = %err, "campaign completion check failed"),
        }
    }
}

/// Sends outcomes to the live StatusWriter. Returns them back if it is restarting,
/// so the caller can retry rather than lose them.
pub fn record(ctx: &Ctx, transitions: Vec<Outcome>) -> Result<(), Vec<Outcome>> {
    let Some(writer) = ctx.directory.status_writer() else {
        return Err(transitions);
    };
    writer
        .cast(StatusMsg::Record(transitions))
        .map_err(|err| match err {
            ractor::MessagingErr::SendErr(StatusMsg::Record(t)) => t,
            _ => Vec::new(),
        })
}

/// Failures to hand an outcome over before each one is logged as an error.
const QUIET_HANDOVER_FAILURES: u32 = 5;

/// Hands one outcome to StatusWriter (the delivery workers' way in), waiting
/// for it as long as it takes:
/// StatusWriter is only ever briefly absent (a restart), and an outcome dropped
/// here would let a message the server accepted be sent again. Backs off from
/// 50 ms to 1 s, logging an error on every failure past the first few; if the
/// worker is aborted meanwhile (the node stops), the unhanded outcome is logged.
pub async fn hand_over(ctx: &Ctx, transition: Outcome) {
    let mut pending = Unhanded(vec![transition]);
    let mut failures = 0u32;
    let mut delay = Duration::from_millis(50);
    loop {
        match record(ctx, std::mem::take(&mut pending.0)) {
            Ok(()) => return,
            Err(back) => {
                pending.0 = back;
                failures += 1;
                if failures > QUIET_HANDOVER_FAILURES {
                    let t = pending.0.first();
                    tracing::error!(
                        failures,
                        job = ?t.map(|t| t.job_id),
                        to = ?t.map(|t| t.to.as_str()),
                        "StatusWriter unavailable: job outcome not handed over yet; retrying"
                    );
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Outcomes not yet handed to StatusWriter; logged if dropped unhanded.
struct Unhanded(Vec<Outcome>);

impl Drop for Unhanded {
    fn drop(&mut self) {
        for t in &self.0 {
            tracing::error!(
                tenant = %t.tenant_id,
                job = %t.job_id,
                to = t.to.as_str(),
                "job outcome never recorded (worker stopped); the Reaper or the next takeover returns the job"
            );
        }
    }
}

/// Waits until every outcome recorded so far is in Postgres.
pub async fn flush(ctx: &Ctx) {
    if let Some(writer) = ctx.directory.status_writer() {
        let _ = writer
            .call(StatusMsg::FlushNow, Some(Duration::from_secs(30)))
            .await;
    }
}
