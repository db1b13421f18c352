//! Bounces after the 250, end to end: a real campaign goes out to the loopback
//! sink, then delivery status notifications (RFC 3464) arrive at
//! `POST /v1/bounces`. A permanent failure turns the `sent` job `bounced`,
//! records the event with the report's status and diagnostic, moves the
//! message from `sent` to `bounced` in the rollups, suppresses a bad address
//! (not a policy block), and tells the node (a `bounce` control event); a delay
//! records a `delayed` event only; a repeat, a foreign or unknown message and a
//! malformed body change nothing.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::{Answer, ApiClient, control_events, count};
use crate::support::rig::Rig;
use crate::support::{admin_token, wait_for};

struct SentJob {
    id: Uuid,
    message_id: String,
    ip: Uuid,
    campaign: Uuid,
}

async fn job_of(rig: &Rig, email: &str) -> SentJob {
    let rows = rig
        .env
        .psql(&format!(
            "SELECT j.id, j.message_id, j.ip_id, j.campaign_id FROM send_jobs j
             JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             WHERE l.email = '{email}'"
        ))
        .await;
    let row = rows.first().unwrap_or_else(|| panic!("{email} has a job"));
    SentJob {
        id: row.get(0),
        message_id: row.get(1),
        ip: row.get(2),
        campaign: row.get(3),
    }
}

/// A DSN as Postfix sends it: CRLF, the original's headers only.
fn dsn(message_id: &str, recipient: &str, action: &str, status: &str, diagnostic: &str) -> String {
    [
        "--dsn-b",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Your message could not be delivered.",
        "--dsn-b",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; mx.dsn.test",
        "",
        &format!("Final-Recipient: rfc822; {recipient}"),
        &format!("Action: {action}"),
        &format!("Status: {status}"),
        "Remote-MTA: dns; store.dsn.test",
        &format!("Diagnostic-Code: smtp; {diagnostic}"),
        "",
        "--dsn-b",
        "Content-Type: text/rfc822-headers",
        "",
        "From: hello@e2e-1.test",
        &format!("To: {recipient}"),
        &format!("Message-ID: <{message_id}>"),
        "Subject: Hi Pat",
        "",
        "--dsn-b--",
        "",
    ]
    .join("\r\n")
}

const DSN_TYPE: &str = "multipart/report; report-type=delivery-status; boundary=\"dsn-b\"";

async fn post_dsn(api: &ApiClient, token: &str, content_type: &str, body: &str) -> Answer {
    api.raw(
        Method::POST,
        "/v1/bounces",
        Some(token),
        Some(content_type),
        Some(body.as_bytes().to_vec()),
    )
    .await
}

/// Everything a bounce report may write, to prove what a request changed.
async fn footprint(rig: &Rig) -> Vec<i64> {
    let env = &rig.env;
    let mut all = Vec::new();
    for sql in [
        "SELECT count(*) FROM delivery_events",
        "SELECT count(*) FROM send_jobs WHERE status = 'bounced'",
        "SELECT count(*) FROM suppressions",
        "SELECT coalesce(sum(sent), 0)::int8 FROM ip_daily_stats",
        "SELECT coalesce(sum(bounced), 0)::int8 FROM ip_daily_stats",
        "SELECT coalesce(sum(bounced), 0)::int8 FROM campaign_daily_stats",
        "SELECT count(*) FROM leads WHERE stopped_at IS NOT NULL",
    ] {
        all.push(count(env, sql).await);
    }
    all
}

