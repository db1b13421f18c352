//! Gauges: every `[queue] gauges_refresh_ms`, sets the node's gauges that are
//! read, not counted ([`crate::metrics_node`]):
//!
//! - `penguin_backlog_jobs{state}` of the partitions this node owns: one
//!   statement ([`backlog::count`]), so the sum over nodes is the cluster's
//!   backlog (each partition has one owner);
//! - the per-IP gauges of the IPs of the tenants this node owns, from the
//!   ownership Cluster keeps (status, warm-up day, daily limit) and one
//!   statement for their sends today ([`backlog::sent_today`]); an IP no longer
//!   owned is zeroed (its new owner reports it);
//! - the engine's Postgres pool and the Redis pool (no I/O);
//! - `penguin_storage_rows{table}` / `penguin_storage_bytes{table}` of the
//!   fixed `storage::METRIC_TABLES`, at most every [`STORAGE_EVERY`] (catalog
//!   reads, and a count of the tables of at most 1 MiB): cluster-wide values,
//!   the same on every node.
//!
//! A node that owns nothing runs no statement. The cost is per node and
//! period, never per tenant or message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use penguin_engine::store::routing::IpSpec;
use penguin_engine::store::{backlog, storage};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use uuid::Uuid;

use crate::context::Ctx;
use crate::db_timing::DbOp;
use crate::metrics_node::{IpGauges, PoolGauges, PoolKind};

/// How often the storage gauges are read (they move slowly).
pub const STORAGE_EVERY: Duration = Duration::from_secs(60);

pub struct Gauges;

pub enum GaugesMsg {
    Tick,
}

pub struct GaugesState {
    ctx: Ctx,
    /// The IPs reported last time, by id (to zero those no longer owned).
    reported: HashMap<Uuid, IpAddr>,
    /// When the storage gauges were last read.
    storage_read: Option<std::time::Instant>,
}

impl Actor for Gauges {
    type Msg = GaugesMsg;
    type State = GaugesState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        let every = Duration::from_millis(ctx.config.queue.gauges_refresh_ms);
        myself.send_interval(every, || GaugesMsg::Tick);
        let _ = myself.cast(GaugesMsg::Tick);
        Ok(GaugesState {
            ctx,
            reported: HashMap::new(),
            storage_read: None,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GaugesMsg::Tick => state.tick().await,
        }
        Ok(())
    }
}

impl GaugesState {
    async fn tick(&mut self) {
        let ctx = &self.ctx;
        ctx.metrics.pool(
            PoolKind::Postgres("engine"),
            PoolGauges::from(ctx.pg.status()),
        );
        ctx.metrics
            .pool(PoolKind::Redis, PoolGauges::from(ctx.queue.pool().status()));
        let owned = ctx.owned();
        let now = ctx.clock.now();
        let count = backlog::count(&ctx.pg, ctx.config.node.partitions, &owned.partitions, now);
        match ctx.metrics.timed(DbOp::Backlog, count).await {
            Ok(b) => ctx.metrics.backlog(b.due, b.waiting),
            Err(err) => tracing::warn!(error = %err, "counting the backlog failed"),
        }
        self.ips(&owned.ips).await;
        self.storage().await;
    }

    async fn storage(&mut self) {
        if self
            .storage_read
            .is_some_and(|at| at.elapsed() < STORAGE_EVERY)
        {
            return;
        }
        self.storage_read = Some(std::time::Instant::now());
        let ctx = &self.ctx;
        let client = match ctx.pg.get().await {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(error = %err, "reading the storage sizes failed");
                return;
            }
        };
        match storage::tables(&client, Some(&storage::METRIC_TABLES)).await {
            Ok(tables) => {
                for table in tables {
                    let Some(name) = storage::METRIC_TABLES
                        .iter()
                        .find(|name| **name == table.size.name)
                    else {
                        continue;
                    };
                    ctx.metrics.storage(name, table.size.rows, table.size.bytes);
                }
            }
            Err(err) => tracing::warn!(error = %err, "reading the storage sizes failed"),
        }
    }

    async fn ips(&mut self, ips: &[IpSpec]) {
        let ctx = &self.ctx;
        let ids: Vec<(Uuid, Uuid)> = ips.iter().map(|ip| (ip.tenant_id, ip.id)).collect();
        let sent = match backlog::sent_today(&ctx.pg, &ids, ctx.clock.now()).await {
            Ok(sent) => sent,
            Err(err) => {
                tracing::warn!(error = %err, "reading the IPs' sends today failed");
                return;
            }
        };
        let mut reported = HashMap::with_capacity(ips.len());
        for spec in ips {
            let gauges = ip_gauges(ctx, spec, sent.get(&spec.id).copied().unwrap_or(0));
            ctx.metrics.ip_gauges(spec.address, &gauges);
            reported.insert(spec.id, spec.address);
        }
        for (id, address) in &self.reported {
            // An address moved to another IP id stays reported by that one.
            if !reported.contains_key(id) && !reported.values().any(|a| a == address) {
                ctx.metrics.ip_gone(*address);
            }
        }
        self.reported = reported;
    }
}

/// What the gauges of `spec` show; the daily limit leaves out a health
/// warning's halving (the Ip actor applies it when it reserves).
fn ip_gauges(ctx: &Ctx, spec: &IpSpec, sent_today: i64) -> IpGauges {
    IpGauges {
        status: if spec.active { "active" } else { "paused" },
        warmup_day: if spec.warmup_schedule.is_some() {
            i64::from(spec.warmup_day)
        } else {
            0
        },
        daily_limit: crate::allowance::plan(ctx, spec, 1.0).daily,
        sent_today,
    }
}
