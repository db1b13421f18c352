//! Timing of the hot-path store operations: one wrapper, [`Metrics::timed`],
//! around each call, labelled by a [`DbOp`] from a fixed list. Each records
//! `penguin_db_query_duration_seconds{op}`; one taking at least
//! `[database] slow_query_ms` also counts in `penguin_db_slow_queries_total{op}`
//! and logs a warning naming the op and its duration.
//!
//! Covered (the statements a busy node runs per message or per batch, and the
//! backlog count): the Feeder's due scan and claims, the Ip actor's claim to
//! `sending`, the StatusWriter's outcome batch, the Tenant's postpone, event
//! and rollup writes, the backlog count. The time includes waiting for a pooled
//! connection (what the node experiences). Other statements (API reads,
//! takeovers, warm-up verdicts, webhooks) are not timed.

use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_histogram, histogram};

use crate::metrics::Metrics;

pub const DB_QUERY_DURATION: &str = "penguin_db_query_duration_seconds";
pub const DB_SLOW_QUERIES: &str = "penguin_db_slow_queries_total";

/// Bucket bounds of [`DB_QUERY_DURATION`], in seconds: 1 ms to 30 s (the
/// seed's slow-query threshold, 2 s, is a bound).
pub const DB_QUERY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// A timed store operation: the `op` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOp {
    /// The Feeder's scan for tenants with due jobs (`store::due::scan`).
    DueScan,
    /// `pending|deferred → queued` (`ledger::claim_due`, `claim_due_urgent`).
    ClaimDue,
    /// `queued → sending` (`ledger::claim_sending`).
    ClaimSending,
    /// The outcome batch (`ledger::record_outcomes`).
    RecordOutcomes,
    /// `queued → pending` later (`ledger::postpone_queued`).
    Postpone,
    /// Delivery events and their rollups (`store::events`).
    Events,
    /// `penguin_backlog_jobs` (`store::backlog`).
    Backlog,
}

impl DbOp {
    pub const ALL: [DbOp; 7] = [
        DbOp::DueScan,
        DbOp::ClaimDue,
        DbOp::ClaimSending,
        DbOp::RecordOutcomes,
        DbOp::Postpone,
        DbOp::Events,
        DbOp::Backlog,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DbOp::DueScan => "due_scan",
            DbOp::ClaimDue => "claim_due",
            DbOp::ClaimSending => "claim_sending",
            DbOp::RecordOutcomes => "record_outcomes",
            DbOp::Postpone => "postpone",
            DbOp::Events => "events",
            DbOp::Backlog => "backlog",
        }
    }
}

/// Whether an operation that took `took` counts as slow: at least `threshold`.
fn is_slow(took: Duration, threshold: Duration) -> bool {
    took >= threshold
}

impl Metrics {
    pub(crate) fn describe_db_timing(&self) {
        self.record(|| {
            describe_histogram!(
                DB_QUERY_DURATION,
                "Hot-path store operations by op (due_scan, claim_due, claim_sending, record_outcomes, postpone, events, backlog), pool wait included (histogram, 1 ms to 30 s)."
            );
            describe_counter!(
                DB_SLOW_QUERIES,
                "Timed store operations that took at least [database] slow_query_ms, by op."
            );
        });
    }

    /// Runs `query`, recording how long it took under `op`.
    pub async fn timed<F: Future>(&self, op: DbOp, query: F) -> F::Output {
        let started = Instant::now();
        let output = query.await;
        self.query_took(op, started.elapsed());
        output
    }

    pub(crate) fn query_took(&self, op: DbOp, took: Duration) {
        let slow = is_slow(took, self.slow_query);
        self.record(|| {
            histogram!(DB_QUERY_DURATION, "op" => op.as_str()).record(took.as_secs_f64());
            if slow {
                counter!(DB_SLOW_QUERIES, "op" => op.as_str()).increment(1);
            }
        });
        if slow {
            tracing::warn!(
                op = op.as_str(),
                ms = took.as_millis() as u64,
                threshold_ms = self.slow_query.as_millis() as u64,
                "slow store operation"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_operations_at_or_over_the_threshold_are_slow() {
        let ms = Duration::from_millis;
        assert!(!is_slow(ms(99), ms(100)));
        assert!(is_slow(ms(100), ms(100)));
        assert!(
            is_slow(Duration::ZERO, Duration::ZERO),
            "0 counts every one"
        );
    }

    #[test]
    fn op_labels_are_distinct() {
        let mut labels: Vec<_> = DbOp::ALL.iter().map(|op| op.as_str()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), DbOp::ALL.len());
    }
}
