//! The urgent lane (issue 15 item 4), counted at the sink: while a bulk campaign
//! (priority 200) of a tenant saturates its IP — the IP's connections busy, its
//! local backlog full, the tenant's Redis window full, thousands of jobs still
//! in Postgres — a lead imported into a running priority-10 campaign of the
//! same tenant and IP is delivered ahead of that bulk backlog.
//!
//! What is counted: the bulk messages the sink accepts between the import's
//! answer and the urgent message's acceptance. The urgent job may wait for the
//! transactions under way (one per connection) and for one credit to come back
//! to its tenant, never for the IP's backlog (`ip_backlog` jobs) nor for the
//! Redis window to drain (half a window): at most [`AHEAD`] bulk messages.
//! Each urgent import is checked on its own, with thousands of bulk jobs left.
//!
//! Bulk messages take [`BULK_DELAY_MS`] at the sink (a scripted delay before
//! the 250), so the IP stays saturated at a few messages per second and the
//! count means the same on a loaded machine; no time is asserted.

use std::time::Duration;

use penguin_engine::sink::{Rule, RuleStage};
use serde_json::{Value, json};

use crate::support::rig::Rig;
use crate::support::wait_for_showing;

const CONNECTIONS: usize = 2;
/// The IP's local queue beyond its connections (`delivery.ip_backlog`).
const BACKLOG: usize = 16;
/// The tenant's Redis window (`queue.window`); the feeder tops up below half.
const WINDOW: usize = 100;
const BULK: usize = 3_000;
const BULK_DELAY_MS: u64 = 400;
const URGENT_LEADS: usize = 3;
/// Bulk messages that may be accepted between an urgent import's answer and
/// the urgent message: the transactions under way when it reaches the IP (one
/// per connection), those ending while it travels Postgres → Redis → Ip (about
/// one more per connection), and as much again for a loaded machine. Far below
/// the IP's backlog and half the window, which a FIFO lane waits behind.
const AHEAD: usize = 3 * CONNECTIONS;

fn campaign_body(name: &str, priority: i32, ip: &str) -> Value {
    json!({
        "name": name, "from": "hello@e2e-1.test", "subject": "Hi", "text": "Hello",
        "priority": priority, "ip_ids": [ip],
    })
}

