//! Shaping actions are explainable, durable and relative (issue 14, items 3–4),
//! on the engine's clock moved by the test:
//!
//! - a Yahoo `[TSS04]` 421 suspends the IP's unit: the action is a row of
//!   `ip_shaping_actions` naming the rule, the unit and the provider, from the
//!   attempt until the rule's duration later; `GET /v1/ips/{id}` shows it; after
//!   a node restart the new Ip actor holds the suspension (nothing of that IP
//!   reaches the sink while another IP delivers everything), and the
//!   suspension lifts when the clock reaches its end; the same when the tenant
//!   is handed off to another node (the first one drained): the taking node's
//!   Ip actor holds the suspension from Postgres;
//! - a slow-down of an uncapped unit multiplies the rate it was observed
//!   sending at over the last five minutes (not a nominal 60/h), and the API
//!   reports that effective hourly rate; a second slow-down while it holds
//!   compounds, and its row keeps its start and ends at the later end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use penguin::node::{Node, NodeOptions};

use penguin_config::{Config, ReplyAction, ReplyRule};
use penguin_engine::sink::{Rule, RuleStage};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::support::api::ApiClient;
use crate::support::cluster::{node_config, shares, shares_of};
use crate::support::limits::{IpPlan, LimitsRig};
use crate::support::{admin_token, wait_for};

/// The unit every recipient here belongs to: all are routed (`[[delivery.routes]]`)
/// to the sink's host, so under the `default` provider their unit is that route
/// (`engine/src/site.rs`).
const UNIT: &str = "route:127.0.0.1";

const TSS04: &str =
    "421 4.7.0 [TSS04] Messages from 127.0.0.2 temporarily deferred due to unexpected volume";

fn rcpt_rule(pattern: &str, reply: &str) -> Rule {
    Rule {
        recipient_pattern: pattern.into(),
        stage: RuleStage::Rcpt,
        reply: Some(reply.into()),
        times: Some(1),
        delay_ms: None,
        drop_connection: false,
    }
}

fn warm_ip(address: &str) -> IpPlan<'_> {
    IpPlan {
        address,
        schedule: None,
        timezone: "UTC",
        active_hours: (0, 24),
    }
}

fn emails(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}{i}@site{i}.test"))
        .collect()
}

/// One row of `ip_shaping_actions`.
#[derive(Debug)]
struct Row {
    key: String,
    provider: String,
    action: String,
    rule: String,
    factor: Option<f64>,
    effective_per_hour: i32,
    reason: String,
    started_at: OffsetDateTime,
    until: OffsetDateTime,
}

async fn rows(rig: &LimitsRig, ip: Uuid) -> Vec<Row> {
    let found = rig
        .rig
        .env
        .psql(&format!(
            "SELECT key, provider, action, rule, factor, effective_per_hour, reason, started_at, until
             FROM ip_shaping_actions WHERE ip_id = '{ip}' ORDER BY key, action"
        ))
        .await;
    found
        .iter()
        .map(|r| Row {
            key: r.get(0),
            provider: r.get(1),
            action: r.get(2),
            rule: r.get(3),
            factor: r.get(4),
            effective_per_hour: r.get(5),
            reason: r.get(6),
            started_at: r.get(7),
            until: r.get(8),
        })
        .collect()
}

/// Waits for the IP's one recorded action.
async fn the_action(rig: &LimitsRig, ip: Uuid) -> Row {
    wait_for(
        "the shaping action to be recorded",
        Duration::from_secs(30),
        || async {
            let mut found = rows(rig, ip).await;
            assert!(found.len() <= 1, "one action expected: {found:?}");
            found.pop()
        },
    )
    .await
}

