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

use penguin_engine::sink::{Rule, RuleStage};
use serde_json::Value;

use crate::support::api::ApiClient;
use crate::support::node_process::NodeProcess;
use crate::support::rig::Rig;
use crate::support::{ADMIN_TOKEN, wait_for};

const CONNECTIONS_PER_IP: usize = 2;

/// A number from the environment, or `default`.
fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The jobs whose message the sink has received (a Message-ID is
/// `<job id>@<domain>`).
fn received_jobs(rig: &Rig) -> HashSet<String> {
    rig.sink
        .messages()
        .into_iter()
        .filter_map(|m| m.message_id)
        .filter_map(|id| id.split('@').next().map(str::to_string))
        .collect()
}

/// The tenants `node` works (owned or being handed off), from `GET /v1/nodes`.
async fn tenants_of(api: &ApiClient, node: &str) -> Vec<String> {
    let answer = api.get("/v1/nodes", Some(ADMIN_TOKEN)).await;
    answer.expect(200)["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["id"] == node)
        .flat_map(|n| {
            let mut tenants = n["tenants"].as_array().cloned().unwrap_or_default();
            tenants.extend(n["handing_off"].as_array().cloned().unwrap_or_default());
            tenants
        })
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// Tenants owned per node, from `GET /v1/nodes`.
async fn owned(api: &ApiClient) -> HashMap<String, u64> {
    let answer = api.get("/v1/nodes", Some(ADMIN_TOKEN)).await;
    answer.expect(200)["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n: &Value| {
            let tenants = n["tenants"].as_array().map_or(0, Vec::len) as u64;
            (n["id"].as_str().unwrap().to_string(), tenants)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_killed_and_restarted_lose_nothing_and_copy_at_most_their_transactions() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = 3_000;
        config.limits.ip_messages_per_second = 40;
        config.delivery.connections_per_ip = CONNECTIONS_PER_IP;
    })
    .await;
    let slow = Rule {
        recipient_pattern: "*".into(),
        stage: RuleStage::DataEnd,
        reply: None,
        times: None,
        delay_ms: Some(20),
        drop_connection: false,
    };
    rig.sink.set_rules(vec![slow]).expect("a valid rule");
    let api = ApiClient::new(&rig.node().api_url());
    let ips = [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
        "127.0.0.6",
        "127.0.0.7",
    ];
    let scenario = rig
        .scenario(
            ips.iter().map(|ip| vec![*ip]).collect(),
            env_number("E2E_FAULT_LEADS", 400) as usize,
        )
        .await;
    let config_of = |id: &str| {
        let mut config = rig.config().clone();
        config.node.id = id.into();
        config
    };
    let mut nodes: HashMap<&str, NodeProcess> = HashMap::new();
    for id in ["node-b", "node-c"] {
        nodes.insert(id, NodeProcess::start(&config_of(id)).await);
    }
    wait_for(
        "2 tenants on each of 3 nodes",
        Duration::from_secs(30),
        || async {
            let owned = owned(&api).await;
            (owned.len() == 3 && owned.values().all(|n| *n == 2)).then_some(())
        },
    )
    .await;
    scenario.start().await.expect("campaigns start");

    // Kill a node at evenly spread points of the campaign, alternating b and c,
    // each restarted at once.
    let rounds = env_number("E2E_FAULT_KILLS", 6);
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
        let tenants = tenants_of(&api, victim).await;
        let node = nodes.remove(victim).expect("a running node");
        node.signal("KILL");
        drop(node);
        kills += 1;
        let unrecorded: HashSet<String> = if tenants.is_empty() {
            HashSet::new()
        } else {
            let sql = format!(
                "SELECT id::text FROM send_jobs WHERE status = 'sending' AND tenant_id::text IN ('{}')",
                tenants.join("', '")
            );
            rig.env.psql(&sql).await.iter().map(|r| r.get(0)).collect()
        };
        nodes.insert(victim, NodeProcess::start(&config_of(victim)).await);
        // Read once the restart is done: transactions the sink was finishing
        // when the node died are recorded by then, and the tenants' leases (a
        // TTL after the kill) have not passed to a new owner yet.
        let received = received_jobs(&rig);
        let under_way: HashSet<String> = unrecorded.intersection(&received).cloned().collect();
        bound += under_way.len();
        may_repeat.extend(under_way);
    }

    rig.wait_until_done(&scenario, Duration::from_secs(180))
        .await;
    let copies = rig.check_delivered(&scenario).await;
    eprintln!("{kills} kills: {copies} copies, {bound} transactions under way at the kills");
    assert!(
        copies as usize <= bound,
        "{copies} copies over {bound} transactions under way"
    );
    for id in rig.sink.message_ids_seen_more_than_once() {
        let job = id.split('@').next().unwrap_or_default().to_string();
        assert!(
            may_repeat.contains(&job),
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
