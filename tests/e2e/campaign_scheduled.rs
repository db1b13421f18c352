//! Scheduled starts (issue 17 item 3), with the engine running on a clock the
//! test moves: `POST /v1/campaigns/{id}/start {"start_at"}` in the future makes
//! the campaign `scheduled`; nothing of it reaches the sink before `start_at`;
//! when the engine's clock reaches it the campaign runs and sends by itself,
//! with no API call — and with the Feeder's safety-net scan set to an hour, so
//! only the wake-up planned for `start_at` can start it. Pause and cancel hold
//! a scheduled campaign back; resume makes it `scheduled` again (and it starts
//! when its time has come); an Idempotency-Key replay answers `scheduled`.
//! With two nodes, each starts its own tenant's scheduled campaign.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::support::api::Answer;
use crate::support::limits::{IpPlan, LimitsRig};
use crate::support::quiet::wait_until_quiet;
use crate::support::wait_for;

/// The Feeder's safety-net scan, far longer than any wait here: a scheduled
/// start must come from the wake-up planned for its `start_at`.
const NO_SAFETY_NET_MS: u64 = 3_600_000;

async fn rig() -> (LimitsRig, Uuid) {
    let rig = LimitsRig::start(|c| c.queue.feed_idle_ms = NO_SAFETY_NET_MS).await;
    let ip = rig
        .add_ip(&IpPlan {
            address: "127.0.0.2",
            schedule: None,
            timezone: "UTC",
            active_hours: (0, 24),
        })
        .await;
    (rig, ip)
}

/// A draft campaign on `ip` with `n` leads `<i>@<domain>`.
async fn campaign(rig: &LimitsRig, ip: Uuid, domain: &str, n: usize) -> Uuid {
    let id = rig.api.create_campaign(&rig.token, &[ip]).await;
    let leads: Vec<Value> = (0..n)
        .map(|i| json!({ "email": format!("lead{i}@{domain}"), "fields": { "first_name": "Pat" } }))
        .collect();
    rig.api
        .add_leads(&rig.token, id, Value::Array(leads))
        .await
        .expect(200);
    id
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("format")
}

/// `POST …/start` with `body`, and an `Idempotency-Key` when given.
async fn start(rig: &LimitsRig, id: Uuid, body: &Value, key: Option<&str>) -> Answer {
    let mut headers = vec![
        (
            "authorization",
            format!("Bearer {}", rig.token).into_bytes(),
        ),
        ("content-type", b"application/json".to_vec()),
    ];
    if let Some(key) = key {
        headers.push(("idempotency-key", key.as_bytes().to_vec()));
    }
    let path = format!("/v1/campaigns/{id}/start");
    rig.api
        .raw_headers(
            Method::POST,
            &path,
            &headers,
            Some(body.to_string().into_bytes()),
        )
        .await
}

