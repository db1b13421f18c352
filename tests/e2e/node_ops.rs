//! What an operator's tooling meets (issue 20): a node in a Kubernetes pod
//! (foreign `PENGUIN_*` variables, JSON logs, an access log without the
//! token), the two probes through a node's life, a second node under a live
//! node's id, and `penguin config check`.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::api::ApiClient;
use crate::support::cluster::{node_config, start_node};
use crate::support::node_process::{ChildNode, NodeProcess};
use crate::support::rig::{Rig, series};
use crate::support::{admin_token, wait_for};

/// What Kubernetes injects for a Service named `penguin` in the namespace.
const SERVICE_ENV: [(&str, &str); 4] = [
    ("PENGUIN_SERVICE_HOST", "10.96.0.12"),
    ("PENGUIN_SERVICE_PORT", "8025"),
    ("PENGUIN_PORT", "tcp://10.96.0.12:8025"),
    ("PENGUIN_PORT_8025_TCP_ADDR", "10.96.0.12"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_style_node_starts_and_logs_json_lines_without_the_token() {
    let rig = Rig::start(|_| {}).await;
    let mut env = SERVICE_ENV.to_vec();
    env.push(("PENGUIN_LOG__FORMAT", "json"));
    let node = ChildNode::start_with_env(&node_config(&rig, "node-json"), &env).await;
    let api = ApiClient::new(node.api_url());
    wait_for("node-json ready", Duration::from_secs(30), || async {
        (api.get("/health/ready", None).await.status == 200).then_some(())
    })
    .await;
    assert_eq!(api.get("/health/live", None).await.status, 200);
    let nodes = api.get("/v1/nodes", Some(admin_token())).await;
    assert_eq!(nodes.status, 200, "{:?}", nodes.body);

    let access = wait_for("the access log line", Duration::from_secs(30), || async {
        node.log_text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["target"] == "penguin_api::access")
    })
    .await;
    assert_eq!(access["fields"]["route"], "/v1/nodes", "{access}");
    assert_eq!(access["fields"]["status"], 200, "{access}");
    assert_eq!(access["level"], "INFO", "{access}");

    let text = node.log_text();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(
            parsed.is_ok_and(|v| v.is_object()),
            "not one JSON object: {line}"
        );
    }
    assert!(!text.contains(admin_token()), "the bearer token was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_start_and_drain_liveness_does_not() {
    let rig = Rig::start(|config| {
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = 2_000;
    })
    .await;
    let node = start_node(&rig, "node-b").await;
    let api = ApiClient::new(&node.api_url());
    let ready = wait_for("node-b ready", Duration::from_secs(30), || async {
        let answer = api.get("/health/ready", None).await;
        (answer.status == 200).then_some(answer)
    })
    .await;
    assert_eq!(ready.body, json!({"status": "ok"}));
    assert_eq!(node_ready_gauge(&api).await, Some(1.0));

    let drain = api
        .post("/v1/nodes/node-b/drain", Some(admin_token()), &json!({}))
        .await;
    assert_eq!(drain.status, 202, "{:?}", drain.body);
    let draining = wait_for("node-b not ready", Duration::from_secs(30), || async {
        let answer = api.get("/health/ready", None).await;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert_eq!(draining.body, json!({"status": "draining"}));
    assert_eq!(node_ready_gauge(&api).await, Some(0.0));
    // Draining is alive: an orchestrator must not restart it.
    assert_eq!(api.get("/health/live", None).await.status, 200);
    // The rig's own node never drained.
    let rig_api = ApiClient::new(&rig.node().api_url());
    assert_eq!(rig_api.get("/health/ready", None).await.status, 200);
    node.shutdown().await;
}

/// `penguin_node_ready` on the node's `/metrics`.
async fn node_ready_gauge(api: &ApiClient) -> Option<f64> {
    let page = api.get("/metrics", None).await;
    let text = page.body.as_str().unwrap_or_default().to_string();
    series(&text, "penguin_node_ready")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_under_a_live_nodes_id_is_refused() {
    let rig = Rig::start(|_| {}).await;
    let id = rig.config().node.id.clone();
    let api = ApiClient::new(&rig.node().api_url());
    // Live: its first membership record is out.
    wait_for("the first node ready", Duration::from_secs(30), || async {
        (api.get("/health/ready", None).await.status == 200).then_some(())
    })
    .await;
    let said = NodeProcess::refused(rig.config()).await;
    assert!(
        said.contains("node.id") && said.contains(&id) && said.contains("another live node"),
        "{said}"
    );
    // The first node is untouched.
    assert_eq!(api.get("/health/ready", None).await.status, 200);
}

fn config_check(file: &std::path::Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_penguin"))
        .args(["config", "check", "--config"])
        .arg(file)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_URLS")
        .output()
        .expect("penguin config check runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn config_check_masks_secrets_and_lists_every_problem() {
    let dir = tempdir();
    let token = penguin_config::random_secret();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[api]\nadmin_token = \"{token}\"\n[tracking]\nsecret = \"{token}x\"\n\
             [database]\nurl = \"postgres://penguin:hunter2@db:5432/penguin?sslmode=verify-full\"\n"
        ),
    )
    .unwrap();
    let (ok, text) = config_check(&good);
    assert!(ok, "{text}");
    assert!(text.contains("no problems found"), "{text}");
    assert!(text.contains("<masked>"), "{text}");
    assert!(
        !text.contains(&token) && !text.contains("hunter2"),
        "a secret shown:\n{text}"
    );

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[queue]\nwindow = 0\n[redis]\nurl = \"http://cache\"\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let (ok, text) = config_check(&bad);
    assert!(!ok, "a bad configuration must fail the check:\n{text}");
    for key in [
        "queue.window",
        "redis.url",
        "api.admin_token",
        "tracking.secret",
    ] {
        assert!(text.contains(key), "{key} not named:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    crate::support::process::fresh_dir(&std::env::temp_dir(), "penguin-e2e-config-check")
}
