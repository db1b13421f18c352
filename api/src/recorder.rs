//! The one way a node's metrics registry is built ([`node_recorder`]): the
//! Prometheus recorder with the bucket bounds of every histogram, so
//! latencies render as histograms (`_bucket`, `_sum`, `_count`, which sum across
//! nodes) instead of the exporter's default summaries. `penguin serve`, the
//! demo, the benchmark and the tests all build it here.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use penguin_actors::db_timing::{DB_QUERY_BUCKETS, DB_QUERY_DURATION};
use penguin_actors::metrics::{
    PICKUP_LATENCY, PICKUP_LATENCY_BUCKETS, SMTP_TRANSACTION, SMTP_TRANSACTION_BUCKETS,
};

use crate::metrics::{REQUEST_DURATION_BUCKETS, REQUEST_DURATION_SECONDS};

/// Every histogram of a node with its bucket bounds (seconds).
pub const HISTOGRAMS: [(&str, &[f64]); 4] = [
    (PICKUP_LATENCY, PICKUP_LATENCY_BUCKETS),
    (SMTP_TRANSACTION, SMTP_TRANSACTION_BUCKETS),
    (DB_QUERY_DURATION, DB_QUERY_BUCKETS),
    (REQUEST_DURATION_SECONDS, REQUEST_DURATION_BUCKETS),
];

/// A node's own registry (the caller runs its upkeep).
pub fn node_recorder() -> PrometheusRecorder {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in HISTOGRAMS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
            .expect("the bucket lists are constants, none empty");
    }
    builder.build_recorder()
}

#[cfg(test)]
mod tests {
    use metrics::histogram;

    use super::*;

    #[test]
    fn every_latency_renders_as_a_histogram() {
        let recorder = node_recorder();
        metrics::with_local_recorder(&recorder, || {
            for (name, _) in HISTOGRAMS {
                histogram!(name).record(0.02);
            }
        });
        let text = recorder.handle().render();
        for (name, buckets) in HISTOGRAMS {
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{name} sorted");
            assert!(text.contains(&format!("# TYPE {name} histogram")), "{text}");
            assert!(
                text.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 1")),
                "{text}"
            );
            assert!(text.contains(&format!("{name}_count 1")), "{text}");
        }
    }
}
