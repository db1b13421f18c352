//! Scaling during a campaign: 1 → 3 → 1 nodes on one Postgres and Redis. The
//! joining nodes take their share of the tenants (balanced within one of even)
//! by graceful hand-off; draining them (`POST /v1/nodes/{id}/drain`) hands their
//! tenants back the same way and they exit. The sink receives every message
//! exactly once: no loss, no duplicate, while the campaign sends throughout.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::api::ApiClient;
use crate::support::cluster::{SIX_IPS, shares, shares_of, slow_smtp, start_node, tenant_per_ip};
use crate::support::rig::Rig;
use crate::support::{admin_token, wait_for};

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
    slow_smtp(&rig, 150);
    let scenario = rig
        .scenario_on(
            tenant_per_ip(&SIX_IPS),
            200,
            &["node-a", "node-b", "node-c"],
            &["node-a", "node-a", "node-b", "node-b", "node-c", "node-c"],
        )
        .await;
    scenario.start().await.expect("campaigns start");
    rig.wait_for_sink(100, Duration::from_secs(30)).await;

    // 1 → 3: the new nodes take two tenants each, handed off while sending.
    let node_b = start_node(&rig, "node-b").await;
    let node_c = start_node(&rig, "node-c").await;
    let even = shares_of(&[("node-a", 2), ("node-b", 2), ("node-c", 2)]);
    wait_for(
        "2 tenants on each of 3 nodes",
        Duration::from_secs(30),
        || async { (shares(&api).await == even).then_some(()) },
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
                Some(admin_token()),
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
    let all = shares_of(&[("node-a", 6)]);
    wait_for(
        "every tenant back on node-a",
        Duration::from_secs(30),
        || async { (shares(&api).await == all).then_some(()) },
    )
    .await;

    rig.wait_until_done(&scenario, Duration::from_secs(120))
        .await;
    assert_eq!(rig.check_delivered(&scenario).await, 0, "no duplicate");
    let stats = rig.sink.stats();
    assert_eq!(stats.messages_accepted, scenario.total);
    // A drained node is gone from the membership, and draining it again is 404.
    api.post("/v1/nodes/node-b/drain", Some(admin_token()), &json!({}))
        .await
        .assert_error(404, "not_found");
    rig.shutdown().await;
}
