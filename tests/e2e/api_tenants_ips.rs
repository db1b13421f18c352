//! API scenario: the operator creates tenants and their SMTP IPs. The tenant
//! token is returned once and stored only as its sha256; IPs are validated
//! (address, HELO name, schedule, timezone, unique address) and shown with their
//! warm-up position and today's volume. Every refused request changes nothing.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::api::{ApiServer, control_events, count, snapshot};
use crate::support::{TestEnv, admin_token};

#[tokio::test]
async fn tenants_are_created_with_a_hashed_token() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |config| config.api.max_body_bytes = 4_096).await;
    let api = &server.api;
    let mut events = control_events(&env).await;

    let answer = api
        .post(
            "/v1/tenants",
            Some(admin_token()),
            &json!({ "name": "Acme Corp" }),
        )
        .await;
    let body = answer.expect(201).clone();
    let id = answer.id();
    assert_eq!(body["name"], "Acme Corp");
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("pt_") && token.len() == 46, "{token}");

    // Only the token's sha256 is stored.
    let hashed = format!(
        "SELECT count(*) FROM api_tokens WHERE tenant_id = '{id}'
           AND token_hash = sha256(convert_to('{token}', 'UTF8'))"
    );
    assert_eq!(count(&env, &hashed).await, 1);
    assert_eq!(count(&env, "SELECT count(*) FROM api_tokens").await, 1);
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event")
        .unwrap();
    assert_eq!(
        event,
        json!({ "kind": "tenant_changed", "tenant_id": id.to_string() })
    );
    // The token works at once.
    assert_eq!(api.get("/v1/ips", Some(token)).await.status, 200);

    let before = snapshot(&env).await;
    let refused: Vec<(Value, u16, &str)> = vec![
        (json!({ "name": "" }), 422, "invalid_request"),
        (json!({ "name": "   " }), 422, "invalid_request"),
        (json!({ "name": "a\r\nb" }), 422, "invalid_request"),
        (json!({ "name": "a\nb" }), 422, "invalid_request"),
        (json!({ "name": "a\u{0}b" }), 422, "invalid_request"),
        (json!({ "name": "x".repeat(201) }), 422, "invalid_request"),
        (
            json!({ "name": "ok", "plan": "pro" }),
            422,
            "invalid_request",
        ),
        (json!({ "name": 5 }), 422, "invalid_request"),
        (json!({}), 422, "invalid_request"),
        (
            json!({ "name": "x".repeat(5_000) }),
            413,
            "payload_too_large",
        ),
    ];
    for (body, status, code) in refused {
        let answer = api.post("/v1/tenants", Some(admin_token()), &body).await;
        answer.assert_error(status, code);
    }
    let unknown = api
        .post(
            "/v1/tenants",
            Some(admin_token()),
            &json!({ "name": "ok", "plan": "pro" }),
        )
        .await;
    assert!(
        unknown.message().contains("unknown field"),
        "{}",
        unknown.message()
    );
    for text in ["{\"name\":", "not json", "", "{\"name\": \"a\"} trailing"] {
        api.post_text("/v1/tenants", Some(admin_token()), text)
            .await
            .assert_error(400, "malformed_json");
    }
    api.raw(
        reqwest::Method::POST,
        "/v1/tenants",
        Some(admin_token()),
        Some("text/plain"),
        Some(b"{\"name\":\"a\"}".to_vec()),
    )
    .await
    .assert_error(415, "unsupported_media_type");
    assert_eq!(
        snapshot(&env).await,
        before,
        "refused requests changed nothing"
    );
}

