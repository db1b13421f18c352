//! Complaints (feedback loops), end to end: after a real campaign went out to the
//! loopback sink, complaints arrive as JSON (by Message-ID or job id) and as an
//! ARF report (RFC 5965). Each records one `complaint` event with the IP and the
//! provider of the job's `sent` event, one more complaint in the IP's daily
//! rollup, and a suppression of the recipient — once: a repeat changes nothing
//! and says `duplicate`. A control event tells the node; foreign, unknown,
//! unsent and malformed complaints are refused and change nothing.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::{Answer, ApiClient, control_events, count};
use crate::support::rig::Rig;
use crate::support::{admin_token, wait_for};

/// One sent job of the scenario.
struct SentJob {
    id: Uuid,
    message_id: String,
    ip: Uuid,
    campaign: Uuid,
}

async fn sent_job(rig: &Rig, email: &str) -> SentJob {
    let rows = rig
        .env
        .psql(&format!(
            "SELECT j.id, j.message_id, j.ip_id, j.campaign_id FROM send_jobs j
             JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             WHERE l.email = '{email}' AND j.status = 'sent'"
        ))
        .await;
    let row = rows.first().unwrap_or_else(|| panic!("{email} was sent"));
    SentJob {
        id: row.get(0),
        message_id: row.get(1),
        ip: row.get(2),
        campaign: row.get(3),
    }
}

/// Everything a complaint writes, to prove what a request changed.
async fn complaint_rows(rig: &Rig) -> (i64, i64, i64) {
    let env = &rig.env;
    (
        count(
            env,
            "SELECT count(*) FROM delivery_events WHERE kind = 'complaint'",
        )
        .await,
        count(
            env,
            "SELECT coalesce(sum(complaints), 0)::int8 FROM ip_daily_stats",
        )
        .await,
        count(env, "SELECT count(*) FROM suppressions").await,
    )
}

async fn post_body(api: &ApiClient, token: &str, content_type: &str, body: &str) -> Answer {
    let body = Some(body.as_bytes().to_vec());
    api.raw(
        Method::POST,
        "/v1/complaints",
        Some(token),
        Some(content_type),
        body,
    )
    .await
}

/// An ARF report about `message_id` as a feedback loop sends it: CRLF line
/// endings, the Message-ID folded onto its own line.
fn arf_report(message_id: &str, feedback_type: &str) -> String {
    [
        "--frontier",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is an email abuse report for an email message received from IP 127.0.0.2.",
        "--frontier",
        "Content-Type: message/feedback-report",
        "",
        &format!("Feedback-Type: {feedback_type}"),
        "User-Agent: ExampleFBL/1.0",
        "Version: 1",
        "Original-Rcpt-To: <bob@fbl.test>",
        "",
        "--frontier",
        "Content-Type: message/rfc822",
        "Content-Disposition: inline",
        "",
        "From: hello@e2e-1.test",
        "To: bob@fbl.test",
        "Subject: Hi Pat",
        "Message-ID:",
        &format!(" <{message_id}>"),
        "",
        "Hello",
        "--frontier--",
        "",
    ]
    .join("\r\n")
}

const ARF_TYPE: &str = "multipart/report; report-type=feedback-report; boundary=\"frontier\"";

