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
//!
//! The report is not taken on its word: lost, waiting, delivered and copied
//! jobs, and the busiest IP hour, are counted again here from the sink's raw
//! record (which tenant's IP sent to which recipient) and the jobs' states in
//! Postgres, and the report must agree with those counts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use penguin_engine::sink::ReceivedMessage;
use serde_json::Value;
use uuid::Uuid;

use crate::support::TestEnv;

/// `limits.ip_hourly_cap` of `config/faults.toml`.
const CAP: u64 = 250;
const LEADS: u64 = 300;
const TENANTS: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_harness_passes_every_kind_of_fault_on_three_nodes() {
    let env = TestEnv::start().await;
    let (report, record) = run_harness(
        &env,
        TENANTS,
        LEADS,
        "kill=2,pause,redis-flush,redis-restart,postgres-restart",
    )
    .await;
    recheck(&env, &report, &record, TENANTS * LEADS).await;

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
    // When the clock turned an hour during the run, each IP had two hours'
    // caps and the whole run may fit; otherwise something must wait.
    let hours: std::collections::HashSet<i64> = record
        .iter()
        .map(|m| m.begun_at_ms.div_euclid(3_600_000))
        .collect();
    if hours.len() == 1 {
        assert!(waiting > 0, "the caps held messages back: {report}");
    } else {
        eprintln!("the hour turned during the run: both hours' caps applied");
    }
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

/// With one tenant on three nodes, two nodes hold none of the run's work: a
/// node fault must still hit the node that holds it, or the fault stops
/// nothing and whether sending came back cannot be told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_faults_hit_a_node_holding_the_runs_tenants() {
    let env = TestEnv::start().await;
    let leads = 200;
    let (report, record) = run_harness(&env, 1, leads, "kill,pause").await;
    recheck(&env, &report, &record, leads).await;
    assert_eq!(report["failures"], serde_json::json!([]));
    assert_eq!(report["lost"], 0);
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{report}");
    for fault in faults {
        assert!(
            fault["recovery_ms"].as_u64().is_some(),
            "no message from the tenant's IP after {fault}"
        );
    }
}

/// Runs `penguin faults` on three nodes with the shipped configuration on
/// `env`'s servers, and returns its JSON report and the sink's record.
async fn run_harness(
    env: &TestEnv,
    tenants: u64,
    leads: u64,
    faults: &str,
) -> (Value, Vec<ReceivedMessage>) {
    let dir = std::env::temp_dir().join(format!(
        "penguin-e2e-faults-{}-{tenants}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let report_file = dir.join("report.json");
    let record_file = dir.join("sink.json");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/faults.toml");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_penguin"));
    command
        .arg("faults")
        .arg("--config")
        .arg(config)
        .args(["--nodes", "3", "--tenants", &tenants.to_string()])
        .args(["--leads", &leads.to_string()])
        .args(["--faults", faults, "--timeout-secs", "150"])
        .arg("--json")
        .arg(&report_file)
        .arg("--sink-record")
        .arg(&record_file)
        .kill_on_drop(true);
    // The shipped rehearsal configuration, on this test's servers.
    for (key, _) in std::env::vars() {
        if key.starts_with("PENGUIN_") {
            command.env_remove(key);
        }
    }
    // Its error (with the stalled run's state) is the tail of what it prints:
    // no backtrace after it.
    command
        .env_remove("REDIS_CLUSTER_URLS")
        .env("DATABASE_URL", &env.config.database.url)
        .env("REDIS_URL", &env.config.redis.url)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0");
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
    let record: Vec<ReceivedMessage> =
        serde_json::from_slice(&std::fs::read(&record_file).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (report, record)
}

/// Counts lost, waiting, delivered and copied jobs again from the sink's record
/// and Postgres, without the report's Message-ID matching: a message belongs to
/// the tenant whose IP sent it, and to that tenant's job for its recipient.
/// Then the report must say the same, and nothing may be lost.
async fn recheck(env: &TestEnv, report: &Value, record: &[ReceivedMessage], jobs_count: u64) {
    let tenant_of_ip: HashMap<IpAddr, Uuid> = env
        .psql("SELECT host(address), tenant_id FROM smtp_ips")
        .await
        .iter()
        .map(|r| (r.get::<_, String>(0).parse().unwrap(), r.get(1)))
        .collect();
    // (tenant, recipient) → the job's state.
    let jobs: HashMap<(Uuid, String), String> = env
        .psql(
            "SELECT j.tenant_id, l.email, j.status FROM send_jobs j
             JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id",
        )
        .await
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    assert_eq!(jobs.len() as u64, jobs_count, "one job per recipient");
    let mut received: HashMap<(Uuid, String), u64> = HashMap::new();
    let mut per_ip_hour: HashMap<(IpAddr, i64), u64> = HashMap::new();
    for message in record {
        let tenant = tenant_of_ip
            .get(&message.source_ip)
            .unwrap_or_else(|| panic!("a message from {}, no IP of the run", message.source_ip));
        *per_ip_hour
            .entry((message.source_ip, message.begun_at_ms.div_euclid(3_600_000)))
            .or_default() += 1;
        for rcpt in &message.rcpt_to {
            let key = (*tenant, rcpt.to_lowercase());
            assert!(jobs.contains_key(&key), "{rcpt} is no job of its tenant");
            *received.entry(key).or_default() += 1;
        }
    }
    let not_received = |key: &(Uuid, String)| !received.contains_key(key);
    let lost: Vec<_> = jobs
        .iter()
        .filter(|(key, status)| {
            not_received(key) && !matches!(status.as_str(), "pending" | "queued" | "deferred")
        })
        .collect();
    let waiting = jobs.keys().filter(|key| not_received(key)).count() - lost.len();
    let copies: u64 = received.values().map(|n| n - 1).sum();
    let most_per_ip_hour = per_ip_hour.values().copied().max().unwrap_or(0);
    eprintln!(
        "rechecked: {} delivered, {waiting} waiting, {} lost, {copies} copies, at most {most_per_ip_hour} per IP and hour",
        received.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} jobs never reached the sink although not waiting, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(report["lost"], 0, "the report agrees nothing was lost");
    assert_eq!(
        report["delivered"],
        received.len() as u64,
        "the report's delivered jobs are the recipients the sink got mail for"
    );
    assert_eq!(
        report["waiting"], waiting as u64,
        "the report's waiting jobs are those the sink never got, left pending"
    );
    assert_eq!(
        report["copies"], copies,
        "the report's copies are the sink's"
    );
    assert_eq!(report["most_per_ip_hour"], most_per_ip_hour);
    assert!(
        most_per_ip_hour <= CAP,
        "{most_per_ip_hour} from one IP in one hour"
    );
    let allowed = report["copies_allowed"].as_u64().unwrap();
    assert!(
        copies <= allowed,
        "{copies} copies at the sink, {allowed} transactions under way at the faults"
    );
}
