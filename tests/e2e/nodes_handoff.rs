//! A partition handed to a joining node reaches it at its next heartbeat, not
//! after a lease expiry: the node handing off renews the lease until its
//! hand-off releases it, and never takes a released lease back. Leases here
//! last a minute, so a lease taken back would hold its partition from the new
//! owner far longer than the test waits.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_redis::redis;
use penguin_engine::assignment::share_of;
use penguin_engine::lease::LEASES_KEY;

use crate::support::cluster::start_node;
use crate::support::rig::Rig;
use crate::support::wait_for;

/// Every partition's lease holder (`:released` included), expired or not.
async fn holders(rig: &Rig) -> HashMap<u32, String> {
    let mut conn = rig.env.redis.get().await.expect("redis connection");
    let all: HashMap<u32, String> = redis::cmd("HGETALL")
        .arg(LEASES_KEY)
        .query_async(&mut conn)
        .await
        .expect("HGETALL");
    all.into_iter()
        .map(|(p, v)| (p, v.split('|').next().unwrap_or_default().to_string()))
        .collect()
}

/// Waits until `node` holds the lease of every partition of its share among
/// `nodes`, and no other node holds any of them.
async fn wait_for_share(rig: &Rig, nodes: &[&str], node: &str) {
    let count = rig.config().node.partitions;
    let names: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    let share = share_of(count, &names, node);
    wait_for(
        &format!("{node} holding its {} partitions", share.len()),
        Duration::from_secs(20),
        || async {
            let holders = holders(rig).await;
            share
                .iter()
                .all(|p| holders.get(p).map(String::as_str) == Some(node))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joining_nodes_get_their_partitions_without_waiting_for_an_expiry() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = 60_000;
    })
    .await;
    wait_for_share(&rig, &["node-a"], "node-a").await;
    // Three joins, each handing half of node-a's partitions off.
    for joining in ["node-b", "node-c", "node-d"] {
        let node = start_node(&rig, joining).await;
        wait_for_share(&rig, &["node-a", joining], joining).await;
        wait_for_share(&rig, &["node-a", joining], "node-a").await;
        // A clean stop releases its leases; node-a takes them at once.
        node.shutdown().await;
        wait_for_share(&rig, &["node-a"], "node-a").await;
    }
    rig.shutdown().await;
}