async fn next_event(events: &mut (impl futures::Stream<Item = Value> + Unpin)) -> Value {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("a control event")
        .expect("the stream goes on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn complaints_are_recorded_once_and_suppress_the_recipient() {
    let rig = Rig::start(|_| {}).await;
    let scenario = rig
        .campaign_with_leads(&["ann@fbl.test", "bob@fbl.test", "cy@fbl.test"])
        .await;
    scenario.start().await.unwrap();
    rig.wait_until_done(&scenario, Duration::from_secs(30))
        .await;
    // The Analytics actor writes the `sent` events in batches.
    wait_for("3 sent events", Duration::from_secs(10), || async {
        let n = count(
            &rig.env,
            "SELECT count(*) FROM delivery_events WHERE kind = 'sent'",
        )
        .await;
        (n == 3).then_some(())
    })
    .await;
    let tenant = &scenario.tenants[0];
    let api = ApiClient::new(&rig.node().api_url());
    let (_, other_token) = api.create_tenant("other").await;
    let (ann, bob, cy) = (
        sent_job(&rig, "ann@fbl.test").await,
        sent_job(&rig, "bob@fbl.test").await,
        sent_job(&rig, "cy@fbl.test").await,
    );
    let provider: Option<String> = rig
        .env
        .psql(&format!(
            "SELECT provider FROM delivery_events WHERE job_id = '{}' AND kind = 'sent'",
            ann.id
        ))
        .await[0]
        .get(0);
    let mut events = control_events(&rig.env).await;

    // JSON by Message-ID, as the tenant, with angle brackets.
    let answer = api
        .post(
            "/v1/complaints",
            Some(&tenant.token),
            &json!({ "message_id": format!("<{}>", ann.message_id) }),
        )
        .await;
    assert_eq!(
        answer.expect(202),
        &json!({
            "job_id": ann.id.to_string(), "ip_id": ann.ip.to_string(),
            "campaign_id": ann.campaign.to_string(), "duplicate": false,
        })
    );
    assert_eq!(
        next_event(&mut events).await,
        json!({ "kind": "complaint", "tenant_id": tenant.id.to_string(),
                "ip_id": ann.ip.to_string(), "provider": provider })
    );
    let event = rig
        .env
        .psql(&format!(
            "SELECT ip_id, campaign_id, provider, class FROM delivery_events
             WHERE job_id = '{}' AND kind = 'complaint'",
            ann.id
        ))
        .await;
    assert_eq!(event.len(), 1);
    assert_eq!(event[0].get::<_, Option<Uuid>>(0), Some(ann.ip));
    assert_eq!(event[0].get::<_, Uuid>(1), ann.campaign);
    assert_eq!(event[0].get::<_, Option<String>>(2), provider);
    assert_eq!(
        event[0].get::<_, Option<String>>(3).as_deref(),
        Some("abuse")
    );
    let today = format!(
        "SELECT complaints FROM ip_daily_stats WHERE ip_id = '{}'
           AND day = (now() AT TIME ZONE 'UTC')::date",
        ann.ip
    );
    assert_eq!(count(&rig.env, &today).await, 1);
    let suppressed = rig.env.psql("SELECT email, reason FROM suppressions").await;
    assert_eq!(suppressed.len(), 1);
    assert_eq!(
        (
            suppressed[0].get::<_, String>(0),
            suppressed[0].get::<_, String>(1)
        ),
        ("ann@fbl.test".to_string(), "complaint".to_string())
    );

    // The same job again, by id, as the admin: nothing changes.
    let before = complaint_rows(&rig).await;
    let again = api
        .post(
            "/v1/complaints",
            Some(admin_token()),
            &json!({ "job_id": ann.id }),
        )
        .await;
    assert_eq!(again.expect(202)["duplicate"], true);
    assert_eq!(again.body["job_id"], json!(ann.id.to_string()));
    assert_eq!(complaint_rows(&rig).await, before);

    // An ARF report, as the admin (every tenant's jobs).
    let answer = post_body(
        &api,
        admin_token(),
        ARF_TYPE,
        &arf_report(&bob.message_id, "abuse"),
    )
    .await;
    assert_eq!(answer.expect(202)["job_id"], json!(bob.id.to_string()));
    assert_eq!(answer.body["duplicate"], false);
    // The next event is bob's: the duplicate published nothing.
    let event = next_event(&mut events).await;
    assert_eq!(event["ip_id"], json!(bob.ip.to_string()));
    assert_eq!(event["kind"], "complaint");
    assert_eq!(count(&rig.env, &today).await, 2);
    let again = post_body(
        &api,
        &tenant.token,
        ARF_TYPE,
        &arf_report(&bob.message_id, "abuse"),
    )
    .await;
    assert_eq!(again.expect(202)["duplicate"], true);

    // The IP's health shows them.
    let ip = api
        .get(&format!("/v1/ips/{}", ann.ip), Some(&tenant.token))
        .await;
    assert_eq!(ip.expect(200)["health"]["complaints"], 2);

    // Refused, changing nothing: another tenant's job, unknown ones, a job that
    // never left, and malformed bodies.
    let before = complaint_rows(&rig).await;
    for body in [
        json!({ "message_id": cy.message_id }),
        json!({ "job_id": cy.id }),
    ] {
        api.post("/v1/complaints", Some(&other_token), &body)
            .await
            .assert_error(404, "not_found");
    }
    post_body(
        &api,
        &other_token,
        ARF_TYPE,
        &arf_report(&cy.message_id, "abuse"),
    )
    .await
    .assert_error(404, "not_found");
    for body in [
        json!({ "message_id": "<nobody@nowhere.test>" }),
        json!({ "job_id": Uuid::now_v7() }),
    ] {
        api.post("/v1/complaints", Some(admin_token()), &body)
            .await
            .assert_error(404, "not_found");
    }
    let unsent = unsent_job(&rig, &scenario).await;
    let answer = api
        .post(
            "/v1/complaints",
            Some(&tenant.token),
            &json!({ "job_id": unsent }),
        )
        .await;
    answer.assert_error(409, "conflict");
    assert!(
        answer.message().contains("never sent"),
        "{}",
        answer.message()
    );

    let invalid = [
        json!({ "message_id": cy.message_id, "job_id": cy.id }),
        json!({}),
        json!({ "message_id": cy.message_id, "reason": "spam" }),
        json!({ "message_id": "not a message id" }),
        json!({ "job_id": "not-a-uuid" }),
        json!({ "message_id": 5 }),
    ];
    for body in &invalid {
        api.post("/v1/complaints", Some(&tenant.token), body)
            .await
            .assert_error(422, "invalid_request");
    }
    let no_id = arf_report(&cy.message_id, "abuse").replace("Message-ID:", "X-Message-ID:");
    let missing = post_body(&api, &tenant.token, ARF_TYPE, &no_id).await;
    missing.assert_error(422, "invalid_request");
    assert!(
        missing.message().contains("no Message-ID"),
        "{}",
        missing.message()
    );
    for (content_type, body) in [
        (
            "multipart/report; report-type=feedback-report",
            arf_report(&cy.message_id, "abuse"),
        ),
        (ARF_TYPE, arf_report(&cy.message_id, "not-spam")),
        (ARF_TYPE, "garbage".to_string()),
        (
            "message/feedback-report",
            "Feedback-Type: abuse\r\nVersion: 1\r\n".to_string(),
        ),
    ] {
        post_body(&api, &tenant.token, content_type, &body)
            .await
            .assert_error(422, "invalid_request");
    }
    api.post_text("/v1/complaints", Some(&tenant.token), "{\"job_id\":")
        .await
        .assert_error(400, "malformed_json");
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        post_body(&api, &tenant.token, content_type, &cy.message_id)
            .await
            .assert_error(415, "unsupported_media_type");
    }
    api.raw(
        Method::POST,
        "/v1/complaints",
        Some(&tenant.token),
        None,
        None,
    )
    .await
    .assert_error(415, "unsupported_media_type");
    api.post("/v1/complaints", None, &json!({ "job_id": cy.id }))
        .await
        .assert_error(401, "unauthorized");
    assert_eq!(
        complaint_rows(&rig).await,
        before,
        "refused complaints changed nothing"
    );
    let cy_suppressed = "SELECT count(*) FROM suppressions WHERE email = 'cy@fbl.test'";
    assert_eq!(count(&rig.env, cy_suppressed).await, 0);

    // `message/feedback-report` alone, with the original headers after it.
    let alone = format!(
        "Feedback-Type: fraud\r\nVersion: 1\r\n\r\nMessage-Id: <{}>\r\nSubject: Hi\r\n",
        cy.message_id
    );
    let answer = post_body(&api, &tenant.token, "message/feedback-report", &alone).await;
    assert_eq!(answer.expect(202)["job_id"], json!(cy.id.to_string()));
    let class = rig
        .env
        .psql(&format!(
            "SELECT class FROM delivery_events WHERE job_id = '{}' AND kind = 'complaint'",
            cy.id
        ))
        .await;
    assert_eq!(
        class[0].get::<_, Option<String>>(0).as_deref(),
        Some("fraud")
    );
    assert_eq!(count(&rig.env, cy_suppressed).await, 1);
    drop(events);
    rig.shutdown().await;
}

/// A job with a lead but never sent (no IP): a second campaign's lead with a
/// `pending` job written straight into Postgres. Returns the job id.
async fn unsent_job(rig: &Rig, scenario: &penguin::scenario::Scenario) -> Uuid {
    rig.import_into_new_campaign(scenario, &["dan@fbl.test"])
        .await;
    let job = Uuid::now_v7();
    rig.env
        .psql(&format!(
            "INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority, status)
             SELECT l.tenant_id, '{job}', l.campaign_id, l.id, 100, 'pending'
             FROM leads l WHERE l.email = 'dan@fbl.test'"
        ))
        .await;
    job
}
