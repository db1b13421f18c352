//! The node-level gauges of [`Metrics`]: the Postgres backlog of the partitions
//! this node owns, the state of the IPs it owns, its pools, its membership
//! heartbeat. Set by the Gauges actor (`gauges.rs`) every
//! `[queue] gauges_refresh_ms` and by Cluster on each heartbeat, never on the
//! delivery path.
//!
//! Label sets stay bounded: `state` and `status` are fixed lists; `ip` is the
//! address of an IP of a tenant this node owns (at most the `smtp_ips` rows of
//! its partitions); `pool` is `engine` or `api`.

use metrics::{describe_gauge, gauge};

use crate::metrics::Metrics;

/// Jobs waiting in Postgres, by `state`: `due` (pending or deferred, `run_at`
/// passed) and `waiting` (`run_at` ahead), of the partitions this node owns.
pub const BACKLOG: &str = "penguin_backlog_jobs";
/// 1 for the IP's current status (`active`, `paused`), 0 for the others.
pub const IP_STATUS: &str = "penguin_ip_status";
pub const IP_WARMUP_DAY: &str = "penguin_ip_warmup_day";
pub const IP_DAILY_LIMIT: &str = "penguin_ip_daily_limit_messages";
pub const IP_SENT_TODAY: &str = "penguin_ip_sent_today_messages";
pub const DB_POOL_CONNECTIONS: &str = "penguin_db_pool_connections";
pub const DB_POOL_MAX: &str = "penguin_db_pool_max_connections";
pub const DB_POOL_WAITING: &str = "penguin_db_pool_waiting";
pub const REDIS_POOL_CONNECTIONS: &str = "penguin_redis_pool_connections";
pub const REDIS_POOL_MAX: &str = "penguin_redis_pool_max_connections";
pub const REDIS_POOL_WAITING: &str = "penguin_redis_pool_waiting";
pub const HEARTBEAT_TIMESTAMP: &str = "penguin_heartbeat_timestamp_seconds";
pub const CLUSTER_NODES: &str = "penguin_cluster_nodes";
/// Rows of each table of `store::storage::METRIC_TABLES` (exact for small
/// tables, else the planner's estimate); cluster-wide: every node reports the
/// same value (take `max`, never `sum`).
pub const STORAGE_ROWS: &str = "penguin_storage_rows";
/// Bytes (heap, indexes, TOAST; partitions summed) of the same tables.
pub const STORAGE_BYTES: &str = "penguin_storage_bytes";

/// The statuses [`IP_STATUS`] reports (retired IPs are no longer owned).
pub const IP_STATUSES: [&str; 2] = ["active", "paused"];

/// What one IP's gauges show.
#[derive(Debug, Clone, PartialEq)]
pub struct IpGauges {
    /// `active` or `paused`.
    pub status: &'static str,
    /// The warm-up day; 0 when the IP has no schedule (warm).
    pub warmup_day: i64,
    /// Today's allowance; `None` when unlimited (the gauge is not set).
    pub daily_limit: Option<u32>,
    pub sent_today: i64,
}

/// A pool's state as deadpool reports it (`Pool::status()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGauges {
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
    pub max_size: usize,
}

impl From<deadpool_postgres::Status> for PoolGauges {
    fn from(s: deadpool_postgres::Status) -> Self {
        Self {
            size: s.size,
            available: s.available,
            waiting: s.waiting,
            max_size: s.max_size,
        }
    }
}

/// Which pool a [`PoolGauges`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// A Postgres pool, by `pool` label (`engine` or `api`).
    Postgres(&'static str),
    Redis,
}