/// Jobs of `campaign` per state, as Postgres holds them.
async fn jobs_in(rig: &Rig, campaign: uuid::Uuid, state: &str) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM send_jobs WHERE campaign_id = '{campaign}' AND status = '{state}'"
    );
    rig.env.psql(&sql).await[0].get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn urgent_leads_overtake_a_saturating_bulk_campaign() {
    let rig = Rig::start(|c| {
        c.delivery.connections_per_ip = CONNECTIONS;
        c.delivery.ip_backlog = BACKLOG;
        c.queue.window = WINDOW;
        c.queue.feed_batch = WINDOW / 2;
        // The held lead's deferral must not shape the IP's traffic.
        c.delivery.reply_rules = Vec::new();
    })
    .await;
    rig.sink
        .set_rules(vec![
            Rule {
                recipient_pattern: "*@bulk.test".into(),
                stage: RuleStage::DataEnd,
                reply: None,
                times: None,
                delay_ms: Some(BULK_DELAY_MS),
                drop_connection: false,
            },
            Rule {
                recipient_pattern: "held@urgent.test".into(),
                stage: RuleStage::Rcpt,
                reply: Some("450 4.2.1 held by the test".into()),
                times: None,
                delay_ms: None,
                drop_connection: false,
            },
        ])
        .unwrap();
    let scenario = rig.scenario(vec![vec!["127.0.0.2"]], 0).await;
    let (client, tenant) = (&scenario.client, &scenario.tenants[0]);
    let ip = tenant.ips[0].0.to_string();

    // The urgent campaign runs first: one lead delivered while the IP is idle,
    // one deferred for minutes (the retry delay), which keeps it running.
    let urgent = client
        .create_campaign(&tenant.token, &campaign_body("resets", 10, &ip))
        .await
        .unwrap();
    let first = [
        json!({"email": "first@urgent.test"}),
        json!({"email": "held@urgent.test"}),
    ];
    client
        .add_leads(&tenant.token, urgent, &first, 2)
        .await
        .unwrap();
    client
        .campaign_action(&tenant.token, urgent, "start")
        .await
        .unwrap();
    rig.wait_for_sink(1, Duration::from_secs(30)).await;
    wait_for_showing(
        "the held lead deferred",
        Duration::from_secs(30),
        || async {
            match jobs_in(&rig, urgent, "deferred").await {
                1 => Ok(()),
                n => Err(n),
            }
        },
    )
    .await;

    // Bulk saturates the IP: its connections and backlog hold jobs `sending`,
    // the Redis window is full (`queued`), the rest waits in Postgres.
    let bulk = client
        .create_campaign(&tenant.token, &campaign_body("newsletter", 200, &ip))
        .await
        .unwrap();
    let leads: Vec<Value> = (0..BULK)
        .map(|i| json!({"email": format!("b{i}@bulk.test")}))
        .collect();
    let accepted = client
        .add_leads(&tenant.token, bulk, &leads, 1_000)
        .await
        .unwrap();
    assert_eq!(accepted, BULK as u64);
    client
        .campaign_action(&tenant.token, bulk, "start")
        .await
        .unwrap();
    wait_for_showing(
        "bulk saturating the IP",
        Duration::from_secs(30),
        || async {
            let sending = jobs_in(&rig, bulk, "sending").await;
            let queued = jobs_in(&rig, bulk, "queued").await;
            let saturated =
                sending as usize >= CONNECTIONS + BACKLOG && queued as usize >= WINDOW / 2;
            if saturated {
                Ok(())
            } else {
                Err((sending, queued))
            }
        },
    )
    .await;

    for n in 0..URGENT_LEADS {
        let email = format!("u{n}@urgent.test");
        let answer = client
            .post(
                &format!("/v1/campaigns/{urgent}/leads"),
                &tenant.token,
                &json!({"leads": [{"email": email}]}),
            )
            .await
            .unwrap();
        assert_eq!(answer["accepted"], 1, "{answer:#}");
        let answered_at = rig.sink.messages().last().map_or(0, |m| m.seq);
        let answered_ms = penguin_engine::clock::unix_ms();

        let what = format!("the urgent message to {email}");
        let (urgent_seq, begun_ms) = wait_for_showing(&what, Duration::from_secs(60), || async {
            let messages = rig.sink.messages_after(answered_at, usize::MAX);
            let bulk_since = messages
                .iter()
                .filter(|m| m.rcpt_to.iter().any(|r| r.ends_with("@bulk.test")))
                .count();
            match messages.iter().find(|m| m.rcpt_to.contains(&email)) {
                Some(found) => Ok((found.seq, found.begun_at_ms)),
                None => Err(format!(
                    "{bulk_since} bulk messages accepted since the answer"
                )),
            }
        })
        .await;
        let between = rig
            .sink
            .messages_after(answered_at, usize::MAX)
            .into_iter()
            .filter(|m| m.seq < urgent_seq)
            .filter(|m| m.rcpt_to.iter().any(|r| r.ends_with("@bulk.test")))
            .count();
        let left = jobs_in(&rig, bulk, "pending").await;
        // Informational only (timing is the benchmark's): answer → MAIL FROM.
        let waited_ms = begun_ms - answered_ms;
        eprintln!(
            "{email}: {between} bulk messages ahead of it (MAIL FROM {waited_ms} ms after \
             the answer), {left} bulk jobs pending"
        );
        assert!(
            left as usize >= BULK / 2,
            "the bulk backlog is still there ({left} pending)"
        );
        assert!(
            between <= AHEAD,
            "{between} bulk messages were accepted between the import of {email} and its \
             delivery; the urgent lane allows {AHEAD} ({CONNECTIONS} connections, backlog \
             {BACKLOG}, window {WINDOW})"
        );
    }

    // Every urgent message arrived once, from the tenant's IP.
    let urgent_messages: Vec<_> = rig
        .sink
        .messages()
        .into_iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r.ends_with("@urgent.test")))
        .collect();
    assert_eq!(
        urgent_messages.len(),
        URGENT_LEADS + 1,
        "each urgent lead once (the held one never accepted)"
    );
    assert!(
        urgent_messages
            .iter()
            .all(|m| m.source_ip.to_string() == "127.0.0.2")
    );
    assert_eq!(rig.sink.stats().duplicate_messages, 0);
    client
        .campaign_action(&tenant.token, bulk, "cancel")
        .await
        .unwrap();
    rig.shutdown().await;
}
