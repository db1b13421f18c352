//! Scaling during a campaign: 1 → 3 → 1 nodes on one Postgres and Redis. The
//! joining nodes take their share of the tenants (balanced within one of even)
//! by graceful hand-off; draining them (`POST /v1/nodes/{id}/drain`) hands their
//! tenants back the same way and they exit. The sink receives every message
//! exactly once: no loss, no duplicate, while the campaign sends throughout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use penguin::node::{Node, NodeOptions};
use penguin_engine::sink::{Rule, RuleStage};
use serde_json::{Value, json};

use crate::support::api::ApiClient;
use crate::support::rig::{Rig, global_metrics};
use crate::support::{ADMIN_TOKEN, wait_for};

/// Tenants owned per node, from `GET /v1/nodes`.
async fn owned(api: &ApiClient) -> HashMap<String, usize> {
    let answer = api.get("/v1/nodes", Some(ADMIN_TOKEN)).await;
    answer.expect(200)["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let tenants = n["tenants"].as_array().map_or(0, Vec::len);
            (n["id"].as_str().unwrap().to_string(), tenants)
        })
        .collect()
}

async fn start_node(rig: &Rig, id: &str) -> Node {
    let mut config = rig.config().clone();
    config.node.id = id.into();
    Node::start(
        Arc::new(config),
        NodeOptions {
            metrics: global_metrics(),
            ..NodeOptions::standalone()
        },
    )
    .await
    .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_one_three_one_loses_and_duplicates_nothing() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = 3_000;
        // 6 IPs × 25 messages/s: the campaign lasts through the scaling.
        config.limits.ip_messages_per_second = 25;
    })
    .await;
    let api = ApiClient::new(&rig.node().api_url());
    // Every SMTP transaction takes 150 ms at the end of DATA, so each hand-off
    // meets transactions under way: a node that gave a tenant up before they
    // finished would see the new owner send them again.
    let slow = Rule {
        recipient_pattern: "*".into(),
        stage: RuleStage::DataEnd,
        reply: None,
        times: None,
        delay_ms: Some(150),
        drop_connection: false,
    };
    rig.sink.set_rules(vec![slow]).expect("a valid rule");
    let ips = [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
        "127.0.0.6",
        "127.0.0.7",
    ];
    let scenario = rig
        .scenario(ips.iter().map(|ip| vec![*ip]).collect(), 200)
        .await;
    scenario.start().await.expect("campaigns start");
    rig.wait_for_sink(100, Duration::from_secs(30)).await;

    // 1 → 3: the new nodes take two tenants each, handed off while sending.
    let node_b = start_node(&rig, "node-b").await;
    let node_c = start_node(&rig, "node-c").await;
    let even: HashMap<String, usize> = [("node-a", 2), ("node-b", 2), ("node-c", 2)]
        .into_iter()
        .map(|(id, n)| (id.to_string(), n))
        .collect();
    wait_for(
        "2 tenants on each of 3 nodes",
        Duration::from_secs(30),
        || async { (owned(&api).await == even).then_some(()) },
    )
    .await;
    let before = rig.sink.stats().messages_accepted;
    wait_for("sending on 3 nodes", Duration::from_secs(30), || async {
        (rig.sink.stats().messages_accepted >= before + 100).then_some(())
    })
    .await;
    assert!(
        rig.sink.stats().messages_accepted < scenario.total,
        "the campaign must still be sending when the nodes drain"
    );

    // 3 → 1: both drain; node-a gets every tenant back and they exit.
    for node in ["node-b", "node-c"] {
        let answer = api
            .post(
                &format!("/v1/nodes/{node}/drain"),
                Some(ADMIN_TOKEN),
                &json!({}),
            )
            .await;
        assert_eq!(answer.expect(202)["id"], Value::from(node));
    }
    for node in [&node_b, &node_c] {
        tokio::time::timeout(Duration::from_secs(60), node.engine().drained())
            .await
            .expect("the node drains");
    }
    node_b.shutdown().await;
    node_c.shutdown().await;
    let all: HashMap<String, usize> = [("node-a".to_string(), 6)].into();
    wait_for(
        "every tenant back on node-a",
        Duration::from_secs(30),
        || async { (owned(&api).await == all).then_some(()) },
    )
    .await;

    rig.wait_until_done(&scenario, Duration::from_secs(120))
        .await;
    assert_eq!(rig.check_delivered(&scenario).await, 0, "no duplicate");
    let stats = rig.sink.stats();
    assert_eq!(stats.messages_accepted, scenario.total);
    // A drained node is gone from the membership, and draining it again is 404.
    api.post("/v1/nodes/node-b/drain", Some(ADMIN_TOKEN), &json!({}))
        .await
        .assert_error(404, "not_found");
    rig.shutdown().await;
}