/// Messages the sink accepted per recipient domain.
fn received(rig: &LimitsRig) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for message in rig.rig.sink.messages() {
        for rcpt in &message.rcpt_to {
            let domain = rcpt.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            *counts.entry(domain.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Jobs of `campaign` per state.
async fn jobs(rig: &LimitsRig, campaign: Uuid) -> BTreeMap<String, i64> {
    rig.rig
        .env
        .psql(&format!(
            "SELECT status, count(*) FROM send_jobs WHERE campaign_id = '{campaign}' GROUP BY status"
        ))
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn status(rig: &LimitsRig, campaign: Uuid) -> String {
    let answer = rig.api.campaign(&rig.token, campaign).await;
    answer.expect(200)["status"]
        .as_str()
        .expect("status")
        .to_string()
}

/// Waits until the sink's counts and every job state stay unchanged over a
/// quiet period longer than the node's timers; returns the sink's counts.
async fn quiet(rig: &LimitsRig) -> BTreeMap<String, u64> {
    let span = crate::support::quiet::quiet_span(rig.rig.config());
    let (received, _) = wait_until_quiet(
        "the sink and the jobs",
        span,
        Duration::from_secs(30),
        || async {
            let counts: BTreeMap<String, i64> = rig.rig.job_counts().await.into_iter().collect();
            Some((received(rig), counts))
        },
    )
    .await;
    received
}

/// Waits until the sink holds exactly `n` messages for `domain`.
async fn wait_received(rig: &LimitsRig, domain: &str, n: u64) {
    wait_for(
        &format!("{n} messages to {domain}"),
        Duration::from_secs(30),
        || async {
            let got = received(rig).get(domain).copied().unwrap_or(0);
            assert!(got <= n, "{domain}: {got} messages, more than {n}");
            (got == n).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_campaign_sends_nothing_early_and_starts_by_itself_at_start_at() {
    let (rig, ip) = rig().await;
    let id = campaign(&rig, ip, "later.test", 6).await;
    let at = rig.now() + Duration::from_secs(3600);

    let answer = start(&rig, id, &json!({ "start_at": rfc3339(at) }), None).await;
    assert_eq!(answer.expect(200)["status"], json!("scheduled"));
    let shown = rig.api.campaign(&rig.token, id).await;
    let shown = shown.expect(200);
    assert_eq!(shown["status"], json!("scheduled"));
    assert_eq!(shown["start_at"], json!(rfc3339(at)));
    assert_eq!(shown["started_at"], Value::Null);
    assert_eq!(shown["counts"]["pending"], json!(6), "jobs exist, waiting");

    // A minute before start_at: nothing moves.
    rig.set_clock(at - Duration::from_secs(60));
    assert!(quiet(&rig).await.is_empty(), "nothing sent before start_at");
    assert_eq!(
        jobs(&rig, id).await,
        BTreeMap::from([("pending".into(), 6)])
    );
    assert_eq!(status(&rig, id).await, "scheduled");

    // start_at comes on the engine's clock: it starts with no API call.
    rig.set_clock(at);
    wait_received(&rig, "later.test", 6).await;
    assert_eq!(quiet(&rig).await.get("later.test"), Some(&6));
    assert_eq!(jobs(&rig, id).await, BTreeMap::from([("sent".into(), 6)]));
    let shown = rig.api.campaign(&rig.token, id).await;
    let shown = shown.expect(200);
    assert!(
        ["running", "completed"].contains(&shown["status"].as_str().unwrap()),
        "{shown}"
    );
    assert_eq!(
        shown["started_at"],
        json!(rfc3339(at)),
        "started on the engine's clock"
    );
    rig.rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_cancel_and_replay_of_a_scheduled_campaign() {
    let (rig, ip) = rig().await;
    let at = rig.now() + Duration::from_secs(3600);
    let schedule = json!({ "start_at": rfc3339(at) });
    let paused = campaign(&rig, ip, "paused.test", 3).await;
    let cancelled = campaign(&rig, ip, "cancelled.test", 3).await;
    let control = campaign(&rig, ip, "control.test", 3).await;

    // Idempotency-Key: the replay answers what the first start gave.
    let first = start(&rig, paused, &schedule, Some("sched-1")).await;
    assert_eq!(first.expect(200)["status"], json!("scheduled"));
    let replay = start(&rig, paused, &json!({}), Some("sched-1")).await;
    assert_eq!(replay.expect(200)["status"], json!("scheduled"));
    assert_eq!(replay.body["id"], json!(paused.to_string()));
    // The same schedule again without a key: unchanged.
    let again = start(&rig, paused, &schedule, None).await;
    assert_eq!(again.expect(200)["status"], json!("scheduled"));

    assert_eq!(
        rig.api.action_ok(&rig.token, paused, "pause").await,
        "paused"
    );
    assert_eq!(
        rig.api.action_ok(&rig.token, paused, "resume").await,
        "scheduled"
    );
    assert_eq!(
        rig.api.action_ok(&rig.token, paused, "pause").await,
        "paused"
    );
    let replay = start(&rig, paused, &json!({}), Some("sched-1")).await;
    assert_eq!(
        replay.expect(200)["status"],
        json!("scheduled"),
        "even after a pause"
    );
    let restart = start(&rig, paused, &json!({}), Some("another")).await;
    restart.assert_error(409, "conflict");

    start(&rig, cancelled, &schedule, None).await.expect(200);
    assert_eq!(
        rig.api.action_ok(&rig.token, cancelled, "cancel").await,
        "cancelled"
    );
    assert_eq!(
        jobs(&rig, cancelled).await,
        BTreeMap::from([("cancelled".into(), 3)])
    );
    start(&rig, control, &schedule, None).await.expect(200);

    // start_at comes: only the control campaign sends.
    rig.set_clock(at + Duration::from_secs(1));
    wait_received(&rig, "control.test", 3).await;
    let sent = quiet(&rig).await;
    assert_eq!(sent, BTreeMap::from([("control.test".into(), 3)]));
    assert_eq!(status(&rig, paused).await, "paused");
    assert_eq!(
        jobs(&rig, paused).await,
        BTreeMap::from([("pending".into(), 3)])
    );
    assert_eq!(status(&rig, cancelled).await, "cancelled");

    // Resumed while its start_at is still ahead of the API's time, it is
    // `scheduled` again; the engine's clock is past it, so it starts at once.
    assert_eq!(
        rig.api.action_ok(&rig.token, paused, "resume").await,
        "scheduled"
    );
    wait_received(&rig, "paused.test", 3).await;
    let sent = quiet(&rig).await;
    assert_eq!(sent.get("paused.test"), Some(&3));
    assert_eq!(sent.get("cancelled.test"), None);
    rig.rig.shutdown().await;
}

/// Two nodes on one clock, one tenant each: each tenant's scheduled campaign
/// is started by the node owning its partition (the other holds no fence for
/// it) at `start_at`, with no safety-net scan, and nothing is sent before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_node_starts_the_scheduled_campaigns_of_its_own_tenants() {
    use std::sync::Arc;

    use penguin::node::{Node, NodeOptions};

    use crate::support::api::ApiClient;
    use crate::support::cluster::{node_config, shares, shares_of};
    use crate::support::rig::Rig;

    let (rig, clock) = Rig::start_with_clock(|c| {
        c.node.id = "node-a".into();
        c.node.heartbeat_ms = 200;
        c.queue.feed_idle_ms = NO_SAFETY_NET_MS;
    })
    .await;
    let api = ApiClient::new(&rig.node().api_url());
    let scenario = rig
        .scenario_on(
            vec![vec!["127.0.0.2"], vec!["127.0.0.3"]],
            4,
            &["node-a", "node-b"],
            &["node-a", "node-b"],
        )
        .await;
    let options = NodeOptions {
        clock: Arc::new(clock.clone()),
        ..NodeOptions::standalone()
    };
    let node_b = Node::start(Arc::new(node_config(&rig, "node-b")), options)
        .await
        .expect("node-b starts");
    wait_for(
        "one tenant on each node",
        Duration::from_secs(30),
        || async {
            (shares(&api).await == shares_of(&[("node-a", 1), ("node-b", 1)])).then_some(())
        },
    )
    .await;

    use penguin_engine::clock::Clock;
    let at = clock.now() + Duration::from_secs(3600);
    let span = crate::support::quiet::quiet_span(rig.config());
    // One schedule at a time (node-a's tenant, then node-b's), each seen
    // settle: only the owner's own wake-up can plan node-b's start.
    for tenant in &scenario.tenants {
        let answer = api
            .post(
                &format!("/v1/campaigns/{}/start", tenant.campaign),
                Some(&tenant.token),
                &json!({ "start_at": rfc3339(at) }),
            )
            .await;
        assert_eq!(answer.expect(200)["status"], json!("scheduled"));
        let early = wait_until_quiet("nothing early", span, Duration::from_secs(30), || async {
            Some(rig.sink.stats().messages_accepted)
        })
        .await;
        assert_eq!(early, 0, "nothing sent before start_at");
    }

    clock.set(at);
    rig.wait_for_jobs("sent", 8, Duration::from_secs(30)).await;
    assert_eq!(rig.check_delivered(&scenario).await, 0, "no message twice");
    node_b.shutdown().await;
    rig.shutdown().await;
}