impl Metrics {
    pub(crate) fn describe_node(&self) {
        self.record(|| {
            describe_gauge!(
                BACKLOG,
                "Jobs waiting in Postgres (pending or deferred) of the partitions this node owns, by state: due (run_at passed) or waiting (run_at ahead). Summed over nodes: the cluster's backlog."
            );
            describe_gauge!(
                IP_STATUS,
                "1 for the status (active, paused) of each IP of a tenant this node owns, 0 for the others; ip: the address (bounded by the node's smtp_ips)."
            );
            describe_gauge!(
                IP_WARMUP_DAY,
                "Warm-up day of each IP this node owns (0: no schedule, warm)."
            );
            describe_gauge!(
                IP_DAILY_LIMIT,
                "Today's allowance of each IP this node owns (absent when unlimited)."
            );
            describe_gauge!(
                IP_SENT_TODAY,
                "Sends reserved today (IP-local day) by each IP this node owns."
            );
            describe_gauge!(
                DB_POOL_CONNECTIONS,
                "Postgres pool connections by pool (engine, api) and state (in_use, idle)."
            );
            describe_gauge!(DB_POOL_MAX, "Postgres pool size limit, by pool.");
            describe_gauge!(
                DB_POOL_WAITING,
                "Callers waiting for a Postgres connection, by pool."
            );
            describe_gauge!(
                REDIS_POOL_CONNECTIONS,
                "Redis pool connections by state (in_use, idle)."
            );
            describe_gauge!(REDIS_POOL_MAX, "Redis pool size limit.");
            describe_gauge!(REDIS_POOL_WAITING, "Callers waiting for a Redis connection.");
            describe_gauge!(
                HEARTBEAT_TIMESTAMP,
                "Unix time of this node's last successful membership heartbeat."
            );
            describe_gauge!(CLUSTER_NODES, "Live nodes this node sees in the membership.");
            describe_gauge!(
                STORAGE_ROWS,
                "Rows per table (a fixed list: delivery_events, send_jobs, leads, ...); exact for small tables, else pg_class.reltuples. Cluster-wide: every node reports the same (use max)."
            );
            describe_gauge!(
                STORAGE_BYTES,
                "Bytes per table (heap, indexes, TOAST; partitions summed), same tables. Cluster-wide: every node reports the same (use max)."
            );
        });
        self.describe_db_timing();
    }

    pub fn backlog(&self, due: i64, waiting: i64) {
        self.record(|| {
            gauge!(BACKLOG, "state" => "due").set(due as f64);
            gauge!(BACKLOG, "state" => "waiting").set(waiting as f64);
        });
    }

    /// Sets the storage gauges of one table (of a fixed list).
    pub fn storage(&self, table: &'static str, rows: i64, bytes: i64) {
        self.record(|| {
            gauge!(STORAGE_ROWS, "table" => table).set(rows as f64);
            gauge!(STORAGE_BYTES, "table" => table).set(bytes as f64);
        });
    }

    /// Sets the gauges of the IP at `ip`.
    pub fn ip_gauges(&self, ip: std::net::IpAddr, state: &IpGauges) {
        let ip = ip.to_string();
        self.record(|| {
            for status in IP_STATUSES {
                let on = if status == state.status { 1.0 } else { 0.0 };
                gauge!(IP_STATUS, "ip" => ip.clone(), "status" => status).set(on);
            }
            gauge!(IP_WARMUP_DAY, "ip" => ip.clone()).set(state.warmup_day as f64);
            if let Some(limit) = state.daily_limit {
                gauge!(IP_DAILY_LIMIT, "ip" => ip.clone()).set(f64::from(limit));
            }
            gauge!(IP_SENT_TODAY, "ip" => ip).set(state.sent_today as f64);
        });
    }

    /// Zeroes the gauges of an IP this node no longer owns (its new owner
    /// reports it), so sums over nodes stay right.
    pub fn ip_gone(&self, ip: std::net::IpAddr) {
        let ip = ip.to_string();
        self.record(|| {
            for status in IP_STATUSES {
                gauge!(IP_STATUS, "ip" => ip.clone(), "status" => status).set(0.0);
            }
            gauge!(IP_WARMUP_DAY, "ip" => ip.clone()).set(0.0);
            gauge!(IP_DAILY_LIMIT, "ip" => ip.clone()).set(0.0);
            gauge!(IP_SENT_TODAY, "ip" => ip).set(0.0);
        });
    }

    pub fn pool(&self, kind: PoolKind, pool: PoolGauges) {
        let in_use = pool.size.saturating_sub(pool.available) as f64;
        let idle = pool.available as f64;
        self.record(|| match kind {
            PoolKind::Postgres(name) => {
                gauge!(DB_POOL_CONNECTIONS, "pool" => name, "state" => "in_use").set(in_use);
                gauge!(DB_POOL_CONNECTIONS, "pool" => name, "state" => "idle").set(idle);
                gauge!(DB_POOL_MAX, "pool" => name).set(pool.max_size as f64);
                gauge!(DB_POOL_WAITING, "pool" => name).set(pool.waiting as f64);
            }
            PoolKind::Redis => {
                gauge!(REDIS_POOL_CONNECTIONS, "state" => "in_use").set(in_use);
                gauge!(REDIS_POOL_CONNECTIONS, "state" => "idle").set(idle);
                gauge!(REDIS_POOL_MAX).set(pool.max_size as f64);
                gauge!(REDIS_POOL_WAITING).set(pool.waiting as f64);
            }
        });
    }

    /// A membership heartbeat succeeded at `unix_ms`, seeing `live_nodes`.
    pub fn heartbeat(&self, unix_ms: i64, live_nodes: usize) {
        self.record(|| {
            gauge!(HEARTBEAT_TIMESTAMP).set(unix_ms as f64 / 1000.0);
            gauge!(CLUSTER_NODES).set(live_nodes as f64);
        });
    }
}