async fn next_event(events: &mut (impl futures::Stream<Item = Value> + Unpin)) -> Value {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("a control event")
        .expect("the stream goes on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_bounces_turn_sent_jobs_bounced_and_suppress_bad_addresses() {
    let rig = Rig::start(|_| {}).await;
    let scenario = rig
        .campaign_with_leads(&[
            "ann@dsn.test",
            "bob@dsn.test",
            "cy@dsn.test",
            "dee@dsn.test",
        ])
        .await;
    scenario.start().await.unwrap();
    rig.wait_until_done(&scenario, Duration::from_secs(30))
        .await;
    wait_for("4 sent events", Duration::from_secs(10), || async {
        let n = count(
            &rig.env,
            "SELECT count(*) FROM delivery_events WHERE kind = 'sent'",
        )
        .await;
        (n == 4).then_some(())
    })
    .await;
    let tenant = &scenario.tenants[0];
    let api = ApiClient::new(&rig.node().api_url());
    let (_, other_token) = api.create_tenant("other").await;
    let (ann, bob, cy, dee) = (
        job_of(&rig, "ann@dsn.test").await,
        job_of(&rig, "bob@dsn.test").await,
        job_of(&rig, "cy@dsn.test").await,
        job_of(&rig, "dee@dsn.test").await,
    );
    let sent_day = |table: &str, column: &str, key: &str, id: Uuid| {
        format!("SELECT coalesce(sum({column}), 0)::int8 FROM {table} WHERE {key} = '{id}'")
    };
    assert_eq!(
        count(
            &rig.env,
            &sent_day("ip_daily_stats", "sent", "ip_id", ann.ip)
        )
        .await,
        4
    );
    let mut events = control_events(&rig.env).await;

    // Unmatched first: an unknown message, and ann's message as another tenant.
    let before = footprint(&rig).await;
    let unknown = dsn(
        "nobody@e2e-1.test",
        "x@dsn.test",
        "failed",
        "5.1.1",
        "550 5.1.1 unknown",
    );
    let answer = post_dsn(&api, &tenant.token, DSN_TYPE, &unknown).await;
    assert_eq!(answer.expect(202)["matched"], json!(false), "{answer:?}");
    let foreign = dsn(
        &ann.message_id,
        "ann@dsn.test",
        "failed",
        "5.1.1",
        "550 5.1.1 unknown",
    );
    let answer = post_dsn(&api, &other_token, DSN_TYPE, &foreign).await;
    assert_eq!(answer.expect(202)["matched"], json!(false));
    // Malformed bodies: refused.
    post_dsn(&api, &tenant.token, "text/plain", &foreign)
        .await
        .assert_error(415, "unsupported_media_type");
    post_dsn(
        &api,
        &tenant.token,
        "multipart/report; report-type=delivery-status; boundary=\"nope\"",
        &foreign,
    )
    .await
    .assert_error(422, "invalid_request");
    let no_id = foreign.replace(&format!("Message-ID: <{}>", ann.message_id), "Subject: x");
    let answer = post_dsn(&api, &tenant.token, DSN_TYPE, &no_id).await;
    assert_eq!(answer.expect(202)["matched"], json!(false));
    assert_eq!(
        footprint(&rig).await,
        before,
        "nothing unmatched changes anything"
    );

    // A hard bounce of ann (5.1.1): bounced, suppressed, counted, told.
    let report = dsn(
        &ann.message_id,
        "ann@dsn.test",
        "failed",
        "5.1.1",
        "550 5.1.1 <ann@dsn.test>: Recipient address rejected: User unknown",
    );
    let answer = post_dsn(&api, &tenant.token, DSN_TYPE, &report).await;
    assert_eq!(
        answer.expect(202),
        &json!({
            "matched": true, "job_id": ann.id.to_string(), "campaign_id": ann.campaign.to_string(),
            "outcome": "bounced", "status": "5.1.1", "suppressed": true,
        })
    );
    let status = rig
        .env
        .psql(&format!(
            "SELECT status, last_reply FROM send_jobs WHERE id = '{}'",
            ann.id
        ))
        .await;
    assert_eq!(status[0].get::<_, String>(0), "bounced");
    assert!(status[0].get::<_, String>(1).contains("5.1.1"));
    let event = rig
        .env
        .psql(&format!(
            "SELECT smtp_code, enhanced_code, class, reply, ip_id FROM delivery_events
             WHERE job_id = '{}' AND kind = 'bounced'",
            ann.id
        ))
        .await;
    assert_eq!(event.len(), 1);
    assert_eq!(event[0].get::<_, Option<i32>>(0), Some(550));
    assert_eq!(
        event[0].get::<_, Option<String>>(1).as_deref(),
        Some("5.1.1")
    );
    assert_eq!(
        event[0].get::<_, Option<String>>(2).as_deref(),
        Some("invalid_recipient")
    );
    assert!(
        event[0]
            .get::<_, Option<String>>(3)
            .unwrap()
            .contains("User unknown")
    );
    assert_eq!(event[0].get::<_, Option<Uuid>>(4), Some(ann.ip));
    let suppressed = rig.env.psql("SELECT email, reason FROM suppressions").await;
    assert_eq!(suppressed.len(), 1);
    assert_eq!(
        (
            suppressed[0].get::<_, String>(0),
            suppressed[0].get::<_, String>(1)
        ),
        ("ann@dsn.test".to_string(), "hard_bounce".to_string())
    );
    assert_eq!(
        count(
            &rig.env,
            &sent_day("ip_daily_stats", "sent", "ip_id", ann.ip)
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &rig.env,
            &sent_day("ip_daily_stats", "bounced", "ip_id", ann.ip)
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &rig.env,
            &sent_day(
                "campaign_daily_stats",
                "bounced",
                "campaign_id",
                ann.campaign
            )
        )
        .await,
        1
    );
    let told = next_event(&mut events).await;
    assert_eq!(told["kind"], json!("bounce"));
    assert_eq!(told["ip_id"], json!(ann.ip.to_string()));

    // The same report again: unchanged, nothing written.
    let before = footprint(&rig).await;
    let answer = post_dsn(&api, &tenant.token, DSN_TYPE, &report).await;
    assert_eq!(answer.expect(202)["outcome"], json!("unchanged"));
    assert_eq!(footprint(&rig).await, before);

    // A policy block of bob (5.7.1), by the admin: bounced, but the address
    // says nothing bad about itself: not suppressed.
    let report = dsn(
        &bob.message_id,
        "bob@dsn.test",
        "failed",
        "5.7.1",
        "554 5.7.1 Service unavailable; Client host blocked using zen.example",
    );
    let answer = post_dsn(&api, admin_token(), DSN_TYPE, &report).await;
    let body = answer.expect(202);
    assert_eq!(
        (body["outcome"].clone(), body["suppressed"].clone()),
        (json!("bounced"), json!(false))
    );
    assert_eq!(
        count(&rig.env, "SELECT count(*) FROM suppressions").await,
        1
    );

    // A delay of cy, wrapped in the bounce email itself: an event only.
    let inner = dsn(
        &cy.message_id,
        "cy@dsn.test",
        "delayed",
        "4.2.2",
        "452 4.2.2 Mailbox full",
    );
    let wrapped =
        format!("From: MAILER-DAEMON@mx.dsn.test\r\nContent-Type: {DSN_TYPE}\r\n\r\n{inner}");
    let answer = post_dsn(&api, &tenant.token, "message/rfc822", &wrapped).await;
    assert_eq!(answer.expect(202)["outcome"], json!("delayed"));
    let cy_rows = rig
        .env
        .psql(&format!(
            "SELECT (SELECT status FROM send_jobs WHERE id = '{0}'),
                    (SELECT count(*) FROM delivery_events WHERE job_id = '{0}' AND kind = 'delayed')",
            cy.id
        ))
        .await;
    assert_eq!(cy_rows[0].get::<_, String>(0), "sent");
    assert_eq!(cy_rows[0].get::<_, i64>(1), 1);

    // Success notifications change nothing.
    let before = footprint(&rig).await;
    let report = dsn(
        &dee.message_id,
        "dee@dsn.test",
        "delivered",
        "2.0.0",
        "250 ok",
    );
    let answer = post_dsn(&api, &tenant.token, DSN_TYPE, &report).await;
    assert_eq!(answer.expect(202)["outcome"], json!("ignored"));
    assert_eq!(footprint(&rig).await, before);
    let jobs = rig.job_counts().await;
    assert_eq!(
        (jobs.get("sent"), jobs.get("bounced")),
        (Some(&2), Some(&2))
    );
    drop(events);
    let _ = (dee.campaign, dee.ip);
    rig.shutdown().await;
}
