//! Ownership by partitions (issue 15): Rust and Postgres hash a tenant into the
//! same partition, and a node that joins mid-campaign takes over its share of
//! many tenants' partitions without a lead lost or sent twice.

use std::time::Duration;

use penguin_engine::partition;
use uuid::Uuid;

use crate::support::TestEnv;
use crate::support::api::ApiClient;
use crate::support::cluster::{nodes, slow_smtp, start_node, tenant_per_ip};
use crate::support::rig::Rig;
use crate::support::wait_for;

/// `penguin_partition(uuid, integer)` (V11) and `engine::partition::of` agree,
/// for random ids and every partition count shape (1, prime, default, largest).
#[tokio::test]
async fn postgres_and_rust_hash_tenants_alike() {
    let env = TestEnv::start().await;
    for count in [1u32, 7, 512, 4_096] {
        let rows = env
            .psql(&format!(
                "SELECT id, penguin_partition(id, {count})
                 FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, 2000)) ids"
            ))
            .await;
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            let id: Uuid = row.get(0);
            let in_sql: i32 = row.get(1);
            assert_eq!(in_sql as u32, partition::of(id, count), "{id} of {count}");
            seen.insert(in_sql);
        }
        // 2,000 ids cover every one of a few partitions.
        if count <= 7 {
            assert_eq!(seen.len(), count as usize);
        }
    }
}

const TENANTS: usize = 40;
const LEADS: usize = 50;

/// Forty tenants, one IP each, spread over node-a's partitions; node-b joins
/// while their campaigns send (every SMTP transaction slowed), takes about half
/// the partitions over through hand-offs, and the campaigns end with every lead
/// delivered exactly once, both nodes having sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_takes_over_many_tenants_partitions_exactly_once() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = 3_000;
        config.limits.ip_messages_per_second = 4;
    })
    .await;
    slow_smtp(&rig, 10);
    let api = ApiClient::new(&rig.node().api_url());
    let addresses: Vec<String> = (0..TENANTS).map(|i| format!("127.0.1.{}", i + 2)).collect();
    let ips: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let scenario = rig.scenario(tenant_per_ip(&ips), LEADS).await;
    scenario.start().await.expect("campaigns start");
    rig.wait_for_sink(100, Duration::from_secs(60)).await;

    let node_b = start_node(&rig, "node-b").await;
    let tenants_of = |node: &serde_json::Value| node["tenants"].as_array().map_or(0, Vec::len);
    wait_for(
        "node-b owning part of the tenants",
        Duration::from_secs(30),
        || async {
            let listed = nodes(&api).await;
            let partitions: Vec<usize> = listed
                .iter()
                .map(|n| n["partitions"].as_array().map_or(0, Vec::len))
                .collect();
            let b = listed.iter().find(|n| n["id"] == "node-b")?;
            (partitions == [256, 256] && tenants_of(b) > 0).then_some(())
        },
    )
    .await;
    assert!(
        rig.sink.stats().messages_accepted < (TENANTS * LEADS) as u64,
        "node-b joined while the campaigns were still sending"
    );

    rig.wait_until_done(&scenario, Duration::from_secs(180))
        .await;
    rig.wait_until_quiet().await;
    let copies = rig.check_delivered(&scenario).await;
    assert_eq!(copies, 0, "a hand-off sent a message twice");
    let listed = nodes(&api).await;
    let total_tenants: usize = listed.iter().map(tenants_of).sum();
    assert_eq!(total_tenants, TENANTS, "every tenant owned by one node");
    for node in &listed {
        assert!(
            node["sent_total"].as_u64().unwrap_or(0) > 0,
            "{} sent nothing: {node}",
            node["id"]
        );
    }
    node_b.shutdown().await;
    rig.shutdown().await;
}
