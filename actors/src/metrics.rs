//! Every metric the actors emit, declared in one place. Names follow
//! `penguin_<what>_<unit>`; labels come from small fixed sets.
//!
//! A node records into its own registry through [`Metrics`] (held by the
//! engine context), never the process-wide recorder: nodes sharing a process
//! (the demo, the tests) each count only their own work on their `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use metrics::{
    Recorder, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

pub const MESSAGES: &str = "penguin_messages_total";
pub const QUEUE_DEPTH: &str = "penguin_queue_depth_jobs";
pub const PICKUP_LATENCY: &str = "penguin_pickup_latency_seconds";
pub const ACTOR_RESTARTS: &str = "penguin_actor_restarts_total";
pub const SMTP_CONNECTIONS: &str = "penguin_smtp_connections_total";
pub const JOBS_FED: &str = "penguin_jobs_fed_total";
pub const JOBS_RECOVERED: &str = "penguin_jobs_recovered_total";
pub const OWNED_PARTITIONS: &str = "penguin_owned_partitions";
pub const ACTIVE_TENANTS: &str = "penguin_active_tenants";
pub const REPLY_RULES: &str = "penguin_reply_rules_matched_total";
pub const POSTPONED: &str = "penguin_jobs_postponed_total";
pub const DKIM_SIGNED: &str = "penguin_dkim_signed_total";
pub const DKIM_UNSIGNED: &str = "penguin_dkim_unsigned_total";
pub const COUNTERS_REBUILT: &str = "penguin_ip_counters_rebuilt_total";
pub const IP_TRIPS: &str = "penguin_ip_health_trips_total";
pub const ALLOWANCE_WAITS: &str = "penguin_allowance_waits_total";
pub const WARMUP_DECISIONS: &str = "penguin_warmup_decisions_total";
pub const IP_AUTO_RESUMED: &str = "penguin_ip_auto_resumed_total";
pub const LEASE_ABANDONED: &str = "penguin_jobs_lease_abandoned_total";
pub const FENCED: &str = "penguin_fenced_writes_total";
pub const REFUSED_ADDRESSES: &str = "penguin_delivery_refused_addresses_total";
pub const ATTEMPT_DEADLINE: &str = "penguin_delivery_attempt_deadline_total";
pub const WEBHOOK_DELIVERIES: &str = "penguin_webhook_deliveries_total";
pub const WEBHOOK_REQUESTS: &str = "penguin_webhook_requests_total";
pub const WEBHOOKS_IN_FLIGHT: &str = "penguin_webhook_requests_in_flight";
/// Rows deleted by retention rounds, by `table`.
pub const RETENTION_DELETED: &str = "penguin_retention_deleted_total";
/// Event partitions created or dropped by retention rounds, by `action`.
pub const RETENTION_PARTITIONS: &str = "penguin_retention_partitions_total";
/// One SMTP transaction, MAIL FROM to the final reply (histogram).
pub const SMTP_TRANSACTION: &str = "penguin_smtp_transaction_seconds";
/// Delivery outcomes by sending IP (`ip`: its address) and `outcome`.
pub const IP_MESSAGES: &str = "penguin_ip_messages_total";
/// Delivery outcomes by `provider` (a configured provider's name, or `default`)
/// and `outcome`.
pub const PROVIDER_MESSAGES: &str = "penguin_provider_messages_total";

/// Bucket bounds of [`PICKUP_LATENCY`], in seconds: 10 ms to an hour (a job
/// may wait for an allowance, a window or a retry for that long).
pub const PICKUP_LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];
/// Bucket bounds of [`SMTP_TRANSACTION`], in seconds: 5 ms to 5 minutes.
pub const SMTP_TRANSACTION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Where one node's actors record their metrics.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<dyn Recorder + Send + Sync>,
    /// A timed store operation at least this slow counts as slow
    /// (`[database] slow_query_ms`, see [`crate::db_timing`]).
    pub(crate) slow_query: Duration,
}

impl Metrics {
    /// Records into `recorder` (the node's registry), with the default slow
    /// query threshold (2 s).
    pub fn new(recorder: Arc<dyn Recorder + Send + Sync>) -> Self {
        Self {
            recorder,
            slow_query: Duration::from_millis(2_000),
        }
    }

    /// Counts store operations of at least `ms` as slow (`[database] slow_query_ms`).
    pub fn with_slow_query_ms(mut self, ms: u64) -> Self {
        self.slow_query = Duration::from_millis(ms);
        self
    }

    /// Runs `record` with this node's registry as the recorder (on this thread,
    /// for as long as `record` runs).
    pub(crate) fn record(&self, record: impl FnOnce()) {
        metrics::with_local_recorder(self.recorder.as_ref(), record);
    }

