//! API scenario: an IP's limits as operators steer and read them. Pause and
//! resume by hand (admin or owner, idempotent, a foreign id 404, a bad reason
//! refused and nothing changed); active hours at creation; and the IP view's
//! live fields — allowance, hourly quota, usage, health, state and the last
//! warm-up decision — computed from rows seeded straight into Postgres.
//!
//! Time: each IP here lives in an `Etc/GMT±N` zone where it is about noon now,
//! so the IP-local day and hour cannot roll over during the test.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::{ApiClient, ApiServer, control_events, count, snapshot};
use crate::support::{TestEnv, admin_token};

/// A timezone in which it is between 11:00 and 13:00 now.
async fn noon_timezone(env: &TestEnv) -> String {
    let rows = env
        .psql("SELECT extract(hour FROM now() AT TIME ZONE 'UTC')::int")
        .await;
    let utc_hour: i32 = rows[0].get(0);
    // Etc/GMT-k is UTC+k (POSIX signs are inverted).
    match 12 - utc_hour {
        0 => "UTC".to_string(),
        east if east > 0 => format!("Etc/GMT-{east}"),
        west => format!("Etc/GMT+{}", -west),
    }
}

async fn ip_of(api: &ApiClient, token: &str, ip: Uuid) -> Value {
    api.get(&format!("/v1/ips/{ip}"), Some(token))
        .await
        .expect(200)
        .clone()
}