fn rule_secs(config: &Config, name: &str) -> u64 {
    config
        .delivery
        .reply_rules
        .iter()
        .find(|rule| rule.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no reply rule {name}"))
        .duration_secs
}

/// The IP's `shaping` list as `GET /v1/ips/{id}` shows it.
async fn shown(rig: &LimitsRig, ip: Uuid) -> Vec<Value> {
    let body = rig.ip(ip).await;
    body["shaping"].as_array().expect("shaping list").clone()
}

fn time_of(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a time"), &Rfc3339).expect("RFC 3339")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suspension_is_recorded_survives_a_restart_and_lifts_at_its_end() {
    let mut rig = LimitsRig::start(|_| {}).await;
    rig.rig
        .sink
        .set_rules(vec![rcpt_rule("tss04@", TSS04)])
        .expect("sink rules");
    let suspended = rig.add_ip(&warm_ip("127.0.0.2")).await;
    let other = rig.add_ip(&warm_ip("127.0.0.3")).await;
    let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
    let t0 = rig.now();
    rig.start_campaign_to(&[suspended], &["tss04@yahoo-like.test".into()])
        .await;

    let row = the_action(&rig, suspended).await;
    let hold = Duration::from_secs(rule_secs(rig.rig.config(), "yahoo_tss04"));
    let until = t0 + hold;
    assert_eq!(
        (row.key.as_str(), row.provider.as_str(), row.action.as_str()),
        (UNIT, "default", "suspend")
    );
    assert_eq!(row.rule, "yahoo_tss04");
    assert_eq!((row.started_at, row.until), (t0, until), "{row:?}");
    assert_eq!((row.factor, row.effective_per_hour), (None, 0));
    assert!(row.reason.contains("[TSS04]"), "{}", row.reason);

    let listed = shown(&rig, suspended).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let action = &listed[0];
    assert_eq!(action["key"], UNIT);
    assert_eq!(action["action"], "suspend");
    assert_eq!(action["rule"], "yahoo_tss04");
    assert_eq!(action["effective_per_hour"], 0);
    assert_eq!(time_of(&action["since"]), t0);
    assert_eq!(time_of(&action["until"]), until);
    assert!(
        shown(&rig, other).await.is_empty(),
        "the other IP has no action"
    );

    // A new node (a new Ip actor) takes the suspension over from Postgres.
    rig.restart(false).await;
    rig.start_campaign_to(&[suspended], &emails("held", 20))
        .await;
    rig.start_campaign_to(&[other], &emails("free", 20)).await;
    rig.settle(
        &HashMap::from([(a, 0), (b, 20)]),
        "while the restored suspension holds",
    )
    .await;
    assert_eq!(rig.now(), t0, "the clock did not move");

    // At its end the unit sends again: the 20 held and the deferred one.
    rig.set_clock(until);
    rig.settle(
        &HashMap::from([(a, 21), (b, 20)]),
        "after the suspension's end",
    )
    .await;
    rig.rig.shutdown().await;
}

/// A Yahoo `[TSS04]` suspension recorded on node-a holds on node-b after the
/// tenant is handed off (node-a drained): node-b's new Ip actor restores it,
/// so none of the IP's mail reaches the sink while another IP of the tenant
/// delivers everything, and the suspension lifts at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suspension_survives_a_hand_off_to_another_node() {
    let mut rig = LimitsRig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = 3_000;
    })
    .await;
    rig.rig
        .sink
        .set_rules(vec![rcpt_rule("tss04@", TSS04)])
        .expect("sink rules");
    let suspended = rig.add_ip(&warm_ip("127.0.0.2")).await;
    let other = rig.add_ip(&warm_ip("127.0.0.3")).await;
    let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
    let t0 = rig.now();
    rig.start_campaign_to(&[suspended], &["tss04@yahoo-like.test".into()])
        .await;
    let row = the_action(&rig, suspended).await;
    let until = t0 + Duration::from_secs(rule_secs(rig.rig.config(), "yahoo_tss04"));
    assert_eq!((row.key.as_str(), row.action.as_str()), (UNIT, "suspend"));
    assert_eq!((row.started_at, row.until), (t0, until), "{row:?}");

    // node-b joins on the same clock; node-a drains and hands the tenant over.
    let options = NodeOptions {
        clock: Arc::new(rig.clock.clone()),
        ..NodeOptions::standalone()
    };
    let node_b = Node::start(Arc::new(node_config(&rig.rig, "node-b")), options)
        .await
        .expect("node-b starts");
    wait_for("node-b to join", Duration::from_secs(20), || async {
        (shares(&rig.api).await.len() == 2).then_some(())
    })
    .await;
    rig.api
        .post("/v1/nodes/node-a/drain", Some(admin_token()), &json!({}))
        .await
        .expect(202);
    let node_a = rig.rig.node.take().expect("node-a");
    tokio::time::timeout(Duration::from_secs(30), node_a.engine().drained())
        .await
        .expect("node-a drains");
    node_a.shutdown().await;
    rig.api = ApiClient::new(&node_b.api_url());
    rig.rig.node = Some(node_b);
    wait_for("the tenant on node-b", Duration::from_secs(20), || async {
        (shares(&rig.api).await == shares_of(&[("node-b", 1)])).then_some(())
    })
    .await;

    rig.start_campaign_to(&[suspended], &emails("held", 20))
        .await;
    rig.start_campaign_to(&[other], &emails("free", 20)).await;
    rig.settle(
        &HashMap::from([(a, 0), (b, 20)]),
        "on node-b while the handed-off suspension holds",
    )
    .await;
    assert_eq!(rig.now(), t0, "the clock did not move");
    let listed = shown(&rig, suspended).await;
    assert_eq!(listed.len(), 1, "node-b shows the suspension: {listed:?}");
    assert_eq!(time_of(&listed[0]["until"]), until);

    rig.set_clock(until);
    rig.settle(
        &HashMap::from([(a, 21), (b, 20)]),
        "on node-b after the suspension's end",
    )
    .await;
    rig.rig.shutdown().await;
}