    /// Registers descriptions with the node's registry.
    pub fn describe(&self) {
        self.record(|| {
            describe_counter!(
                MESSAGES,
                "Delivery attempts by outcome (sent, deferred, bounced, failed, suppressed)."
            );
            describe_gauge!(
                QUEUE_DEPTH,
                "Jobs waiting in the Redis lists of the tenants this node owns."
            );
            describe_histogram!(
                PICKUP_LATENCY,
                "Time from a job being due to the SMTP server accepting it (histogram, 10 ms to 1 h)."
            );
            describe_histogram!(
                SMTP_TRANSACTION,
                "One SMTP transaction, MAIL FROM to the final reply (histogram, 5 ms to 5 min)."
            );
            describe_counter!(
                IP_MESSAGES,
                "Delivery outcomes by sending IP (ip: its address; bounded by the IPs of the tenants this node owns) and outcome."
            );
            describe_counter!(
                PROVIDER_MESSAGES,
                "Delivery outcomes by provider (a configured [[providers]] name, or default) and outcome."
            );
            describe_counter!(
                ACTOR_RESTARTS,
                "Actors restarted by their supervisor, by actor kind."
            );
            describe_counter!(SMTP_CONNECTIONS, "SMTP connections opened.");
            describe_counter!(
                LEASE_ABANDONED,
                "Claimed jobs not sent because this node's leases were no longer surely held."
            );
            describe_counter!(
                FENCED,
                "Job writes refused because the tenant's epoch moved on (another node took it over) or, for status writes, the job was claimed again since (the Reaper returned it), by write (claim, status)."
            );
            describe_counter!(
                REFUSED_ADDRESSES,
                "MX addresses never connected to because they are not globally routable, by range (loopback, private, cloud-metadata, ...)."
            );
            describe_counter!(
                ATTEMPT_DEADLINE,
                "Delivery attempts cut by `[delivery] attempt_timeout_ms`, by when (before_smtp: released unattempted; in_smtp: deferred)."
            );
            describe_counter!(JOBS_FED, "Jobs moved from Postgres to Redis.");
            describe_counter!(
                WEBHOOK_DELIVERIES,
                "Webhook deliveries (one per webhook and event) after an attempt, by result (delivered, retry, dead)."
            );
            describe_counter!(
                WEBHOOK_REQUESTS,
                "Webhook POSTs made, by outcome (ok, http_error, timeout, failed)."
            );
            describe_gauge!(
                WEBHOOKS_IN_FLIGHT,
                "Webhook POSTs under way on this node."
            );
            describe_counter!(JOBS_RECOVERED, "Jobs returned by the reaper, by reason.");
            describe_gauge!(OWNED_PARTITIONS, "Partitions whose lease this node holds.");
            describe_gauge!(ACTIVE_TENANTS, "Tenants with a Tenant actor on this node (those with work).");
            describe_counter!(
                REPLY_RULES,
                "Replies that matched a reply rule, by action (slow_down, suspend)."
            );
            describe_counter!(
                COUNTERS_REBUILT,
                "Per-IP day counters rebuilt in Redis from Postgres, by reason: missing (Redis lost them) or disagreed (reservations no claim counted)."
            );
            describe_counter!(
                IP_TRIPS,
                "Health breakers that fired, by action (pause_ip, suspend_pair, slow_pair)."
            );
            describe_counter!(
                ALLOWANCE_WAITS,
                "Jobs left waiting in Postgres because every IP of their pool had used its allowance."
            );
            describe_counter!(
                DKIM_SIGNED,
                "Messages DKIM-signed before the wire (each signed once per key: RSA, and Ed25519 when on)."
            );
            describe_counter!(
                DKIM_UNSIGNED,
                "Messages sent unsigned: no verified sending domain of the tenant covers their From."
            );
            describe_counter!(
                POSTPONED,
                "Jobs sent back to Postgres with a later run_at by shaping, by reason."
            );
            describe_counter!(
                WARMUP_DECISIONS,
                "End-of-day warm-up verdicts applied, by decision (advance, hold, step_back, rewarm)."
            );
            describe_counter!(
                RETENTION_DELETED,
                "Rows deleted by retention, by table (send_jobs, leads, delivery_event_keys; delivery_events: rows of the default partition past events_days)."
            );
            describe_counter!(
                RETENTION_PARTITIONS,
                "Monthly delivery_events partitions created (ahead) or dropped (past events_days) by retention, by action."
            );
            describe_counter!(
                IP_AUTO_RESUMED,
                "IPs resumed automatically when their health pause ended."
            );
        });
        self.describe_node();
    }

    pub fn message(&self, outcome: &'static str) {
        self.record(|| counter!(MESSAGES, "outcome" => outcome).increment(1));
    }

    pub fn queue_depth(&self, jobs: usize) {
        self.record(|| gauge!(QUEUE_DEPTH).set(jobs as f64));
    }

    pub fn pickup_latency(&self, seconds: f64) {
        self.record(|| histogram!(PICKUP_LATENCY).record(seconds));
    }

