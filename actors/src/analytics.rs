//! Analytics: batches delivery events into `delivery_events` and the daily rollups
//! per campaign and per IP. Events arrive by `cast` from delivery workers and are
//! written every 200 ms or 1,000 events. A failed write keeps the batch and retries.
//!
//! Rolling health rates per IP and provider (for warm-up and reputation) build on
//! this actor in a later step; for now it records and counts.

use std::collections::HashMap;
use std::time::Duration;

use penguin_engine::store::events::{self, Counts, Event};
use penguin_engine::store::suppressions;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use time::Date;
use uuid::Uuid;

use crate::context::Ctx;

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
        let (per_campaign, per_ip) = rollups(batch);
        let result = async {
            events::insert_events(&self.ctx.pg, batch).await?;
            events::add_campaign_daily(&self.ctx.pg, &per_campaign).await?;
            events::add_ip_daily(&self.ctx.pg, &per_ip).await
        }
        .await;
        match result {
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

type Rollup = Vec<((Uuid, Uuid, Date), Counts)>;

/// Sums a batch of events per (tenant, campaign, day) and (tenant, ip, day).
/// Days are UTC for now; IP-local days come with the warm-up scheduler.
fn rollups(batch: &[Event]) -> (Rollup, Rollup) {
    let mut campaigns: HashMap<(Uuid, Uuid, Date), Counts> = HashMap::new();
    let mut ips: HashMap<(Uuid, Uuid, Date), Counts> = HashMap::new();
    for event in batch {
        let day = event.at.date();
        campaigns
            .entry((event.tenant_id, event.campaign_id, day))
            .or_default()
            .add_kind(&event.kind);
        if let Some(ip) = event.ip_id {
            ips.entry((event.tenant_id, ip, day))
                .or_default()
                .add_kind(&event.kind);
        }
    }
    (campaigns.into_iter().collect(), ips.into_iter().collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn event(kind: &str, ip: Option<Uuid>) -> Event {
        Event {
            tenant_id: Uuid::from_u128(1),
            campaign_id: Uuid::from_u128(2),
            job_id: Uuid::new_v4(),
            ip_id: ip,
            kind: kind.into(),
            smtp_code: None,
            enhanced_code: None,
            class: None,
            provider: None,
            reply: None,
            at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn rollups_sum_per_campaign_and_ip() {
        let ip = Some(Uuid::from_u128(3));
        let batch = vec![
            event("sent", ip),
            event("sent", ip),
            event("bounced", ip),
            event("deferred", None),
        ];
        let (campaigns, ips) = rollups(&batch);
        assert_eq!(campaigns.len(), 1);
        assert_eq!(
            campaigns[0].1,
            Counts {
                sent: 2,
                deferred: 1,
                bounced: 1,
                failed: 0
            }
        );
        assert_eq!(ips.len(), 1);
        assert_eq!(
            ips[0].1,
            Counts {
                sent: 2,
                deferred: 0,
                bounced: 1,
                failed: 0
            }
        );
    }
}
