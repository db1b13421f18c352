//! What the multi-node scenarios (`nodes_*`) share: more nodes beside a
//! [`Rig`]'s own (in process or as [`super::node_process::NodeProcess`]), the
//! membership as `GET /v1/nodes` shows it, slow SMTP so faults meet
//! transactions under way, and which jobs the sink received (a Message-ID is
//! `<job id>@<domain>`) or Postgres still has `sending`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use penguin::node::{Node, NodeOptions};
use penguin_config::Config;
use penguin_engine::sink::{ReceivedMessage, Rule, RuleStage};
use serde_json::Value;

use super::api::ApiClient;
use super::rig::Rig;
use super::{TestEnv, admin_token};

/// One tenant per IP on these addresses: six tenants.
pub const SIX_IPS: [&str; 6] = [
    "127.0.0.2",
    "127.0.0.3",
    "127.0.0.4",
    "127.0.0.5",
    "127.0.0.6",
    "127.0.0.7",
];

/// One tenant per address of `ips`, for [`Rig::scenario`].
pub fn tenant_per_ip<'a>(ips: &[&'a str]) -> Vec<Vec<&'a str>> {
    ips.iter().map(|ip| vec![*ip]).collect()
}

/// The rig's configuration under another `node.id`.
pub fn node_config(rig: &Rig, id: &str) -> Config {
    let mut config = rig.config().clone();
    config.node.id = id.into();
    config
}

/// Another node in this process, on the rig's databases and sink.
pub async fn start_node(rig: &Rig, id: &str) -> Node {
    Node::start(Arc::new(node_config(rig, id)), NodeOptions::standalone())
        .await
        .expect("node starts")
}

/// Every SMTP transaction takes `delay_ms` at the end of DATA.
pub fn slow_smtp(rig: &Rig, delay_ms: u64) {
    let slow = Rule {
        recipient_pattern: "*".into(),
        stage: RuleStage::DataEnd,
        reply: None,
        times: None,
        delay_ms: Some(delay_ms),
        drop_connection: false,
    };
    rig.sink.set_rules(vec![slow]).expect("a valid rule");
}

/// The live nodes, from `GET /v1/nodes` (admin).
pub async fn nodes(api: &ApiClient) -> Vec<Value> {
    let answer = api.get("/v1/nodes", Some(admin_token())).await;
    answer.expect(200)["nodes"]
        .as_array()
        .expect("a nodes array")
        .clone()
}

/// How many tenants each live node owns.
pub async fn shares(api: &ApiClient) -> HashMap<String, usize> {
    nodes(api)
        .await
        .iter()
        .map(|n| {
            let tenants = n["tenants"].as_array().map_or(0, Vec::len);
            (n["id"].as_str().unwrap().to_string(), tenants)
        })
        .collect()
}

/// `[(node, tenants)]` as [`shares`] answers it.
pub fn shares_of(pairs: &[(&str, usize)]) -> HashMap<String, usize> {
    pairs.iter().map(|(id, n)| (id.to_string(), *n)).collect()
}

/// The tenants `node` works: those it owns and those it is handing off.
pub async fn works(api: &ApiClient, node: &str) -> Vec<String> {
    nodes(api)
        .await
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

/// The jobs of `tenants` claimed and without an outcome (`sending`).
pub async fn sending_jobs(env: &TestEnv, tenants: &[String]) -> HashSet<String> {
    if tenants.is_empty() {
        return HashSet::new();
    }
    let sql = format!(
        "SELECT id::text FROM send_jobs WHERE status = 'sending' AND tenant_id::text IN ('{}')",
        tenants.join("', '")
    );
    env.psql(&sql).await.iter().map(|r| r.get(0)).collect()
}

/// The job a Message-ID names.
pub fn job_of(message_id: &str) -> &str {
    message_id.split('@').next().unwrap_or_default()
}

/// The jobs of the messages `pick` keeps.
pub fn jobs_received(
    messages: Vec<ReceivedMessage>,
    pick: impl Fn(&ReceivedMessage) -> bool,
) -> HashSet<String> {
    messages
        .into_iter()
        .filter(|m| pick(m))
        .filter_map(|m| m.message_id)
        .map(|id| job_of(&id).to_string())
        .collect()
}

/// The value of one counter series on a node's `/metrics` (0 when absent), e.g.
/// `penguin_fenced_writes_total{write="status"}`.
pub async fn counter(api: &ApiClient, series: &str) -> u64 {
    let answer = api.get("/metrics", None).await;
    let text = answer.body.as_str().unwrap_or_default().to_string();
    text.lines()
        .filter_map(|line| line.strip_prefix(series))
        .filter_map(|rest| rest.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}
