//! No published secrets (issue 12): `penguin serve` refuses to start, with an
//! error naming the key, when `api.admin_token` or `tracking.secret` is missing,
//! is a value the README or an example config ever printed, or is shorter than
//! 32 characters — from the file or from a `PENGUIN_*` override alike — and
//! when `tracking.base_url` is plain `http://` to a host that is not loopback.
//! `penguin migrate` needs neither secret. Each case runs the real binary; a
//! refused node exits before it opens any connection.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::TestEnv;
use crate::support::process::{fresh_dir, scratch_root};

const GOOD_ADMIN: &str = "0123456789abcdef0123456789abcdef-admin";
const GOOD_SECRET: &str = "fedcba9876543210fedcba9876543210-links";

/// What a case is, its config file, its environment overrides, and the key the
/// refusal must name.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str);

/// Runs `penguin <command> --config <file with toml>` with `env` added, and
/// returns its output; a process still running after 60 s is killed and fails
/// the test (a node that did not refuse would sit waiting for its database).
async fn run(command: &str, toml: &str, env: &[(&str, &str)]) -> Output {
    let dir = fresh_dir(&scratch_root(), "penguin-e2e-secrets");
    let file = dir.join("node.toml");
    std::fs::write(&file, toml).expect("write the config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_penguin"));
    child
        .arg(command)
        .arg("--config")
        .arg(&file)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_URLS")
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        child.spawn().expect("spawn penguin").wait_with_output(),
    )
    .await
    .unwrap_or_else(|_| panic!("penguin {command} did not exit within 60 s for:\n{toml}"))
    .expect("penguin's output");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
    output
}

/// A config whose database and Redis are unreachable: a node that got past
/// validation could only hang, never start.
fn config(admin: Option<&str>, secret: Option<&str>, base_url: Option<&str>) -> String {
    let mut text = String::from(
        "[database]\nurl = \"postgres://nobody@127.0.0.1:1/none\"\n\
         [redis]\nurl = \"redis://127.0.0.1:1\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    if let Some(admin) = admin {
        text.push_str(&format!("admin_token = \"{admin}\"\n"));
    }
    text.push_str("[tracking]\n");
    if let Some(secret) = secret {
        text.push_str(&format!("secret = \"{secret}\"\n"));
    }
    if let Some(base_url) = base_url {
        text.push_str(&format!("base_url = \"{base_url}\"\n"));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_missing_published_and_short_secrets_naming_the_key() {
    let short = "0123456789abcdef0123456789abcde"; // 31 characters
    let cases: Vec<Case> = vec![
        (
            "no admin token",
            config(None, Some(GOOD_SECRET), None),
            vec![],
            "api.admin_token",
        ),
        (
            "the README's admin token",
            config(Some("change-me-admin-token"), Some(GOOD_SECRET), None),
            vec![],
            "api.admin_token",
        ),
        (
            "a 31-character admin token",
            config(Some(short), Some(GOOD_SECRET), None),
            vec![],
            "api.admin_token",
        ),
        (
            "no tracking secret",
            config(Some(GOOD_ADMIN), None, None),
            vec![],
            "tracking.secret",
        ),
        (
            "the README's tracking secret",
            config(Some(GOOD_ADMIN), Some("change-me-tracking-secret"), None),
            vec![],
            "tracking.secret",
        ),
        (
            "a published admin token from the environment",
            config(Some(GOOD_ADMIN), Some(GOOD_SECRET), None),
            vec![("PENGUIN_API__ADMIN_TOKEN", "change-me-admin-token")],
            "api.admin_token",
        ),
        (
            "plain http to a public host",
            config(
                Some(GOOD_ADMIN),
                Some(GOOD_SECRET),
                Some("http://links.example.com"),
            ),
            vec![],
            "tracking.base_url",
        ),
    ];
    for (what, toml, env, key) in cases {
        let output = run("serve", &toml, &env).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: the node started");
        assert!(
            stderr.contains(key),
            "{what}: the error must name {key}; stderr:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_needs_no_secrets() {
    let env = TestEnv::start().await;
    let toml = format!(
        "[database]\nurl = \"{}\"\n",
        env.config
            .database
            .url
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    );
    let output = run("migrate", &toml, &[]).await;
    assert!(
        output.status.success(),
        "migrate without secrets: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("up to date"));
}
