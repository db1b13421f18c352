//! API scenario: warm-up schedules. Everyone reads them (built-ins first); only
//! the operator adds one; a taken name is 409 and every invalid body is refused
//! with nothing created. A new schedule is usable by IPs at once.

use serde_json::{Value, json};

use crate::support::api::{ApiServer, count};
use crate::support::{TestEnv, admin_token};

const BUILTINS: [&str; 3] = ["aggressive", "conservative", "transactional"];

fn names(body: &Value) -> Vec<String> {
    body["warmup_schedules"]
        .as_array()
        .expect("warmup_schedules")
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn schedules_are_listed_created_once_and_validated() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;

    let listed = api.get("/v1/warmup-schedules", Some(&token)).await;
    let body = listed.expect(200);
    assert_eq!(names(body), BUILTINS);
    let conservative = &body["warmup_schedules"][1];
    assert_eq!(conservative["builtin"], true);
    assert_eq!(conservative["days"], 30);
    assert_eq!(conservative["daily_volumes"][0], 50);
    assert_eq!(conservative["ceiling"], 175_000);

    let created = api
        .post(
            "/v1/warmup-schedules",
            Some(admin_token()),
            &json!({ "name": "a-slow_ramp", "daily_volumes": [10, 20, 40] }),
        )
        .await;
    let body = created.expect(201).clone();
    assert_eq!(body["name"], "a-slow_ramp");
    assert_eq!(body["daily_volumes"], json!([10, 20, 40]));
    assert_eq!(body["days"], 3);
    assert_eq!(body["ceiling"], 40);
    assert_eq!(body["builtin"], false);
    assert!(body["created_at"].is_string());
    let shown = api
        .get("/v1/warmup-schedules/a-slow_ramp", Some(&token))
        .await;
    assert_eq!(shown.expect(200), &body);
    // Built-ins first, then by name, for the admin too.
    let listed = api.get("/v1/warmup-schedules", Some(admin_token())).await;
    let mut expected: Vec<&str> = BUILTINS.to_vec();
    expected.push("a-slow_ramp");
    assert_eq!(names(listed.expect(200)), expected);

    let schedules = "SELECT count(*) FROM warmup_schedules";
    assert_eq!(count(&env, schedules).await, 4);
    for taken in ["a-slow_ramp", "conservative"] {
        api.post(
            "/v1/warmup-schedules",
            Some(admin_token()),
            &json!({ "name": taken, "daily_volumes": [1] }),
        )
        .await
        .assert_error(409, "conflict");
    }
    let refused = [
        json!({ "name": "", "daily_volumes": [1] }),
        json!({ "name": "Slow", "daily_volumes": [1] }),
        json!({ "name": "a b", "daily_volumes": [1] }),
        json!({ "name": "x".repeat(65), "daily_volumes": [1] }),
        json!({ "name": "a\r\nb", "daily_volumes": [1] }),
        json!({ "name": 5, "daily_volumes": [1] }),
        json!({ "name": "ok", "daily_volumes": [] }),
        json!({ "name": "ok", "daily_volumes": [0] }),
        json!({ "name": "ok", "daily_volumes": [10, -1] }),
        json!({ "name": "ok", "daily_volumes": [10_000_001] }),
        json!({ "name": "ok", "daily_volumes": [1.5] }),
        json!({ "name": "ok", "daily_volumes": ["10"] }),
        json!({ "name": "ok", "daily_volumes": vec![1; 366] }),
        json!({ "name": "ok", "daily_volumes": [1], "builtin": true }),
        json!({ "name": "ok" }),
        json!({ "daily_volumes": [1] }),
    ];
    for body in &refused {
        let answer = api
            .post("/v1/warmup-schedules", Some(admin_token()), body)
            .await;
        answer.assert_error(422, "invalid_request");
    }
    let one_too_many = api
        .post(
            "/v1/warmup-schedules",
            Some(admin_token()),
            &json!({ "name": "ok", "daily_volumes": vec![1; 366] }),
        )
        .await;
    assert!(
        one_too_many.message().contains("1 to 365"),
        "{}",
        one_too_many.message()
    );
    api.post_text("/v1/warmup-schedules", Some(admin_token()), "{\"name\":")
        .await
        .assert_error(400, "malformed_json");
    api.raw(
        reqwest::Method::POST,
        "/v1/warmup-schedules",
        Some(admin_token()),
        Some("text/plain"),
        Some(b"{}".to_vec()),
    )
    .await
    .assert_error(415, "unsupported_media_type");
    // Tenants read, but never create.
    api.post(
        "/v1/warmup-schedules",
        Some(&token),
        &json!({ "name": "mine", "daily_volumes": [1] }),
    )
    .await
    .assert_error(403, "forbidden");
    assert_eq!(
        count(&env, schedules).await,
        4,
        "refused requests created nothing"
    );
    // The biggest schedule the API allows fits.
    api.post(
        "/v1/warmup-schedules",
        Some(admin_token()),
        &json!({ "name": "year", "daily_volumes": vec![10_000_000; 365] }),
    )
    .await
    .expect(201);

    for missing in ["nope", "Not%20A%20Name"] {
        api.get(&format!("/v1/warmup-schedules/{missing}"), Some(&token))
            .await
            .assert_error(404, "not_found");
    }
    api.get("/v1/warmup-schedules", None)
        .await
        .assert_error(401, "unauthorized");

    // An IP can use it at once: day 1 of the ramp.
    let ip = api
        .add_ip_with(
            tenant,
            &json!({ "address": "127.0.0.2", "helo_name": "mta.acme.test", "warmup_schedule": "a-slow_ramp" }),
        )
        .await;
    let ip = ip.expect(201);
    assert_eq!(ip["warmup_daily_volume"], 10);
    assert_eq!(ip["allowance_today"], 10);
}
