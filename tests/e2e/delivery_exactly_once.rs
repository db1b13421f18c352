//! The main job, end to end: 2 tenants × 3 IPs × 5,000 leads through the API,
//! Postgres, Redis, the actors and SMTP to the loopback sink. Every lead ends
//! `sent`, the sink received each Message-ID exactly once, and every message left
//! from an IP of its own campaign's pool.

use std::time::Duration;

use crate::support::rig::Rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tenants_three_ips_each_exactly_once() {
    let rig = Rig::start(|_| {}).await;
    let scenario = rig
        .scenario(
            vec![
                vec!["127.0.0.2", "127.0.0.3", "127.0.0.4"],
                vec!["127.0.0.5", "127.0.0.6", "127.0.0.7"],
            ],
            5_000,
        )
        .await;
    scenario.start().await.expect("campaigns start");
    rig.wait_until_done(&scenario, Duration::from_secs(240))
        .await;

    let extra = rig.check_delivered(&scenario).await;
    assert_eq!(extra, 0, "no duplicates without a crash");
    let stats = rig.sink.stats();
    assert_eq!(stats.messages_accepted, 10_000);
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

    // The node's /metrics shows what happened (counters are process-wide).
    let text = reqwest::get(format!("{}/metrics", rig.node().api_url()))
        .await
        .expect("metrics answer")
        .text()
        .await
        .unwrap();
    let sent: f64 = text
        .lines()
        .find(|l| l.starts_with("penguin_messages_total{outcome=\"sent\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sent counter in /metrics:\n{text}"));
    assert!(sent >= 10_000.0, "sent counter {sent}");
    for name in [
        "penguin_queue_depth_jobs",
        "penguin_pickup_latency_seconds",
        "penguin_jobs_fed_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    rig.shutdown().await;
}
