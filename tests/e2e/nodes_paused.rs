//! A node paused by the OS (SIGSTOP) for 1.5 × the lease TTL, then resumed
//! (SIGCONT). Meanwhile the other node takes its tenants over. Once resumed,
//! the paused node knows its leases may be gone (their deadline passed on the
//! monotonic clock) and sends nothing it had claimed; it pops and claims nothing
//! until it holds a lease again. The only copies the sink may see are of the
//! transactions under way at the pause: jobs the paused node had claimed (still
//! `sending`, no outcome written) whose message came over a connection it had
//! open when it was stopped (one it was in the middle of finishes on resume).
//! No lead is lost.
//!
//! Fencing: the other node's takeover raised the tenants' epochs, so every
//! outcome the paused node writes for a transaction it finishes after the
//! resume is refused (counted by its `penguin_fenced_writes_total`): 0 stale
//! writes accepted.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::api::ApiClient;
use crate::support::cluster::{
    counter, job_of, jobs_received, node_config, nodes, sending_jobs, shares, shares_of, slow_smtp,
    tenant_per_ip, works,
};
use crate::support::node_process::NodeProcess;
use crate::support::rig::Rig;
use crate::support::wait_for;

const TTL_MS: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_paused_past_its_lease_sends_nothing_it_claimed() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = TTL_MS;
        config.limits.ip_messages_per_second = 10;
        config.delivery.connections_per_ip = 2;
    })
    .await;
    // 100 ms per SMTP transaction: the paused node has some under way.
    slow_smtp(&rig, 100);
    let api = ApiClient::new(&rig.node().api_url());
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let scenario = rig.scenario(tenant_per_ip(&ips), 100).await;
    let node_b = NodeProcess::start(&node_config(&rig, "node-b")).await;
    wait_for(
        "2 tenants on each node",
        Duration::from_secs(30),
        || async {
            (shares(&api).await == shares_of(&[("node-a", 2), ("node-b", 2)])).then_some(())
        },
    )
    .await;

    scenario.start().await.expect("campaigns start");
    wait_for("node-b sending", Duration::from_secs(30), || async {
        nodes(&api)
            .await
            .iter()
            .any(|n| n["id"] == "node-b" && n["sent_total"].as_u64().unwrap_or(0) >= 10)
            .then_some(())
    })
    .await;

    let tenants_b = works(&api, "node-b").await;
    let ips_b: HashSet<std::net::IpAddr> = scenario
        .tenants
        .iter()
        .filter(|t| tenants_b.contains(&t.id.to_string()))
        .flat_map(|t| t.ips.iter().map(|(_, address)| address.parse().unwrap()))
        .collect();
    node_b.signal("STOP");
    let stopped = Instant::now();
    let connections_at_stop = rig.sink.stats().connections;
    let begun_at_stop = rig.sink.stats().transactions_begun;
    let accepted_at_stop = rig.sink.stats().messages_accepted;
    let claimed = sending_jobs(&rig.env, &tenants_b).await;
    wait_for(
        "node-a owning every tenant",
        Duration::from_secs(30),
        || async { (shares(&api).await == shares_of(&[("node-a", 4)])).then_some(()) },
    )
    .await;
    // The fault lasts 1.5 × the lease TTL, and until node-a's takeover of
    // node-b's tenants has raised their epochs in Postgres.
    wait_for(
        "node-b's tenants taken over, 1.5 × TTL into the pause",
        Duration::from_secs(30),
        || async {
            let sql = format!(
                "SELECT count(*) FROM tenant_fences
                 WHERE node_id = 'node-a' AND tenant_id::text IN ('{}')",
                tenants_b.join("', '")
            );
            let taken: i64 = rig.env.psql(&sql).await[0].get(0);
            (taken == tenants_b.len() as i64
                && stopped.elapsed() >= Duration::from_millis(TTL_MS * 3 / 2))
            .then_some(())
        },
    )
    .await;
    node_b.signal("CONT");

    rig.wait_until_done(&scenario, Duration::from_secs(120))
        .await;
    let duplicates = rig.check_delivered(&scenario).await;
    // Transactions node-b had begun at the stop and that finished after it:
    // their outcomes it wrote on resume, under its old epoch. (Once it holds
    // tenants again it sends new transactions; those are not stale.)
    let stale: Vec<_> = rig
        .sink
        .messages()
        .into_iter()
        .filter(|m| {
            m.transaction <= begun_at_stop
                && m.seq > accepted_at_stop
                && ips_b.contains(&m.source_ip)
        })
        .filter_map(|m| m.message_id)
        .collect();
    let b_api = ApiClient::new(node_b.api_url());
    let refused = counter(&b_api, "penguin_fenced_writes_total{write=\"status\"}").await;
    eprintln!(
        "stale sends of node-b: {}, its outcome writes refused: {refused}",
        stale.len()
    );
    assert!(
        refused as usize >= stale.len(),
        "{} stale sends ({stale:?}) but only {refused} of their outcome writes refused; node-b:\n{}",
        stale.len(),
        node_b.log_tail()
    );
    // Claimed at the pause, and sent over a connection open then: what the
    // pause can cost.
    let under_way: HashSet<String> = jobs_received(rig.sink.messages(), |m| {
        m.connection_id <= connections_at_stop
    })
    .intersection(&claimed)
    .cloned()
    .collect();
    eprintln!(
        "copies after the pause: {duplicates} ({} under way)",
        under_way.len()
    );
    assert!(
        duplicates as usize <= under_way.len(),
        "{duplicates} copies, {} under way; node-b:\n{}",
        under_way.len(),
        node_b.log_tail()
    );
    for id in rig.sink.message_ids_seen_more_than_once() {
        assert!(
            under_way.contains(job_of(&id)),
            "{id} repeated, not under way at the pause"
        );
    }
    // node-b is back and gets its share again, by hand-off.
    wait_for(
        "2 tenants on each node again",
        Duration::from_secs(30),
        || async {
            (shares(&api).await == shares_of(&[("node-a", 2), ("node-b", 2)])).then_some(())
        },
    )
    .await;
    drop(node_b);
    rig.shutdown().await;
}