    pub fn smtp_transaction(&self, seconds: f64) {
        self.record(|| histogram!(SMTP_TRANSACTION).record(seconds));
    }

    /// One delivery outcome of the IP at `ip` towards `provider` (`default`
    /// when the destination was never classified).
    pub fn ip_provider_message(&self, ip: std::net::IpAddr, provider: &str, outcome: &'static str) {
        let (ip, provider) = (ip.to_string(), provider.to_string());
        self.record(|| {
            counter!(IP_MESSAGES, "ip" => ip, "outcome" => outcome).increment(1);
            counter!(PROVIDER_MESSAGES, "provider" => provider, "outcome" => outcome).increment(1);
        });
    }

    pub fn actor_restart(&self, kind: &'static str) {
        self.record(|| counter!(ACTOR_RESTARTS, "actor" => kind).increment(1));
    }

    pub fn lease_expired_abandoned(&self) {
        self.record(|| counter!(LEASE_ABANDONED).increment(1));
    }

    pub fn fenced(&self, write: &'static str, n: usize) {
        self.record(|| counter!(FENCED, "write" => write).increment(n as u64));
    }

    pub fn refused_address(&self, range: &'static str) {
        self.record(|| counter!(REFUSED_ADDRESSES, "range" => range).increment(1));
    }

    pub fn attempt_deadline(&self, when: &'static str) {
        self.record(|| counter!(ATTEMPT_DEADLINE, "when" => when).increment(1));
    }

    pub fn smtp_connection(&self) {
        self.record(|| counter!(SMTP_CONNECTIONS).increment(1));
    }

    pub fn jobs_fed(&self, n: usize) {
        self.record(|| counter!(JOBS_FED).increment(n as u64));
    }

    pub fn jobs_recovered(&self, reason: &'static str, n: u64) {
        self.record(|| counter!(JOBS_RECOVERED, "reason" => reason).increment(n));
    }

    /// Partitions whose lease this node holds.
    pub fn owned_partitions(&self, n: usize) {
        self.record(|| gauge!(OWNED_PARTITIONS).set(n as f64));
    }

    /// Tenants with a Tenant actor on this node (those with work).
    pub fn active_tenants(&self, n: usize) {
        self.record(|| gauge!(ACTIVE_TENANTS).set(n as f64));
    }

    pub fn reply_rule(&self, action: &'static str) {
        self.record(|| counter!(REPLY_RULES, "action" => action).increment(1));
    }

    pub fn postponed(&self, why: &'static str) {
        self.record(|| counter!(POSTPONED, "reason" => why).increment(1));
    }

    /// One message rendered for the wire: signed or not.
    pub fn dkim(&self, signed: bool) {
        let name = if signed { DKIM_SIGNED } else { DKIM_UNSIGNED };
        self.record(|| counter!(name).increment(1));
    }

    /// Per-IP counters rebuilt from Postgres: `missing` (Redis lost them) or
    /// `disagreed` (reservations no claim counted, e.g. of a killed node).
    pub fn counters_rebuilt(&self, reason: &'static str) {
        self.record(|| counter!(COUNTERS_REBUILT, "reason" => reason).increment(1));
    }

    pub fn health_trip(&self, action: &'static str) {
        self.record(|| counter!(IP_TRIPS, "action" => action).increment(1));
    }

    pub fn allowance_wait(&self, n: usize) {
        self.record(|| counter!(ALLOWANCE_WAITS).increment(n as u64));
    }

    pub fn warmup_decision(&self, decision: &'static str) {
        self.record(|| counter!(WARMUP_DECISIONS, "decision" => decision).increment(1));
    }

    /// Deliveries of one webhook batch that ended `result` (delivered, retry, dead).
    pub fn webhook_deliveries(&self, result: &'static str, n: u64) {
        if n > 0 {
            self.record(|| counter!(WEBHOOK_DELIVERIES, "result" => result).increment(n));
        }
    }

    /// One webhook POST, by outcome (ok, http_error, timeout, failed).
    pub fn webhook_request(&self, outcome: &'static str) {
        self.record(|| counter!(WEBHOOK_REQUESTS, "outcome" => outcome).increment(1));
    }

    pub fn webhooks_in_flight(&self, n: usize) {
        self.record(|| gauge!(WEBHOOKS_IN_FLIGHT).set(n as f64));
    }

    /// Rows one retention round deleted from `table` (counted even when 0, so
    /// the series exists from the first round).
    pub fn retention_deleted(&self, table: &'static str, n: u64) {
        self.record(|| counter!(RETENTION_DELETED, "table" => table).increment(n));
    }

    /// Partitions one retention round `action`ed (created, dropped).
    pub fn retention_partitions(&self, action: &'static str, n: u64) {
        self.record(|| counter!(RETENTION_PARTITIONS, "action" => action).increment(n));
    }

    pub fn ip_auto_resumed(&self) {
        self.record(|| counter!(IP_AUTO_RESUMED).increment(1));
    }
}
