//! `GET /v1/nodes`: two engine nodes on one Postgres and Redis both show, each
//! tenant is owned by exactly one of them, the sender's count matches what the
//! sink received, a node that stops cleanly leaves at once, and a node that
//! stops heartbeating drops out when its record expires.

use std::collections::HashSet;
use std::time::Duration;

use penguin_engine::membership::{Membership, NodeRecord};
use serde_json::Value;
use uuid::Uuid;

use crate::support::api::ApiClient;
use crate::support::cluster::{nodes, start_node};
use crate::support::rig::Rig;
use crate::support::wait_for;

fn ids(nodes: &[Value]) -> Vec<&str> {
    nodes.iter().map(|n| n["id"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_nodes_list_their_tenants_and_send_counts() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
    })
    .await;
    let api = ApiClient::new(&rig.node().api_url());
    let scenario = rig
        .scenario(vec![vec!["127.0.0.2"], vec!["127.0.0.3"]], 40)
        .await;
    let tenants: HashSet<Uuid> = scenario.tenants.iter().map(|t| t.id).collect();

    let node_b = start_node(&rig, "node-b").await;

    // Both nodes heartbeat; between them they own every tenant, each once.
    let listed = wait_for(
        "both nodes owning every tenant",
        Duration::from_secs(20),
        || async {
            let listed = nodes(&api).await;
            let owned: Vec<Uuid> = listed
                .iter()
                .flat_map(|n| n["tenants"].as_array().unwrap().iter())
                .map(|t| t.as_str().unwrap().parse().unwrap())
                .collect();
            let complete = owned.iter().copied().collect::<HashSet<_>>() == tenants;
            (ids(&listed) == ["node-a", "node-b"] && complete && owned.len() == tenants.len())
                .then_some(listed)
        },
    )
    .await;
    for node in &listed {
        assert!(node["started_at"].is_string() && node["last_heartbeat"].is_string());
    }

    scenario.start().await.expect("campaigns start");
    rig.wait_until_done(&scenario, Duration::from_secs(60))
        .await;
    assert_eq!(rig.check_delivered(&scenario).await, 0);
    // The nodes' counts add up to what the sink accepted.
    let accepted = rig.sink.stats().messages_accepted;
    wait_for(
        "the send counts of both nodes",
        Duration::from_secs(20),
        || async {
            let sent: u64 = nodes(&api)
                .await
                .iter()
                .map(|n| n["sent_total"].as_u64().unwrap())
                .sum();
            (sent == accepted).then_some(())
        },
    )
    .await;

    // A clean stop leaves the membership at once.
    node_b.shutdown().await;
    assert_eq!(ids(&nodes(&api).await), ["node-a"]);

    // A node that stops heartbeating (here: a record written once) drops out
    // when its record expires.
    let membership = Membership::new(rig.env.redis.clone());
    let ghost = NodeRecord::starting("node-ghost");
    membership.beat(&ghost, 1_500).await.expect("beat");
    assert_eq!(ids(&nodes(&api).await), ["node-a", "node-ghost"]);
    wait_for(
        "the ghost's record to expire",
        Duration::from_secs(10),
        || async { (ids(&nodes(&api).await) == ["node-a"]).then_some(()) },
    )
    .await;

    // Only the admin sees the membership.
    let tenant = &scenario.tenants[0];
    api.get("/v1/nodes", Some(&tenant.token))
        .await
        .assert_error(403, "forbidden");
    api.get("/v1/nodes", None)
        .await
        .assert_error(401, "unauthorized");
    rig.shutdown().await;
}
