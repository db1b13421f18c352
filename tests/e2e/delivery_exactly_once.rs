//! The main job, end to end: 2 tenants × 3 IPs × 5,000 leads through the API,
//! Postgres, Redis, the actors and SMTP to the loopback sink. Every lead ends
//! `sent`, the sink received each Message-ID exactly once, every message left
//! from an IP of its own campaign's pool, and the node's own `/metrics` counts
//! exactly that work (each node has its own registry).

use std::time::Duration;

use crate::support::rig::{Rig, RigOptions, series};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tenants_three_ips_each_exactly_once() {
    two_tenants_three_ips(false, 5_000).await;
}

/// The scenario with `leads` per tenant, on one Redis or on a Redis Cluster.
pub(crate) async fn two_tenants_three_ips(redis_cluster: bool, leads: usize) {
    let rig = Rig::start_with(|_| {}, RigOptions::on_redis(redis_cluster)).await;
    let scenario = rig
        .scenario(
            vec![
                vec!["127.0.0.2", "127.0.0.3", "127.0.0.4"],
                vec!["127.0.0.5", "127.0.0.6", "127.0.0.7"],
            ],
            leads,
        )
        .await;
    scenario.start().await.expect("campaigns start");
    rig.wait_until_done(&scenario, Duration::from_secs(240))
        .await;

    let extra = rig.check_delivered(&scenario).await;
    assert_eq!(extra, 0, "no duplicates without a crash");
    let stats = rig.sink.stats();
    let total = 2 * leads as u64;
    assert_eq!(stats.messages_accepted, total);
    // All six IPs carried traffic, and connections were reused.
    assert_eq!(stats.per_source_ip.len(), 6, "{:?}", stats.per_source_ip);
    assert!(
        stats.connections < stats.messages_accepted / 10,
        "connections must carry many messages: {} for {}",
        stats.connections,
        stats.messages_accepted
    );
    // Each campaign becomes `completed` once every job is terminal.
    crate::support::wait_for("campaigns completed", Duration::from_secs(10), || async {
        let rows = rig
            .env
            .psql("SELECT count(*) FROM campaigns WHERE status = 'completed'")
            .await;
        (rows[0].get::<_, i64>(0) == 2).then_some(())
    })
    .await;

    // The node's /metrics counts exactly its own work: every lead sent, each with one
    // pickup latency; each job fed to Redis once (nothing went back to Postgres:
    // no fault; jobs whose in-flight deadline passed on a busy machine go back to
    // their Redis list, not through the feeder); and the feeder's rounds since
    // the last pop saw empty lists.
    let page = crate::support::wait_for(
        "the queue depth gauge at 0",
        Duration::from_secs(10),
        || async {
            let page = rig.metrics().await;
            (series(&page, "penguin_queue_depth_jobs") == Some(0.0)).then_some(page)
        },
    )
    .await;
    let value = |name: &str| series(&page, name).unwrap_or_else(|| panic!("no {name} in:\n{page}"));
    for name in [
        "penguin_messages_total{outcome=\"sent\"}",
        "penguin_pickup_latency_seconds_count",
        "penguin_jobs_fed_total",
    ] {
        assert_eq!(value(name), total as f64, "{name} on this node's /metrics");
    }
    rig.shutdown().await;
}
