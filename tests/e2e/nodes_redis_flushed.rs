//! Redis emptied (FLUSHALL) twice, at 30 % and at 70 % of a campaign running on
//! three nodes (one in process, two `penguin serve` processes). Leases,
//! membership, queues and counters are all gone; the nodes find each other and
//! share the tenants again, the reconcilers re-feed every `queued` job from
//! Postgres, and the campaign finishes by itself: every lead delivered, every
//! job terminal. A vanished lease is retaken by its holder at once and by any
//! other node only after a whole TTL, so no tenant gets a second sender: no job
//! is sent twice (README: "nothing lost, no copy"), and the sink must show 0
//! copies once it has been quiet (a late second copy included).
//! Daily caps surviving a flush are proven on one node in `limits_overflow`.

use std::time::Duration;

use crate::support::api::ApiClient;
use crate::support::cluster::{SIX_IPS, node_config, shares, tenant_per_ip};
use crate::support::node_process::NodeProcess;
use crate::support::rig::Rig;
use crate::support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flushing_redis_twice_on_three_nodes_loses_nothing_and_resumes() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = 3_000;
        config.limits.ip_messages_per_second = 40;
        config.delivery.connections_per_ip = 2;
    })
    .await;
    let api = ApiClient::new(&rig.node().api_url());
    let scenario = rig
        .scenario_on(
            tenant_per_ip(&SIX_IPS),
            300,
            &["node-a", "node-b", "node-c"],
            &["node-a", "node-a", "node-b", "node-b", "node-c", "node-c"],
        )
        .await;
    let mut processes = Vec::new();
    for id in ["node-b", "node-c"] {
        processes.push(NodeProcess::start(&node_config(&rig, id)).await);
    }
    let three_nodes = || async {
        let shares = shares(&api).await;
        (shares.len() == 3 && shares.values().all(|n| *n == 2)).then_some(())
    };
    wait_for(
        "2 tenants on each of 3 nodes",
        Duration::from_secs(30),
        three_nodes,
    )
    .await;
    scenario.start().await.expect("campaigns start");

    for percent in [30, 70] {
        let target = scenario.total * percent / 100;
        wait_for(
            "the campaign's progress",
            Duration::from_secs(60),
            || async { (rig.sink.stats().messages_accepted >= target).then_some(()) },
        )
        .await;
        rig.env.flush_redis().await;
        // Sending resumes by itself, with the nodes sharing the tenants again.
        let resumed = rig.sink.stats().messages_accepted + 50;
        wait_for(
            "sending after the flush",
            Duration::from_secs(30),
            || async {
                (rig.sink.stats().messages_accepted >= resumed.min(scenario.total)).then_some(())
            },
        )
        .await;
        wait_for(
            "2 tenants on each of 3 nodes again",
            Duration::from_secs(30),
            three_nodes,
        )
        .await;
    }

    rig.wait_until_done(&scenario, Duration::from_secs(120))
        .await;
    rig.wait_until_quiet().await;
    let copies = rig.check_delivered(&scenario).await;
    eprintln!("2 flushes: {copies} copies");
    assert_eq!(
        copies,
        0,
        "a flush gave a tenant a second sender: copies of {:?}…",
        &rig.sink.message_ids_seen_more_than_once()[..copies.min(5) as usize]
    );
    assert_eq!(rig.sink.stats().unique_message_ids, scenario.total);
    drop(processes);
    rig.shutdown().await;
}
