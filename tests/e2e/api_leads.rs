//! API scenario: lead import. Counts are exact — accepted, rejected with the row
//! and reason (invalid email, invalid fields, duplicate within the request or the
//! campaign), suppressed for the tenant — and the rows in Postgres match them. A
//! running campaign gets jobs for new leads in the same request; finished
//! campaigns refuse leads; refused requests change nothing.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::TestEnv;
use crate::support::api::{ApiServer, control_events, count, leads, rejected, snapshot};

#[tokio::test]
async fn imports_count_accepted_rejected_duplicate_and_suppressed_exactly() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (other, _) = api.create_tenant("other").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    env.psql(&format!(
        "INSERT INTO suppressions (tenant_id, email, reason) VALUES
            ('{tenant}', 'blocked@example.com', 'unsubscribe'),
            ('{other}', 'ann@example.com', 'manual')"
    ))
    .await;

    let answer = api
        .add_leads(
            &token,
            campaign,
            json!([
                { "email": "Ann@Example.com", "fields": { "first_name": "Ann", "age": 31, "vip": true, "note": null } },
                { "email": "not-an-email" },
                { "email": "ann@example.com", "fields": { "first_name": "Dup" } },
                { "email": "blocked@example.com" },
                { "email": "bob@example.com", "fields": { "nested": { "x": 1 } } },
                { "email": "cy@example.com", "fields": [1, 2] },
                { "email": "dee@example.com" },
                { "email": "a\r\nb@example.com" },
                { "email": "eve@example.com", "fields": { "x": "nul\u{0}" } },
            ]),
        )
        .await;
    let body = answer.expect(200).clone();
    assert_eq!(body["accepted"], 2, "{body:#}");
    assert_eq!(body["suppressed"], 1);
    let rows: Vec<u64> = rejected(&body).iter().map(|(row, _)| *row).collect();
    assert_eq!(rows, vec![1, 2, 4, 5, 7, 8], "{body:#}");
    assert_eq!(rejected(&body)[1].1, "duplicate");
    assert!(rejected(&body)[0].1.contains("email"), "{body:#}");

    let in_campaign = format!("SELECT count(*) FROM leads WHERE campaign_id = '{campaign}'");
    assert_eq!(count(&env, &in_campaign).await, 2);
    let ann = env
        .psql(&format!(
            "SELECT email, fields::text FROM leads WHERE campaign_id = '{campaign}' ORDER BY email"
        ))
        .await;
    assert_eq!(ann[0].get::<_, String>(0), "ann@example.com");
    let fields: Value = serde_json::from_str(&ann[0].get::<_, String>(1)).unwrap();
    assert_eq!(
        fields,
        json!({ "first_name": "Ann", "age": 31, "vip": true, "note": null })
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM send_jobs").await,
        0,
        "a draft has no jobs"
    );

    // Addresses the campaign already has are duplicates of it.
    let again = api
        .add_leads(
            &token,
            campaign,
            json!([{ "email": "dee@example.com" }, { "email": "fay@example.com" }, { "email": "ANN@example.com" }]),
        )
        .await;
    let again = again.expect(200);
    assert_eq!(again["accepted"], 1);
    assert_eq!(again["suppressed"], 0);
    assert_eq!(
        rejected(again),
        vec![(0, "duplicate".to_string()), (2, "duplicate".to_string())]
    );
    assert_eq!(count(&env, &in_campaign).await, 3);

    // More than one chunk in one request.
    let big = api.add_leads(&token, campaign, leads(2_500)).await;
    let big = big.expect(200);
    assert_eq!(
        (
            big["accepted"].as_u64(),
            big["rejected"].as_array().unwrap().len()
        ),
        (Some(2_500), 0)
    );
    assert_eq!(count(&env, &in_campaign).await, 2_503);

    // An empty list is fine and changes nothing.
    let empty = api.add_leads(&token, campaign, json!([])).await;
    assert_eq!(
        empty.expect(200),
        &json!({ "accepted": 0, "rejected": [], "suppressed": 0 })
    );
}