async fn post_raw(
    api: &ApiClient,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> crate::support::api::Answer {
    let body = body.map(|b| b.as_bytes().to_vec());
    api.raw(Method::POST, path, Some(token), content_type, body)
        .await
}

async fn ip_status(env: &TestEnv, ip: Uuid) -> Vec<String> {
    env.psql(&format!(
        "SELECT status || '|' || coalesce(status_reason, '-') || '|' || coalesce(paused_until::text, '-')
                || '|' || rate_factor::text
         FROM smtp_ips WHERE id = '{ip}'"
    ))
    .await
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[tokio::test]
async fn ips_are_paused_and_resumed_by_hand() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (_, other_token) = api.create_tenant("other").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    env.psql(&format!(
        "UPDATE smtp_ips SET rate_factor = 0.5 WHERE id = '{ip}'"
    ))
    .await;
    let mut events = control_events(&env).await;
    let pause = format!("/v1/ips/{ip}/pause");
    let resume = format!("/v1/ips/{ip}/resume");

    // No body at all, admin token: the default reason.
    let answer = post_raw(api, &pause, admin_token(), None, None).await;
    let body = answer.expect(200);
    assert_eq!(body["status"], "paused");
    assert_eq!(body["status_reason"], "paused through the API");
    assert_eq!(body["state"], "paused");
    assert_eq!(body["state_reason"], "paused through the API");
    assert_eq!(body["paused_until"], Value::Null);
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("a control event")
        .unwrap();
    assert_eq!(
        event,
        json!({ "kind": "tenant_changed", "tenant_id": tenant.to_string() })
    );

    // An automatic pause's end is cleared by a pause by hand; the owner may
    // pause, with a reason; repeating it is harmless.
    env.psql(&format!(
        "UPDATE smtp_ips SET paused_until = now() + interval '1 hour' WHERE id = '{ip}'"
    ))
    .await;
    let shown = ip_of(api, &token, ip).await;
    assert!(shown["paused_until"].is_string(), "{shown:#}");
    assert!(
        shown["state_reason"].as_str().unwrap().contains("(until "),
        "{shown:#}"
    );
    for _ in 0..2 {
        let answer = api
            .post(
                &pause,
                Some(&token),
                &json!({ "reason": "  listed on a DNSBL " }),
            )
            .await;
        let body = answer.expect(200);
        assert_eq!(body["state"], "paused");
        assert_eq!(body["status_reason"], "listed on a DNSBL");
        assert_eq!(body["paused_until"], Value::Null);
    }
    assert_eq!(
        ip_status(&env, ip).await,
        ["paused|listed on a DNSBL|-|0.5"]
    );
    let listed = api.get("/v1/ips", Some(&token)).await;
    assert_eq!(listed.expect(200)["ips"][0]["state"], "paused");

    // Refused: foreign or unknown ids, bad reasons, bad bodies. Nothing changes.
    let before = (ip_status(&env, ip).await, snapshot(&env).await);
    for path in [&pause, &resume] {
        api.post(path, Some(&other_token), &json!({}))
            .await
            .assert_error(404, "not_found");
    }
    let unknown = Uuid::now_v7();
    for path in [
        format!("/v1/ips/{unknown}/pause"),
        format!("/v1/ips/{unknown}/resume"),
        "/v1/ips/not-a-uuid/pause".to_string(),
    ] {
        api.post(&path, Some(admin_token()), &json!({}))
            .await
            .assert_error(404, "not_found");
    }
    let refused = [
        json!({ "reason": "x".repeat(201) }),
        json!({ "reason": "line\nbreak" }),
        json!({ "reason": "tab\there" }),
        json!({ "reason": "nul\u{0}" }),
        json!({ "reason": "" }),
        json!({ "reason": "   " }),
        json!({ "reason": 5 }),
        json!({ "why": "x" }),
        json!([]),
    ];
    for body in &refused {
        api.post(&pause, Some(&token), body)
            .await
            .assert_error(422, "invalid_request");
    }
    api.post(&resume, Some(&token), &json!({ "reason": "x" }))
        .await
        .assert_error(422, "invalid_request");
    api.post_text(&pause, Some(&token), "{\"reason\":")
        .await
        .assert_error(400, "malformed_json");
    post_raw(api, &pause, &token, Some("text/plain"), Some("reason=x"))
        .await
        .assert_error(415, "unsupported_media_type");
    assert_eq!(
        (ip_status(&env, ip).await, snapshot(&env).await),
        before,
        "refused requests changed nothing"
    );

    // Resume: active, reason cleared, rate factor kept; idempotent; an empty
    // body with a JSON content type is fine too.
    for body in [Some(""), Some("{}"), None] {
        let content_type = body.map(|_| "application/json");
        let answer = post_raw(api, &resume, &token, content_type, body).await;
        let shown = answer.expect(200);
        assert_eq!(shown["status"], "active");
        assert_eq!(shown["status_reason"], Value::Null);
        assert_eq!(shown["state"], "sending");
        assert_eq!(shown["rate_factor"], 0.5);
    }
    assert_eq!(ip_status(&env, ip).await, ["active|-|-|0.5"]);
}

#[tokio::test]
async fn active_hours_are_validated_and_shape_the_day() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let timezone = noon_timezone(&env).await;

    let default = api.add_ip(tenant, "127.0.0.2").await;
    let shown = ip_of(api, &token, default).await;
    assert_eq!(shown["active_hours"], json!({ "start": 0, "end": 24 }));

    // Morning only: it is noon there, so the IP rests and this hour has no quota.
    let morning = api
        .add_ip_with(
            tenant,
            &json!({
                "address": "127.0.0.3", "helo_name": "mta3.acme.test",
                "timezone": timezone, "warmup_schedule": "conservative",
                "active_hours": { "start": 0, "end": 6 },
            }),
        )
        .await;
    let body = morning.expect(201);
    assert_eq!(body["active_hours"], json!({ "start": 0, "end": 6 }));
    assert_eq!(body["state"], "outside_active_hours");
    assert_eq!(body["hourly_quota"], 0);
    assert_eq!(body["allowance_today"], 50);
    let rows = env
        .psql(&format!(
            "SELECT active_hours_start::int, active_hours_end::int FROM smtp_ips WHERE id = '{}'",
            morning.id()
        ))
        .await;
    assert_eq!((rows[0].get::<_, i32>(0), rows[0].get::<_, i32>(1)), (0, 6));

    // Working hours around noon: 50 messages over 10 hours is 5 an hour.
    let day = api
        .add_ip_with(
            tenant,
            &json!({
                "address": "127.0.0.4", "helo_name": "mta4.acme.test",
                "timezone": timezone, "warmup_schedule": "conservative",
                "active_hours": { "start": 7, "end": 17 },
            }),
        )
        .await;
    let body = day.expect(201);
    assert_eq!(body["state"], "sending");
    assert_eq!(body["hourly_quota"], 5);

    let before = snapshot(&env).await;
    for hours in [
        json!({ "start": 18, "end": 8 }),
        json!({ "start": 5, "end": 5 }),
        json!({ "start": 24, "end": 24 }),
        json!({ "start": -1, "end": 5 }),
        json!({ "start": 0, "end": 25 }),
        json!({ "start": 0, "end": 0 }),
        json!({ "start": 1 }),
        json!({ "start": 1, "end": 2, "days": "mon" }),
        json!({ "start": 1.5, "end": 2 }),
        json!("08-18"),
    ] {
        let body = json!({
            "address": "127.0.0.9", "helo_name": "mta9.acme.test", "active_hours": hours,
        });
        let answer = api.add_ip_with(tenant, &body).await;
        answer.assert_error(422, "invalid_request");
    }
    assert_eq!(snapshot(&env).await, before, "refused IPs changed nothing");
}

