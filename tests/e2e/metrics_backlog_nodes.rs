//! `penguin_backlog_jobs` adds up across nodes: each node counts the jobs of
//! the partitions it owns, so with one tenant on each of two nodes, both
//! campaigns held by paused IPs, each node reports its own tenant's due jobs,
//! the sum is the cluster's backlog, and each node reports only its own IP's
//! gauges. `penguin_cluster_nodes` shows both nodes on both.

use std::time::Duration;

use crate::support::api::ApiClient;
use crate::support::cluster::{shares, shares_of, start_node};
use crate::support::rig::{Rig, series};
use crate::support::{admin_token, wait_for};

const LEADS: usize = 20;

async fn page(api_url: &str) -> String {
    reqwest::get(format!("{api_url}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a text page")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backlog_gauges_sum_to_the_cluster_backlog() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.queue.gauges_refresh_ms = 100;
    })
    .await;
    let api = ApiClient::new(&rig.node().api_url());
    let scenario = rig
        .scenario_on(
            vec![vec!["127.0.0.2"], vec!["127.0.0.3"]],
            LEADS,
            &["node-a", "node-b"],
            &["node-a", "node-b"],
        )
        .await;
    for tenant in &scenario.tenants {
        scenario
            .client
            .post(
                &format!("/v1/ips/{}/pause", tenant.ips[0].0),
                admin_token(),
                &serde_json::json!({}),
            )
            .await
            .expect("ip paused");
    }
    let node_b = start_node(&rig, "node-b").await;
    wait_for(
        "one tenant on each node",
        Duration::from_secs(30),
        || async {
            (shares(&api).await == shares_of(&[("node-a", 1), ("node-b", 1)])).then_some(())
        },
    )
    .await;
    scenario.start().await.expect("campaigns start");

    let due = "penguin_backlog_jobs{state=\"due\"}";
    let (a, b) = wait_for(
        "each node counting its own tenant's due jobs",
        Duration::from_secs(30),
        || async {
            let (a, b) = (
                page(&rig.node().api_url()).await,
                page(&node_b.api_url()).await,
            );
            let each = LEADS as f64;
            (series(&a, due) == Some(each)
                && series(&b, due) == Some(each)
                && series(&a, "penguin_cluster_nodes") == Some(2.0)
                && series(&b, "penguin_cluster_nodes") == Some(2.0))
            .then_some((a, b))
        },
    )
    .await;
    let in_postgres = rig
        .env
        .psql("SELECT count(*) FROM send_jobs WHERE status IN ('pending', 'deferred') AND run_at <= now()")
        .await[0]
        .get::<_, i64>(0);
    assert_eq!(in_postgres, 2 * LEADS as i64);
    let sum = series(&a, due).unwrap_or(0.0) + series(&b, due).unwrap_or(0.0);
    assert_eq!(
        sum, in_postgres as f64,
        "the sum over nodes is the cluster's backlog"
    );
    assert_eq!(
        rig.sink.stats().messages_accepted,
        0,
        "paused IPs send nothing"
    );

    // Each IP is reported (as paused) by the node owning its tenant only.
    let paused = |ip: &str| format!("penguin_ip_status{{ip=\"{ip}\",status=\"paused\"}}");
    assert_eq!(series(&a, &paused("127.0.0.2")), Some(1.0), "{a}");
    assert_eq!(series(&b, &paused("127.0.0.3")), Some(1.0), "{b}");
    assert_ne!(series(&a, &paused("127.0.0.3")), Some(1.0), "{a}");
    assert_ne!(series(&b, &paused("127.0.0.2")), Some(1.0), "{b}");

    node_b.shutdown().await;
    rig.shutdown().await;
}
