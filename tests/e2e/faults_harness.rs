//! `penguin faults`, the fault harness, run as an operator runs it (with the
//! shipped `config/faults.toml`): three `penguin serve` processes on this
//! test's Postgres and Redis, six campaigns
//! whose IPs each hit their hourly cap, and every kind of fault — two SIGKILLs
//! with restarts, a SIGSTOP for 1.5 × the lease TTL, a Redis FLUSHALL, a Redis
//! restart (every key and client connection gone), and a Postgres restart (an
//! outage of the database: every session cut, connections refused for 3 s).
//! The harness must pass and its JSON report must show: nothing lost, no copy
//! beyond the transactions under way on the nodes hit, no message from
//! nowhere, no IP over its hourly cap, and the campaigns recovering from
//! each fault.

use std::time::Duration;

use serde_json::Value;

use crate::support::TestEnv;

/// `limits.ip_hourly_cap` of `config/faults.toml`.
const CAP: u64 = 250;
const LEADS: u64 = 300;
const TENANTS: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_harness_passes_every_kind_of_fault_on_three_nodes() {
    let env = TestEnv::start().await;
    let dir = std::env::temp_dir().join(format!("penguin-e2e-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report_file = dir.join("report.json");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/faults.toml");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_penguin"));
    command
        .arg("faults")
        .arg("--config")
        .arg(config)
        .args(["--nodes", "3", "--tenants", &TENANTS.to_string()])
        .args(["--leads", &LEADS.to_string()])
        .args([
            "--faults",
            "kill=2,pause,redis-flush,redis-restart,postgres-restart",
            "--timeout-secs",
            "150",
        ])
        .arg("--json")
        .arg(&report_file)
        .kill_on_drop(true);
    // The shipped rehearsal configuration, on this test's servers.
    for (key, _) in std::env::vars() {
        if key.starts_with("PENGUIN_") {
            command.env_remove(key);
        }
    }
    command
        .env("DATABASE_URL", &env.config.database.url)
        .env("REDIS_URL", &env.config.redis.url);
    let output = tokio::time::timeout(Duration::from_secs(240), command.output())
        .await
        .expect("the harness finished in time")
        .expect("the harness ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "the harness failed ({}):\n{stdout}\n{}",
        output.status,
        &stderr[stderr.len().saturating_sub(6_000)..]
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(report["failures"], serde_json::json!([]));
    assert_eq!(report["jobs"], TENANTS * LEADS);
    assert_eq!(report["lost"], 0);
    assert_eq!(report["unexpected"], 0);
    assert_eq!(report["cap_overshoot"], 0);
    let copies = report["copies"].as_u64().unwrap();
    assert!(copies <= report["copies_allowed"].as_u64().unwrap());
    // The caps bound: every IP sent its hour's cap (unless the hour turned
    // during the run), and the rest waits for the next hour.
    let most = report["most_per_ip_hour"].as_u64().unwrap();
    assert!(most <= CAP, "{most} messages from one IP in one hour");
    let delivered = report["delivered"].as_u64().unwrap();
    let waiting = report["waiting"].as_u64().unwrap();
    assert_eq!(delivered + waiting, TENANTS * LEADS, "{report}");
    assert!(waiting > 0, "the caps held messages back: {report}");
    // Every fault was injected, and sending came back after each one that left
    // something to send.
    let faults = report["faults"].as_array().unwrap();
    let kinds: Vec<&str> = faults.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "kill",
            "pause",
            "redis-flush",
            "redis-restart",
            "postgres-restart",
            "kill"
        ]
    );
    for fault in &faults[..5] {
        assert!(
            fault["recovery_ms"].as_u64().is_some(),
            "no message after {fault}"
        );
    }
}