#[tokio::test]
async fn ip_details_show_allowance_usage_health_and_warmup() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let timezone = noon_timezone(&env).await;
    api.post(
        "/v1/warmup-schedules",
        Some(admin_token()),
        &json!({ "name": "e2e-ramp", "daily_volumes": [240, 2400, 4800] }),
    )
    .await
    .expect(201);
    let answer = api
        .add_ip_with(
            tenant,
            &json!({
                "address": "127.0.0.2", "helo_name": "mta.acme.test",
                "timezone": timezone, "warmup_schedule": "e2e-ramp",
            }),
        )
        .await;
    let fresh = answer.expect(201).clone();
    let ip = answer.id();
    assert_eq!(fresh["allowance_today"], 240);
    assert_eq!(fresh["hourly_quota"], 10);
    assert_eq!(
        (fresh["sent_today"].clone(), fresh["sent_this_hour"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(fresh["rate_factor"], 1.0);
    assert_eq!(fresh["last_warmup_decision"], Value::Null);
    assert_eq!(fresh["health"]["status"], "healthy");
    assert_eq!(fresh["state"], "sending");

    // Day 2 at half rate: 2400 × 0.5 = 1200 today, 50 an hour.
    env.psql(&format!(
        "UPDATE smtp_ips SET warmup_day = 2, rate_factor = 0.5 WHERE id = '{ip}'"
    ))
    .await;
    // Usage: 50 this local hour, 30 two hours ago, 999 yesterday.
    let usage = |hours_ago: i32, reserved: i32| {
        format!(
            "INSERT INTO ip_hourly_usage (tenant_id, ip_id, hour, day, reserved)
             SELECT '{tenant}', '{ip}', (date_trunc('hour', l) - interval '{hours_ago} hours') AT TIME ZONE '{timezone}',
                    (l - interval '{hours_ago} hours')::date, {reserved}
             FROM (SELECT now() AT TIME ZONE '{timezone}' AS l) AS x
             ON CONFLICT (tenant_id, ip_id, hour) DO UPDATE SET reserved = EXCLUDED.reserved"
        )
    };
    env.psql(&usage(0, 50)).await;
    env.psql(&usage(2, 30)).await;
    env.psql(&usage(24, 999)).await;
    let shown = ip_of(api, &token, ip).await;
    assert_eq!(shown["allowance_today"], 1200);
    assert_eq!(shown["hourly_quota"], 50);
    assert_eq!(shown["warmup_daily_volume"], 2400);
    assert_eq!(shown["sent_this_hour"], 50);
    assert_eq!(shown["sent_today"], 80);
    assert_eq!(shown["state"], "exhausted", "{shown:#}");
    let why = shown["state_reason"].as_str().unwrap();
    assert!(why.contains("quota of 50"), "{why}");

    // The hourly cap of the config bounds the spread.
    let capped = ApiServer::start(&env, |c| c.limits.ip_hourly_cap = 40).await;
    let shown = ip_of(&capped.api, &token, ip).await;
    assert_eq!(shown["hourly_quota"], 40);

    // Room this hour again, then the whole day used up.
    env.psql(&usage(0, 10)).await;
    assert_eq!(ip_of(api, &token, ip).await["state"], "sending");
    env.psql(&usage(2, 1190)).await;
    let shown = ip_of(api, &token, ip).await;
    assert_eq!(shown["sent_today"], 1200);
    assert_eq!(shown["state"], "exhausted");
    let why = shown["state_reason"].as_str().unwrap();
    assert!(why.contains("allowance of 1200"), "{why}");

    // Health of the IP-local day; yesterday's disaster does not count.
    let stats = |days_ago: i32, sent: i32, bounced: i32, deferred: i32| {
        format!(
            "INSERT INTO ip_daily_stats (tenant_id, ip_id, day, sent, bounced, deferred)
             VALUES ('{tenant}', '{ip}', (now() AT TIME ZONE '{timezone}')::date - {days_ago},
                     {sent}, {bounced}, {deferred})
             ON CONFLICT (tenant_id, ip_id, day) DO UPDATE SET
                 sent = EXCLUDED.sent, bounced = EXCLUDED.bounced, deferred = EXCLUDED.deferred"
        )
    };
    env.psql(&stats(1, 10, 900, 0)).await;
    env.psql(&stats(0, 94, 6, 0)).await;
    let health = ip_of(api, &token, ip).await["health"].clone();
    assert_eq!(health["status"], "warning", "{health:#}");
    assert_eq!(
        (health["sent"].clone(), health["bounced"].clone()),
        (json!(94), json!(6))
    );
    assert_eq!(health["bounce_rate"], 0.06);
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .starts_with("bounce rate 6.00%")
    );
    env.psql(&stats(0, 40, 0, 60)).await;
    let health = ip_of(api, &token, ip).await["health"].clone();
    assert_eq!(health["status"], "critical", "{health:#}");
    assert_eq!(health["deferral_rate"], 0.6);
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .starts_with("deferral rate")
    );
    // Below health.min_sends (50) attempts nothing is judged.
    env.psql(&stats(0, 10, 10, 0)).await;
    assert_eq!(ip_of(api, &token, ip).await["health"]["status"], "healthy");

    // The latest warm-up decision.
    env.psql(&format!(
        "INSERT INTO warmup_history (tenant_id, ip_id, day, decision, from_day, to_day, sent, allowance, reason)
         VALUES ('{tenant}', '{ip}', '2026-01-01', 'hold', 1, 1, 100, 240, 'too little volume'),
                ('{tenant}', '{ip}', '2026-01-02', 'advance', 1, 2, 239, 240, 'healthy day')"
    ))
    .await;
    let shown = ip_of(api, &token, ip).await;
    assert_eq!(
        shown["last_warmup_decision"],
        json!({
            "day": "2026-01-02", "decision": "advance", "from_day": 1, "to_day": 2,
            "sent": 239, "allowance": 240, "reason": "healthy day",
        })
    );

    // The list shows the same, in one answer for every IP.
    let warm = api.add_ip(tenant, "127.0.0.3").await;
    let listed = api.get("/v1/ips", Some(&token)).await;
    let ips = listed.expect(200)["ips"].as_array().unwrap().clone();
    assert_eq!(ips.len(), 2);
    let listed_ip = ips
        .iter()
        .find(|i| i["id"] == json!(ip.to_string()))
        .unwrap();
    for field in [
        "allowance_today",
        "hourly_quota",
        "sent_today",
        "sent_this_hour",
        "health",
        "state",
        "last_warmup_decision",
        "active_hours",
        "rate_factor",
        "paused_until",
    ] {
        assert_eq!(listed_ip[field], shown[field], "{field}");
    }
    // A warm IP is unlimited unless the config gives warm IPs a volume.
    let warm_body = ips
        .iter()
        .find(|i| i["id"] == json!(warm.to_string()))
        .unwrap();
    assert_eq!(warm_body["allowance_today"], Value::Null);
    assert_eq!(warm_body["hourly_quota"], Value::Null);
    let limited = ApiServer::start(&env, |c| c.limits.warm_daily_volume = 4_800).await;
    let shown = ip_of(&limited.api, admin_token(), warm).await;
    assert_eq!(
        (
            shown["allowance_today"].clone(),
            shown["hourly_quota"].clone()
        ),
        (json!(4_800), json!(200))
    );
    assert_eq!(count(&env, "SELECT count(*) FROM smtp_ips").await, 2);
}
