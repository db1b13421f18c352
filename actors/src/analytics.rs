//! Analytics: batches delivery events into `delivery_events` and the daily rollups
//! per campaign (UTC day) and per IP (the IP's local day), one statement a batch. Events arrive by `cast` from delivery workers and are
//! written every 200 ms or 1,000 events. A failed write keeps the batch and retries.
//!
//! Rolling health rates per IP and provider (for warm-up and reputation) build on
//! this actor in a later step; for now it records and counts.

use std::time::Duration;

use penguin_engine::store::events::{self, Event};
use penguin_engine::store::suppressions;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use crate::context::Ctx;
use crate::db_timing::DbOp;

const FLUSH_EVERY: Duration = Duration::from_millis(200);
const FLUSH_AT: usize = 1_000;

pub struct Analytics;

pub enum AnalyticsMsg {
    Record(Vec<Event>),
    /// A hard bounce: add the address to the tenant's suppression list.
    Suppress(Uuid, String),
    Flush,
    FlushNow(RpcReplyPort<()>),
}

pub struct AnalyticsState {
    ctx: Ctx,
    buffer: Vec<Event>,
    suppress: Vec<(Uuid, String)>,
    flush_scheduled: bool,
    failures: u32,
}

impl Actor for Analytics {
    type Msg = AnalyticsMsg;
    type State = AnalyticsState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(AnalyticsState {
            ctx,
            buffer: Vec::new(),
            suppress: Vec::new(),
            flush_scheduled: false,
            failures: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AnalyticsMsg::Record(mut batch) => {
                state.buffer.append(&mut batch);
                if state.buffer.len() >= FLUSH_AT {
                    state.write().await;
                }
                state.schedule(&myself);
            }
            AnalyticsMsg::Suppress(tenant, email) => {
                state.suppress.push((tenant, email));
                state.schedule(&myself);
            }
            AnalyticsMsg::Flush => {
                state.flush_scheduled = false;
                state.write().await;
                state.schedule(&myself);
            }
            AnalyticsMsg::FlushNow(reply) => {
                // Bounded: analytics must not hold up a shutdown forever.
                for _ in 0..20 {
                    if state.write().await {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
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
        if !state.write().await {
            tracing::error!(
                pending = state.buffer.len(),
                "analytics stopped with unwritten events"
            );
        }
        Ok(())
    }
}

impl AnalyticsState {
    fn schedule(&mut self, myself: &ActorRef<AnalyticsMsg>) {
        if self.flush_scheduled || (self.buffer.is_empty() && self.suppress.is_empty()) {
            return;
        }
        self.flush_scheduled = true;
        let delay = FLUSH_EVERY.saturating_mul(1 << self.failures.min(5));
        myself.send_after(delay, || AnalyticsMsg::Flush);
    }

    async fn write(&mut self) -> bool {
        if !self.suppress.is_empty() {
            let rows: Vec<(Uuid, String, &str)> = self
                .suppress
                .iter()
                .map(|(tenant, email)| (*tenant, email.clone(), "hard_bounce"))
                .collect();
            match suppressions::add_many(&self.ctx.pg, &rows).await {
                Ok(_) => self.suppress.clear(),
                Err(err) => {
                    self.failures += 1;
                    tracing::warn!(error = %err, pending = rows.len(), "adding hard bounces to suppressions failed; will retry");
                    return false;
                }
            }
        }
        if self.buffer.is_empty() {
            return true;
        }
        let take = self.buffer.len().min(FLUSH_AT * 4);
        let batch = &self.buffer[..take];
        let write = events::record(&self.ctx.pg, batch);
        match self.ctx.metrics.timed(DbOp::Events, write).await {
            Ok(()) => {
                self.buffer.drain(..take);
                self.failures = 0;
                true
            }
            Err(err) => {
                self.failures += 1;
                tracing::warn!(error = %err, pending = self.buffer.len(), "writing delivery events failed; will retry");
                false
            }
        }
    }
}

/// Hands events to the live Analytics actor; events are dropped (and logged) only
/// when it is restarting, since Postgres job states remain the source of truth.
pub fn record(ctx: &Ctx, batch: Vec<Event>) {
    match ctx.directory.analytics() {
        Some(actor) => {
            if actor.cast(AnalyticsMsg::Record(batch)).is_err() {
                tracing::warn!("analytics unavailable; delivery events dropped");
            }
        }
        None => tracing::warn!("analytics restarting; delivery events dropped"),
    }
}

/// Queues `email` for the tenant's suppression list (a hard bounce).
pub fn suppress(ctx: &Ctx, tenant: Uuid, email: String) {
    match ctx.directory.analytics() {
        Some(actor) if actor.cast(AnalyticsMsg::Suppress(tenant, email)).is_ok() => {}
        _ => tracing::warn!(%tenant, "analytics unavailable; a hard bounce was not suppressed"),
    }
}

pub async fn flush(ctx: &Ctx) {
    if let Some(actor) = ctx.directory.analytics() {
        let _ = actor
            .call(AnalyticsMsg::FlushNow, Some(Duration::from_secs(10)))
            .await;
    }
}
