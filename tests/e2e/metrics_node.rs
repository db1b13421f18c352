//! A node's `/metrics` tells an operator what the issue-20 dashboards and
//! alerts need, checked against real traffic: one tenant sends through
//! 127.0.0.2 to the loopback sink while another's campaign waits on a paused
//! IP (127.0.0.3), so its jobs stay due in Postgres.
//!
//! - latencies are Prometheus histograms (`_bucket` lines, counts equal to the
//!   messages sent);
//! - `penguin_backlog_jobs{state="due"}` equals the jobs held by the paused IP;
//! - the per-IP and per-provider counters equal what the sink received from
//!   each source address; the per-IP gauges show each IP's status and sends;
//! - `process_*`, pool, heartbeat and cluster gauges are present and sane;
//! - with `[database] slow_query_ms = 0` every timed store operation counts as
//!   slow: the slow counter of each op equals its histogram's count.

use std::time::Duration;

use crate::support::rig::{Rig, series};
use crate::support::{admin_token, wait_for};

const LEADS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_show_histograms_backlog_and_per_ip_counters() {
    let rig = Rig::start(|config| {
        config.database.slow_query_ms = 0;
        config.queue.gauges_refresh_ms = 100;
    })
    .await;
    let scenario = rig
        .scenario(vec![vec!["127.0.0.2"], vec!["127.0.0.3"]], LEADS)
        .await;
    let paused_ip = scenario.tenants[1].ips[0].0;
    scenario
        .client
        .post(
            &format!("/v1/ips/{paused_ip}/pause"),
            admin_token(),
            &serde_json::json!({}),
        )
        .await
        .expect("ip paused");
    scenario.start().await.expect("campaigns start");
    rig.wait_for_sink(LEADS as u64, Duration::from_secs(120))
        .await;
    rig.wait_for_jobs("sent", LEADS as i64, Duration::from_secs(30))
        .await;

    // The gauges are refreshed every 100 ms; the counters are final once every
    // job of the active IP is `sent` (the events' batch follows).
    let page = wait_for(
        "the node's gauges caught up",
        Duration::from_secs(30),
        || async {
            let page = rig.metrics().await;
            let ready = series(&page, "penguin_backlog_jobs{state=\"due\"}") == Some(LEADS as f64)
                && series(
                    &page,
                    "penguin_ip_status{ip=\"127.0.0.3\",status=\"paused\"}",
                ) == Some(1.0)
                && series(&page, "penguin_ip_sent_today_messages{ip=\"127.0.0.2\"}")
                    == Some(LEADS as f64)
                // Delivery events are written in batches, a little later.
                && page.contains("penguin_db_query_duration_seconds_count{op=\"events\"}");
            ready.then_some(page)
        },
    )
    .await;
    let value = |name: &str| series(&page, name).unwrap_or_else(|| panic!("no {name} in:\n{page}"));
    let sent = LEADS as f64;

    // Histograms, not summaries.
    for name in [
        "penguin_pickup_latency_seconds",
        "penguin_smtp_transaction_seconds",
        "penguin_api_request_duration_seconds",
        "penguin_db_query_duration_seconds",
    ] {
        assert!(
            page.contains(&format!("# TYPE {name} histogram")),
            "{name}:\n{page}"
        );
    }
    assert_eq!(
        value("penguin_pickup_latency_seconds_bucket{le=\"3600\"}"),
        sent
    );
    assert_eq!(value("penguin_pickup_latency_seconds_count"), sent);
    assert_eq!(value("penguin_smtp_transaction_seconds_count"), sent);
    assert!(
        page.lines().any(|l| l
            .starts_with("penguin_api_request_duration_seconds_bucket{method=\"POST\"")
            && l.contains("le=\"10\"")),
        "API duration buckets:\n{page}"
    );

    // The backlog: the paused IP's jobs, due; nothing scheduled later.
    assert_eq!(value("penguin_backlog_jobs{state=\"due\"}"), sent);
    assert_eq!(value("penguin_backlog_jobs{state=\"waiting\"}"), 0.0);

    // Per IP and per provider: what the sink received from each address.
    let stats = rig.sink.stats();
    let from_active = stats
        .per_source_ip
        .iter()
        .find(|(ip, _)| ip.to_string() == "127.0.0.2")
        .map(|(_, n)| *n as f64);
    assert_eq!(from_active, Some(sent), "{:?}", stats.per_source_ip);
    assert_eq!(
        value("penguin_ip_messages_total{ip=\"127.0.0.2\",outcome=\"sent\"}"),
        sent
    );
    assert_eq!(
        series(
            &page,
            "penguin_ip_messages_total{ip=\"127.0.0.3\",outcome=\"sent\"}"
        ),
        None,
        "the paused IP sent nothing"
    );
    let by_provider: f64 = page
        .lines()
        .filter(|l| {
            l.starts_with("penguin_provider_messages_total{") && l.contains("outcome=\"sent\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(by_provider, sent, "{page}");
    assert_eq!(
        value("penguin_ip_status{ip=\"127.0.0.2\",status=\"active\"}"),
        1.0
    );
    assert_eq!(
        value("penguin_ip_status{ip=\"127.0.0.2\",status=\"paused\"}"),
        0.0
    );
    assert_eq!(
        value("penguin_ip_status{ip=\"127.0.0.3\",status=\"active\"}"),
        0.0
    );
    assert_eq!(
        value("penguin_ip_sent_today_messages{ip=\"127.0.0.3\"}"),
        0.0
    );
    assert!(value("penguin_ip_warmup_day{ip=\"127.0.0.2\"}") >= 0.0);

    // Process, pools, membership.
    assert!(value("process_resident_memory_bytes") > 1e6);
    let open = value("process_open_fds");
    assert!(open >= 3.0 && open <= value("process_max_fds"), "{open}");
    assert!(value("process_cpu_seconds_total") > 0.0);
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let started = value("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 86_400.0,
        "{started} vs {now}"
    );
    let config = rig.config();
    assert_eq!(
        value("penguin_db_pool_max_connections{pool=\"engine\"}"),
        f64::from(config.database.max_connections)
    );
    assert_eq!(
        value("penguin_db_pool_max_connections{pool=\"api\"}"),
        f64::from(config.database.api_max_connections)
    );
    assert_eq!(
        value("penguin_redis_pool_max_connections"),
        config.redis.pool_size as f64
    );
    for pool in ["engine", "api"] {
        let open = value(&format!(
            "penguin_db_pool_connections{{pool=\"{pool}\",state=\"in_use\"}}"
        )) + value(&format!(
            "penguin_db_pool_connections{{pool=\"{pool}\",state=\"idle\"}}"
        ));
        assert!(open >= 1.0, "{pool} pool has connections: {open}");
        assert!(value(&format!("penguin_db_pool_waiting{{pool=\"{pool}\"}}")) >= 0.0);
    }
    assert!(value("penguin_redis_pool_connections{state=\"idle\"}") >= 0.0);
    assert_eq!(value("penguin_cluster_nodes"), 1.0);
    let beat = value("penguin_heartbeat_timestamp_seconds");
    assert!(beat > now - 60.0 && beat <= now + 1.0, "{beat} vs {now}");

    // slow_query_ms = 0: every timed operation is slow.
    for op in [
        "due_scan",
        "claim_due",
        "claim_sending",
        "record_outcomes",
        "events",
        "backlog",
    ] {
        let timed = value(&format!(
            "penguin_db_query_duration_seconds_count{{op=\"{op}\"}}"
        ));
        let slow = value(&format!("penguin_db_slow_queries_total{{op=\"{op}\"}}"));
        assert!(timed >= 1.0, "{op} timed");
        // The backlog keeps being counted while the page renders: one apart at most.
        let slack = if op == "backlog" { 1.0 } else { 0.0 };
        assert!(
            (slow - timed).abs() <= slack,
            "{op}: every one slow at 0 ms: {slow} of {timed}"
        );
    }
    rig.shutdown().await;
}