/// The reply and rule of the slow-down scenario (first in the list, so no
/// default rule takes the reply first).
const SLOW_REPLY: &str = "451 4.7.0 e2e: please slow down";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_down_multiplies_the_rate_the_unit_was_observed_sending_at() {
    let rig = LimitsRig::start(|config| {
        config.delivery.reply_rules.insert(
            0,
            ReplyRule {
                name: Some("e2e_slow_down".into()),
                pattern: "e2e: please slow down".into(),
                provider: None,
                action: ReplyAction::SlowDown,
                factor: Some(0.5),
                duration_secs: 1800,
            },
        );
    })
    .await;
    rig.rig
        .sink
        .set_rules(vec![
            rcpt_rule("slow@", SLOW_REPLY),
            rcpt_rule("slower@", SLOW_REPLY),
        ])
        .expect("sink rules");
    let ip = rig.add_ip(&warm_ip("127.0.0.2")).await;
    let address: IpAddr = "127.0.0.2".parse().unwrap();
    let t0 = rig.now();
    rig.start_campaign_to(&[ip], &emails("busy", 30)).await;
    rig.settle(&HashMap::from([(address, 30)]), "the busy unit")
        .await;
    rig.start_campaign_to(&[ip], &["slow@site.test".into()])
        .await;

    // 31 messages admitted within five minutes of the clock (it stands still):
    // 372 an hour, halved. A nominal 60/h would give 30 (then the floor, 60).
    let row = the_action(&rig, ip).await;
    let observed = 31 * 12;
    assert_eq!(row.action, "slow_down");
    assert_eq!(row.rule, "e2e_slow_down");
    assert_eq!(row.factor, Some(0.5));
    assert_eq!(row.effective_per_hour, observed / 2, "{row:?}");
    assert_eq!(
        (row.started_at, row.until),
        (t0, t0 + Duration::from_secs(1800))
    );
    assert!(
        row.reason
            .contains(&format!("observed {observed}/h over the last 300 s")),
        "{}",
        row.reason
    );

    let listed = shown(&rig, ip).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["key"], UNIT);
    assert_eq!(listed[0]["rule"], "e2e_slow_down");
    assert_eq!(listed[0]["factor"], 0.5);
    assert_eq!(listed[0]["effective_per_hour"], observed / 2);
    assert_eq!(listed[0]["reason"], Value::String(row.reason.clone()));

    // A minute later the same rule again: half of the slowed rate, the row
    // extended (same start, the later end), not a second row.
    let t1 = t0 + Duration::from_secs(60);
    rig.set_clock(t1);
    rig.start_campaign_to(&[ip], &["slower@site.test".into()])
        .await;
    let again = wait_for(
        "the second slow-down to be recorded",
        Duration::from_secs(30),
        || async {
            let mut found = rows(&rig, ip).await;
            assert_eq!(found.len(), 1, "one row per unit and action: {found:?}");
            found.pop().filter(|r| r.until != row.until)
        },
    )
    .await;
    assert_eq!(again.effective_per_hour, observed / 4, "{again:?}");
    assert_eq!(
        (again.started_at, again.until),
        (t0, t1 + Duration::from_secs(1800))
    );
    assert!(
        again
            .reason
            .contains(&format!("slowed rate {}/h", observed / 2)),
        "{}",
        again.reason
    );
    rig.rig.shutdown().await;
}
