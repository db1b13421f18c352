//! Cost follows work, not tenants (issue 15): with hundreds of idle tenants a
//! node's heartbeats cost a few Redis commands, no Tenant actor runs and the
//! Feeder does not poll them; a tenant whose campaign only waits (a retry far in
//! the future) stops its actor, and wakes when leads are imported into its
//! running campaign — by the notification, not the safety net, which is set to
//! ten minutes here.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands as _;
use serde_json::json;

use crate::support::api::{ApiClient, leads};
use crate::support::rig::Rig;
use crate::support::sites::rcpt_rule;
use crate::support::{poll_until, wait_for};

const IDLE_TENANTS: usize = 300;
const HEARTBEAT_MS: u64 = 200;
const HEARTBEATS: i64 = 10;

/// Redis' calls per command since it started (`INFO commandstats`).
async fn redis_commands(rig: &Rig) -> BTreeMap<String, u64> {
    let mut redis = rig.env.redis.get().await.expect("redis connection");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// When node-a last wrote its membership record (unix ms).
async fn last_heartbeat(rig: &Rig) -> i64 {
    let mut redis = rig.env.redis.get().await.expect("redis connection");
    let record: Option<String> = redis
        .get(penguin_engine::membership::node_key("node-a"))
        .await
        .expect("GET");
    let record: serde_json::Value =
        serde_json::from_str(&record.expect("node-a's record")).expect("json");
    record["heartbeat_at_ms"].as_i64().expect("heartbeat_at_ms")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_tenants_cost_nothing_and_one_wakes_on_import() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = HEARTBEAT_MS;
        config.queue.tenant_idle_ms = 300;
        config.queue.feed_idle_ms = 600_000;
    })
    .await;
    // Recipients at defer.test are deferred (451) and retried minutes later:
    // their campaign stays running with nothing due.
    rig.sink
        .set_rules(vec![rcpt_rule("defer.test", "451 4.7.1 try later", None)])
        .expect("sink rules");
    let api = ApiClient::new(&rig.node().api_url());
    for n in 0..IDLE_TENANTS {
        let (tenant, _) = api.create_tenant(&format!("idle-{n}")).await;
        if n < 50 {
            api.add_ip(tenant, &format!("127.0.2.{}", n + 2)).await;
        }
    }
    let (sleeper, token) = api.create_tenant("sleeper").await;
    let ip = api.add_ip(sleeper, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    let mut first = leads(20);
    first
        .as_array_mut()
        .expect("leads")
        .push(json!({"email": "later@defer.test", "fields": {"first_name": "Later"}}));
    api.add_leads(&token, campaign, first).await.expect(200);
    api.action_ok(&token, campaign, "start").await;
    rig.wait_for_sink(20, Duration::from_secs(30)).await;
    rig.wait_for_jobs("deferred", 1, Duration::from_secs(30))
        .await;
    let engine = rig.node().engine();
    wait_for(
        "the sleeper's Tenant actor to stop",
        Duration::from_secs(30),
        || async { engine.active_tenants().is_empty().then_some(()) },
    )
    .await;

    // Creating the tenants' IPs woke each tenant once (an IP change may be a
    // resume): wait until the Feeder has been still for three heartbeats.
    let still = std::sync::Mutex::new((engine.wakeups().0, last_heartbeat(&rig).await));
    wait_for(
        "the feeder still for three heartbeats",
        Duration::from_secs(30),
        || async {
            let (rounds, beat) = (engine.wakeups().0, last_heartbeat(&rig).await);
            let mut still = still.lock().expect("still");
            if rounds != still.0 {
                *still = (rounds, beat);
                return None;
            }
            (beat - still.1 >= 3 * HEARTBEAT_MS as i64).then_some(())
        },
    )
    .await;

    // Ten heartbeats with 301 tenants and 51 IPs owned, nothing to send.
    let (rounds, pops) = engine.wakeups();
    let commands = redis_commands(&rig).await;
    let from = last_heartbeat(&rig).await;
    let polls = std::sync::atomic::AtomicU64::new(0);
    let beats = poll_until(Duration::from_secs(30), || async {
        polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let beats = (last_heartbeat(&rig).await - from) / HEARTBEAT_MS as i64;
        (beats >= HEARTBEATS).then_some(beats).ok_or(beats)
    })
    .await
    .expect("ten heartbeats");
    let after = redis_commands(&rig).await;
    let used: BTreeMap<&String, u64> = after
        .iter()
        .map(|(name, calls)| (name, calls - commands.get(name).copied().unwrap_or(0)))
        .filter(|(_, calls)| *calls > 0)
        .collect();
    // This test's own reads: per poll a GET, with the PING and UNWATCH of a
    // pooled connection's check-out; and the first INFO.
    let ours = polls.load(std::sync::atomic::Ordering::Relaxed) * 3 + 3;
    let total: u64 = used.values().sum();
    let per_heartbeat = (total - ours.min(total)) / beats as u64;
    assert!(
        per_heartbeat <= 30,
        "{per_heartbeat} redis commands per heartbeat with {IDLE_TENANTS} idle tenants: {used:?}"
    );
    let (rounds_after, pops_after) = engine.wakeups();
    assert_eq!(pops_after, pops, "an idle tenant popped its lists");
    assert!(
        rounds_after - rounds <= 1,
        "the feeder polled {} times for idle tenants",
        rounds_after - rounds
    );
    assert!(engine.active_tenants().is_empty());

    // Leads imported into the running campaign wake the sleeper at once.
    api.add_leads(&token, campaign, leads_from(100, 10))
        .await
        .expect(200);
    rig.wait_for_sink(30, Duration::from_secs(20)).await;
    rig.shutdown().await;
}

/// `n` leads numbered from `start`.
fn leads_from(start: usize, n: usize) -> serde_json::Value {
    serde_json::Value::Array(
        (start..start + n)
            .map(|i| json!({ "email": format!("lead{i}@example.com"), "fields": { "first_name": format!("Lead{i}") } }))
            .collect(),
    )
}
