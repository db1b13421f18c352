//! Retention: once at start and then every `[retention] interval_ms`, runs one
//! retention round ([`retention::run_round`]: event partitions created ahead
//! and dropped past `events_days`, finished campaigns' jobs and leads deleted
//! in bounded batches) at the engine clock's "now".
//!
//! Every node runs this actor; the round's advisory lock lets one node at a
//! time do the work, the others skip their turn (logged at debug). What a
//! round did is logged at info when it did anything, and counted in
//! `penguin_retention_deleted_total{table}` and
//! `penguin_retention_partitions_total{action}`. A failed round is logged and
//! retried at the next tick; rounds never overlap on one node (the actor
//! handles one tick at a time, ticks that arrive meanwhile queue behind it and
//! find little to do).

use std::time::Duration;

use penguin_engine::store::retention::{self, Round};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::context::Ctx;

pub struct Retention;

pub enum RetentionMsg {
    Tick,
}

pub struct RetentionState {
    ctx: Ctx,
}

impl Actor for Retention {
    type Msg = RetentionMsg;
    type State = RetentionState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        let every = Duration::from_millis(ctx.config.retention.interval_ms);
        myself.send_interval(every, || RetentionMsg::Tick);
        let _ = myself.cast(RetentionMsg::Tick);
        Ok(RetentionState { ctx })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RetentionMsg::Tick => state.tick().await,
        }
        Ok(())
    }
}

impl RetentionState {
    async fn tick(&mut self) {
        let ctx = &self.ctx;
        let now = ctx.clock.now();
        match retention::run_round(&ctx.pg, &ctx.config.retention, now).await {
            Ok(Some(round)) => self.report(&round),
            Ok(None) => tracing::debug!("retention: another node holds the turn"),
            Err(err) => tracing::warn!(error = %err, "retention round failed"),
        }
    }

    fn report(&self, round: &Round) {
        let metrics = &self.ctx.metrics;
        metrics.retention_partitions("created", round.partitions_created.len() as u64);
        metrics.retention_partitions("dropped", round.partitions_dropped.len() as u64);
        metrics.retention_deleted("delivery_events", round.events_deleted);
        metrics.retention_deleted("send_jobs", round.jobs_deleted);
        metrics.retention_deleted("delivery_event_keys", round.event_keys_deleted);
        metrics.retention_deleted("leads", round.leads_deleted);
        if *round != Round::default() {
            tracing::info!(
                created = ?round.partitions_created,
                dropped = ?round.partitions_dropped,
                events_moved = round.events_moved,
                events_deleted = round.events_deleted,
                jobs_deleted = round.jobs_deleted,
                event_keys_deleted = round.event_keys_deleted,
                leads_deleted = round.leads_deleted,
                "retention round"
            );
        }
    }
}