#[tokio::test]
async fn running_campaigns_get_jobs_and_finished_ones_refuse_leads() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    api.add_leads(&token, campaign, leads(2)).await.expect(200);
    assert_eq!(api.action_ok(&token, campaign, "start").await, "running");
    let jobs = format!(
        "SELECT count(*) FROM send_jobs WHERE campaign_id = '{campaign}' AND status = 'pending' AND priority = 100"
    );
    assert_eq!(count(&env, &jobs).await, 2);

    let mut events = control_events(&env).await;
    let more = api
        .add_leads(
            &token,
            campaign,
            json!([{ "email": "lead0@example.com" }, { "email": "new@example.com" }]),
        )
        .await;
    assert_eq!(more.expect(200)["accepted"], 1);
    assert_eq!(
        count(&env, &jobs).await,
        3,
        "the new lead got its job at once"
    );
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event")
        .unwrap();
    assert_eq!(event["kind"], "campaign_changed");
    assert_eq!(event["campaign_id"], json!(campaign.to_string()));
    assert_eq!(event["status"], "running");

    // Paused campaigns take leads (and jobs) too.
    api.action_ok(&token, campaign, "pause").await;
    let paused = api
        .add_leads(&token, campaign, json!([{ "email": "late@example.com" }]))
        .await;
    assert_eq!(paused.expect(200)["accepted"], 1);
    assert_eq!(count(&env, &jobs).await, 4);

    // Refused requests change nothing.
    let before = snapshot(&env).await;
    let path = format!("/v1/campaigns/{campaign}/leads");
    api.raw(
        Method::POST,
        &path,
        Some(&token),
        Some("application/xml"),
        Some(b"<leads><email>x@example.com</email></leads>".to_vec()),
    )
    .await
    .assert_error(415, "unsupported_media_type");
    api.post_text(&path, Some(&token), "{\"leads\": [")
        .await
        .assert_error(400, "malformed_json");
    api.post(
        &path,
        Some(&token),
        &json!({ "leads": [{ "email": "z@example.com", "name": "Z" }] }),
    )
    .await
    .assert_error(422, "invalid_request");
    api.post(&path, Some(&token), &json!({ "leads": [{ "email": 5 }] }))
        .await
        .assert_error(422, "invalid_request");
    api.post(&path, Some(&token), &json!({ "rows": [] }))
        .await
        .assert_error(422, "invalid_request");
    api.add_leads(&token, uuid::Uuid::now_v7(), leads(1))
        .await
        .assert_error(404, "not_found");
    assert_eq!(snapshot(&env).await, before);

    // Cancelled and completed campaigns refuse leads: 409.
    api.action_ok(&token, campaign, "cancel").await;
    let before = snapshot(&env).await;
    api.add_leads(&token, campaign, json!([{ "email": "after@example.com" }]))
        .await
        .assert_error(409, "conflict");
    assert_eq!(snapshot(&env).await, before);
    let done = api.create_campaign(&token, &[ip]).await;
    env.psql(&format!(
        "UPDATE campaigns SET status = 'completed' WHERE id = '{done}'"
    ))
    .await;
    let before_done = snapshot(&env).await;
    api.add_leads(&token, done, leads(1))
        .await
        .assert_error(409, "conflict");
    assert_eq!(snapshot(&env).await, before_done);
}

/// JSON is streamed like CSV: a body far over `api.max_body_bytes` imports in
/// batches (the limit for an import is `api.max_import_bytes`), duplicates
/// across batches are found; over `max_import_bytes` the batches already
/// written roll back; broken JSON after some batches rolls back too.
#[tokio::test]
async fn json_imports_stream_past_the_body_limit_and_roll_back_whole() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |config| {
        config.api.max_body_bytes = 16 * 1024;
        config.api.max_import_bytes = 1024 * 1024;
    })
    .await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    let path = format!("/v1/campaigns/{campaign}/leads");
    let lead = |n: usize| json!({ "email": format!("lead{n}@example.com"), "fields": { "first_name": format!("L{n}") } });

    // 5,000 leads (~290 kB, 5 batches) and, at the end, a repeat of lead 7.
    let mut rows: Vec<Value> = (0..5_000).map(lead).collect();
    rows.push(lead(7));
    let body = serde_json::to_vec(&json!({ "leads": rows })).unwrap();
    assert!(body.len() > 10 * 16 * 1024);
    let answer = api
        .raw(
            Method::POST,
            &path,
            Some(&token),
            Some("application/json"),
            Some(body),
        )
        .await;
    assert_eq!(answer.expect(200)["accepted"], 5_000);
    assert_eq!(rejected(&answer.body), [(5_000, "duplicate".to_string())]);
    let in_campaign = format!("SELECT count(*) FROM leads WHERE campaign_id = '{campaign}'");
    assert_eq!(count(&env, &in_campaign).await, 5_000);

    let before = snapshot(&env).await;
    let many: Vec<Value> = (10_000..30_000).map(lead).collect();
    let body = serde_json::to_vec(&json!({ "leads": many })).unwrap();
    assert!(body.len() > 1024 * 1024);
    api.raw(
        Method::POST,
        &path,
        Some(&token),
        Some("application/json"),
        Some(body),
    )
    .await
    .assert_error(413, "payload_too_large");
    assert_eq!(snapshot(&env).await, before);

    let mut broken =
        serde_json::to_vec(&json!({ "leads": (40_000..43_000).map(lead).collect::<Vec<_>>() }))
            .unwrap();
    broken.truncate(broken.len() - 2);
    broken.extend_from_slice(b",}]}");
    api.raw(
        Method::POST,
        &path,
        Some(&token),
        Some("application/json"),
        Some(broken),
    )
    .await
    .assert_error(400, "malformed_json");
    assert_eq!(snapshot(&env).await, before);

    api.raw(
        Method::POST,
        &path,
        Some(&token),
        Some("text/plain"),
        Some(b"a@b.c".to_vec()),
    )
    .await
    .assert_error(415, "unsupported_media_type");
    assert_eq!(snapshot(&env).await, before);
}
