//! Three nodes during a campaign; node processes are killed with SIGKILL, again
//! and again, and restarted. Their tenants move to the survivors when the leases
//! expire, and back by hand-off when they return. The sink must receive every
//! lead (lost = 0), every job ends terminal, and the copies are exactly what
//! the kills cost: the harness counts, per kill, the killed node's transactions
//! under way — jobs of its tenants still `sending` right after the kill (no
//! outcome written) that the sink had received. Only those can be sent twice;
//! every copy must be one of them.
//!
//! The CI run sends 2,400 messages with six kills; a longer one is
//! `E2E_FAULT_LEADS=5000 E2E_FAULT_KILLS=20 bash scripts/test.sh --test e2e nodes_killed`
//! (30,000 messages; leads per tenant, kills spread evenly over the campaign).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::support::api::ApiClient;
use crate::support::cluster::{
    SIX_IPS, job_of, jobs_received, node_config, sending_jobs, shares, slow_smtp, tenant_per_ip,
    works,
};
use crate::support::node_process::NodeProcess;
use crate::support::rig::{Rig, RigOptions};
use crate::support::wait_for;

const CONNECTIONS_PER_IP: usize = 2;

/// A number from the environment, or `default`.
fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_killed_and_restarted_lose_nothing_and_copy_at_most_their_transactions() {
    let leads = env_number("E2E_FAULT_LEADS", 400);
    let kills = env_number("E2E_FAULT_KILLS", 6);
    kill_and_restart(false, leads, kills).await;
}

/// The scenario with `leads` per tenant and `rounds` kills, on one Redis or
/// on a Redis Cluster.
pub(crate) async fn kill_and_restart(redis_cluster: bool, leads: u64, rounds: u64) {
    let tweak = |config: &mut penguin_config::Config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = 3_000;
        config.limits.ip_messages_per_second = 40;
        config.delivery.connections_per_ip = CONNECTIONS_PER_IP;
    };
    let rig = Rig::start_with(tweak, RigOptions::on_redis(redis_cluster)).await;
    slow_smtp(&rig, 20);
    let api = ApiClient::new(&rig.node().api_url());
    let scenario = rig
        .scenario_on(
            tenant_per_ip(&SIX_IPS),
            leads as usize,
            &["node-a", "node-b", "node-c"],
            &["node-a", "node-a", "node-b", "node-b", "node-c", "node-c"],
        )
        .await;
    let mut nodes: HashMap<&str, NodeProcess> = HashMap::new();
    for id in ["node-b", "node-c"] {
        nodes.insert(id, NodeProcess::start(&node_config(&rig, id)).await);
    }
    wait_for(
        "2 tenants on each of 3 nodes",
        Duration::from_secs(30),
        || async {
            let shares = shares(&api).await;
            (shares.len() == 3 && shares.values().all(|n| *n == 2)).then_some(())
        },
    )
    .await;
    scenario.start().await.expect("campaigns start");

    // Kill a node at evenly spread points of the campaign, alternating b and c,
    // each restarted at once.
    let mut bound = 0;
    let mut kills = 0;
    let mut may_repeat: HashSet<String> = HashSet::new();
    for (round, victim) in ["node-b", "node-c"]
        .iter()
        .cycle()
        .take(rounds as usize)
        .enumerate()
    {
        let target = scenario.total * (round as u64 + 1) / (rounds + 2);
        wait_for(
            "the campaign's progress",
            Duration::from_secs(60),
            || async { (rig.sink.stats().messages_accepted >= target).then_some(()) },
        )
        .await;
        let tenants = works(&api, victim).await;
        let node = nodes.remove(victim).expect("a running node");
        node.signal("KILL");
        drop(node);
        kills += 1;
        let unrecorded = sending_jobs(&rig.env, &tenants).await;
        nodes.insert(victim, NodeProcess::start(&node_config(&rig, victim)).await);
        // Read once the restart is done: transactions the sink was finishing
        // when the node died are recorded by then, and the tenants' leases (a
        // TTL after the kill) have not passed to a new owner yet.
        let received = jobs_received(rig.sink.messages(), |_| true);
        let under_way: HashSet<String> = unrecorded.intersection(&received).cloned().collect();
        bound += under_way.len();
        may_repeat.extend(under_way);
    }

    // Long runs (E2E_FAULT_LEADS) get a minute more per 5,000 messages.
    let minutes = 3 + scenario.total / 5_000;
    rig.wait_until_done(&scenario, Duration::from_secs(60 * minutes))
        .await;
    let copies = rig.check_delivered(&scenario).await;
    eprintln!("{kills} kills: {copies} copies, {bound} transactions under way at the kills");
    assert!(
        copies as usize <= bound,
        "{copies} copies over {bound} transactions under way"
    );
    for id in rig.sink.message_ids_seen_more_than_once() {
        assert!(
            may_repeat.contains(job_of(&id)),
            "{id} was repeated without a kill to explain it"
        );
    }
    assert_eq!(
        rig.sink.stats().unique_message_ids,
        scenario.total,
        "every lead received"
    );
    drop(nodes);
    rig.shutdown().await;
}
