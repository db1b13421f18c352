//! Cancel in flight (issue 17, item 6), against an MX that holds every message
//! in DATA for [`STALL_MS`] before answering. A campaign is cancelled while
//! some of its messages are in DATA:
//!
//! - to `ok.test` the MX answers 250 after the stall: each message in DATA at
//!   the cancel left, so its job is `sent`; every other job is `cancelled`;
//! - to `soft.test` it answers 451: the jobs in DATA end `cancelled` (with the
//!   451 as their last reply), never `deferred` for a retry that would not come.
//!
//! Either way no job is left `pending`, `queued`, `sending` or `deferred` (jobs
//! the IP had claimed but not yet sent go `cancelled`, not back to the
//! backlog), the cancel answers only once the transactions under way ended,
//! and no SMTP transaction begins after it answered.

use std::collections::HashMap;
use std::time::Duration;

use penguin_engine::sink::{Rule, RuleStage};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::ApiClient;
use crate::support::rig::Rig;
use crate::support::wait_for;

/// How long the MX keeps each message in DATA.
const STALL_MS: u64 = 3_000;
const LEADS: usize = 20;

fn stall(pattern: &str, reply: Option<&str>) -> Rule {
    Rule {
        recipient_pattern: pattern.into(),
        stage: RuleStage::DataEnd,
        reply: reply.map(str::to_string),
        times: None,
        delay_ms: Some(STALL_MS),
        drop_connection: false,
    }
}

/// The campaign's jobs per state.
async fn states(rig: &Rig, campaign: Uuid) -> HashMap<String, i64> {
    rig.env
        .psql(&format!(
            "SELECT status, count(*) FROM send_jobs WHERE campaign_id = '{campaign}' GROUP BY status"
        ))
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Starts a campaign of [`LEADS`] leads at `domain`, cancels it while a message
/// is in DATA, and returns it with the SMTP transactions it began.
async fn cancel_mid_data(
    rig: &Rig,
    api: &ApiClient,
    token: &str,
    ip: Uuid,
    domain: &str,
) -> (Uuid, u64) {
    let campaign = api.create_campaign(token, &[ip]).await;
    let leads: Vec<Value> = (0..LEADS)
        .map(|i| json!({ "email": format!("lead{i}@{domain}"), "fields": { "first_name": "Pat" } }))
        .collect();
    api.add_leads(token, campaign, Value::Array(leads))
        .await
        .expect(200);
    let before = rig.sink.stats().transactions_begun;
    api.action_ok(token, campaign, "start").await;
    wait_for("a message in DATA", Duration::from_secs(30), || async {
        (rig.sink.stats().transactions_begun > before).then_some(())
    })
    .await;
    let answer = api.action(token, campaign, "cancel").await;
    answer.expect(200);
    assert_eq!(answer.body["status"], "cancelled");
    assert_eq!(
        answer.body.get("in_flight"),
        None,
        "the cancel waited for the transactions under way"
    );
    let begun = rig.sink.stats().transactions_begun - before;
    let left = states(rig, campaign).await;
    for state in ["pending", "queued", "sending", "deferred"] {
        assert_eq!(
            left.get(state),
            None,
            "{domain}: jobs left {state}: {left:?}"
        );
    }
    (campaign, begun)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_lets_smtp_under_way_finish_and_leaves_nothing_to_send() {
    let rig = Rig::start(|c| {
        c.delivery.connections_per_ip = 2;
        c.delivery.ip_backlog = 4;
    })
    .await;
    rig.sink
        .set_rules(vec![
            stall("*@soft.test", Some("451 4.3.0 try again later")),
            stall("*@ok.test", None),
        ])
        .unwrap();
    let api = ApiClient::new(&rig.node().api_url());
    let (tenant, token) = api.create_tenant("cancel").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;

    // 250 after the stall: what was in DATA is sent, the rest cancelled.
    let (campaign, begun) = cancel_mid_data(&rig, &api, &token, ip, "ok.test").await;
    let ends = states(&rig, campaign).await;
    let sent = ends.get("sent").copied().unwrap_or(0);
    assert!(sent >= 1, "a message was in DATA at the cancel: {ends:?}");
    assert_eq!(sent as u64, begun, "each transaction under way ended sent");
    assert_eq!(rig.sink.stats().messages_accepted, begun);
    assert_eq!(
        ends.get("cancelled"),
        Some(&(LEADS as i64 - sent)),
        "{ends:?}"
    );

    // 451 after the stall: what was in DATA ends cancelled with its reply.
    let (campaign, begun) = cancel_mid_data(&rig, &api, &token, ip, "soft.test").await;
    let ends = states(&rig, campaign).await;
    assert_eq!(ends.get("cancelled"), Some(&(LEADS as i64)), "{ends:?}");
    let replied = rig
        .env
        .psql(&format!(
            "SELECT count(*) FROM send_jobs
             WHERE campaign_id = '{campaign}' AND last_reply LIKE '451%'"
        ))
        .await[0]
        .get::<_, i64>(0);
    assert!(begun >= 1);
    assert_eq!(
        replied as u64, begun,
        "each transaction under way got its 451"
    );

    // Nothing begins after the cancels answered, however long the node runs.
    let begun = rig.sink.stats().transactions_begun;
    rig.wait_until_quiet().await;
    assert_eq!(rig.sink.stats().transactions_begun, begun);
    assert_eq!(rig.sink.stats().duplicate_messages, 0);
    rig.shutdown().await;
}