#[tokio::test]
async fn ips_are_validated_and_shown_with_their_warmup() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (other, _) = api.create_tenant("other").await;

    let answer = api
        .add_ip_with(
            tenant,
            &json!({
                "address": "127.0.0.2",
                "helo_name": "MTA1.Acme.test",
                "warmup_schedule": "conservative",
                "timezone": "Europe/Paris",
            }),
        )
        .await;
    let ip = answer.expect(201).clone();
    let ip_id = answer.id();
    assert_eq!(ip["tenant_id"], json!(tenant.to_string()));
    assert_eq!(ip["address"], "127.0.0.2");
    assert_eq!(ip["helo_name"], "mta1.acme.test");
    assert_eq!(ip["status"], "active");
    assert_eq!(ip["warmup_schedule"], "conservative");
    assert_eq!(ip["warmup_day"], 1);
    assert_eq!(ip["warmup_daily_volume"], 50);
    assert_eq!(ip["timezone"], "Europe/Paris");
    assert_eq!(ip["sent_today"], 0);

    let warm = api
        .add_ip_with(
            tenant,
            &json!({ "address": "::1", "helo_name": "mta2.acme.test" }),
        )
        .await;
    let warm_body = warm.expect(201);
    assert_eq!(warm_body["warmup_schedule"], Value::Null);
    assert_eq!(warm_body["warmup_daily_volume"], Value::Null);
    assert_eq!(warm_body["timezone"], "UTC");
    assert_eq!(warm_body["address"], "::1");

    // Today's volume is what the IP reserved on its own local day.
    env.psql(&format!(
        "INSERT INTO ip_hourly_usage (tenant_id, ip_id, hour, day, reserved)
         SELECT '{tenant}', '{ip_id}', date_trunc('hour', l) AT TIME ZONE 'Europe/Paris' - d * interval '1 day',
                l::date - d, r
         FROM (SELECT now() AT TIME ZONE 'Europe/Paris' AS l) AS x,
              (VALUES (0, 7), (1, 99)) AS v(d, r)"
    ))
    .await;
    let shown = api.get(&format!("/v1/ips/{ip_id}"), Some(&token)).await;
    assert_eq!(shown.expect(200)["sent_today"], 7);
    env.psql(&format!(
        "UPDATE smtp_ips SET warmup_day = 500 WHERE id = '{ip_id}'"
    ))
    .await;
    let past_end = api
        .get(&format!("/v1/ips/{ip_id}"), Some(admin_token()))
        .await;
    assert_eq!(past_end.expect(200)["warmup_daily_volume"], 175_000);

    let before = snapshot(&env).await;
    let base = json!({ "address": "127.0.0.9", "helo_name": "mta9.acme.test" });
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let refused: Vec<(Value, u16, &str)> = vec![
        (with("address", json!("999.1.1.1")), 422, "invalid_request"),
        (
            with("address", json!("mta.acme.test")),
            422,
            "invalid_request",
        ),
        (with("address", json!("0.0.0.0")), 422, "invalid_request"),
        (with("address", json!("127.0.0.2")), 409, "conflict"),
        (
            with("helo_name", json!("not a host")),
            422,
            "invalid_request",
        ),
        (
            with("helo_name", json!("localhost")),
            422,
            "invalid_request",
        ),
        (
            with("helo_name", json!("mta.acme.test\r\nX: y")),
            422,
            "invalid_request",
        ),
        (
            with("helo_name", json!(format!("{}.test", "a".repeat(64)))),
            422,
            "invalid_request",
        ),
        (
            with("warmup_schedule", json!("nope")),
            422,
            "invalid_request",
        ),
        (
            with("warmup_schedule", json!("Bad Name")),
            422,
            "invalid_request",
        ),
        (
            with("timezone", json!("Mars/Olympus")),
            422,
            "invalid_request",
        ),
        (
            with("timezone", json!("UTC'; DROP TABLE x")),
            422,
            "invalid_request",
        ),
        (with("pool", json!("x")), 422, "invalid_request"),
    ];
    for (body, status, code) in refused {
        let answer = api.add_ip_with(tenant, &body).await;
        answer.assert_error(status, code);
    }
    // The same address for another tenant: an address belongs to one tenant only.
    api.add_ip_with(other, &with("address", json!("127.0.0.2")))
        .await
        .assert_error(409, "conflict");
    // An unknown tenant.
    api.add_ip_with(uuid::Uuid::now_v7(), &base)
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        snapshot(&env).await,
        before,
        "refused requests changed nothing"
    );
    assert_eq!(count(&env, "SELECT count(*) FROM smtp_ips").await, 2);

    let listed = api.get("/v1/ips", Some(&token)).await;
    let ips = listed.expect(200)["ips"].as_array().unwrap().clone();
    assert_eq!(ips.len(), 2);
    assert_eq!(ips[0]["id"], json!(ip_id.to_string()));
    api.get(
        &format!("/v1/ips/{}", uuid::Uuid::now_v7()),
        Some(admin_token()),
    )
    .await
    .assert_error(404, "not_found");
}
