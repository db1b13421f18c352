//! API scenario: a tenant creates campaigns. A valid one is stored as `draft` with
//! defaults; every invalid one (header injection, NUL, oversized fields, bad
//! addresses, foreign or unknown IPs, bad templates, unknown fields, malformed
//! JSON) gets its documented error and changes nothing.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::TestEnv;
use crate::support::api::{ApiServer, campaign_body, leads, snapshot};

#[tokio::test]
async fn campaigns_are_created_as_drafts_and_read_back_with_counts() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip1 = api.add_ip(tenant, "127.0.0.2").await;
    let ip2 = api.add_ip(tenant, "127.0.0.3").await;

    let answer = api
        .create_campaign_with(&token, &campaign_body(&[ip1, ip2]))
        .await;
    let created = answer.expect(201).clone();
    let id = answer.id();
    assert_eq!(created["status"], "draft");
    assert_eq!(created["priority"], 100);
    assert_eq!(created["from"], "hello@sender.example.com");
    assert_eq!(created["from_name"], "Ann from Sender");
    assert_eq!(created["ip_ids"], json!([ip1.to_string(), ip2.to_string()]));
    assert_eq!(created["daily_cap"], Value::Null);
    assert_eq!(created["started_at"], Value::Null);

    let mut body = campaign_body(&[ip2]);
    body["priority"] = json!(10);
    body["daily_cap"] = json!(500);
    body["send_window"] = json!({ "start": "09:00", "end": "17:30", "days": ["mon", "fri"], "timezone": "America/New_York" });
    body["html"] = Value::Null;
    let answer = api.create_campaign_with(&token, &body).await;
    let second = answer.expect(201);
    assert_eq!(second["priority"], 10);
    assert_eq!(second["daily_cap"], 500);
    assert_eq!(second["html"], Value::Null);
    assert_eq!(second["send_window"]["timezone"], "America/New_York");

    let shown = api.campaign(&token, id).await;
    let shown = shown.expect(200);
    assert_eq!(shown["name"], "Spring outreach");
    assert_eq!(shown["total"], 0);
    let counts = shown["counts"].as_object().unwrap();
    let keys: Vec<&str> = counts.keys().map(String::as_str).collect();
    for state in [
        "pending",
        "queued",
        "sending",
        "sent",
        "deferred",
        "bounced",
        "failed",
        "suppressed",
        "cancelled",
    ] {
        assert_eq!(counts[state], 0, "{state} in {keys:?}");
    }
    assert_eq!(counts.len(), 9);

    api.add_leads(&token, id, leads(3)).await.expect(200);
    api.action_ok(&token, id, "start").await;
    let shown = api.campaign(&token, id).await;
    let shown = shown.expect(200);
    assert_eq!(shown["status"], "running");
    assert_eq!(shown["counts"]["pending"], 3);
    assert_eq!(shown["total"], 3);
    assert!(shown["started_at"].is_string());
}

#[tokio::test]
async fn invalid_campaigns_are_refused_and_change_nothing() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (other, _) = api.create_tenant("other").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let foreign_ip = api.add_ip(other, "127.0.0.3").await;
    let unknown_ip = Uuid::now_v7();
    let before = snapshot(&env).await;

    let base = campaign_body(&[ip]);
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let refused: Vec<(&str, Value)> = vec![
        ("invalid from", with("from", json!("not-an-email"))),
        (
            "from without domain dot",
            with("from", json!("a@localhost")),
        ),
        (
            "CRLF in from",
            with("from", json!("a@b.com\r\nBcc: victim@x.com")),
        ),
        (
            "LF in from",
            with("from", json!("a@b.com\nBcc: victim@x.com")),
        ),
        (
            "CRLF in subject",
            with("subject", json!("Hi\r\nBcc: victim@x.com")),
        ),
        ("LF in subject", with("subject", json!("Hi\nthere"))),
        ("CR in subject", with("subject", json!("Hi\rthere"))),
        ("NUL in subject", with("subject", json!("Hi\u{0}there"))),
        ("CRLF in name", with("name", json!("Spring\r\nX: y"))),
        (
            "CRLF in from_name",
            with("from_name", json!("Ann\r\nBcc: x@y.com")),
        ),
        ("NUL in from_name", with("from_name", json!("Ann\u{0}"))),
        ("NUL in text", with("text", json!("Hello\u{0}"))),
        ("NUL in html", with("html", json!("<p>\u{0}</p>"))),
        ("empty name", with("name", json!(""))),
        ("empty subject", with("subject", json!(""))),
        ("empty text", with("text", json!(""))),
        ("long name", with("name", json!("n".repeat(201)))),
        ("long from_name", with("from_name", json!("n".repeat(201)))),
        ("long subject", with("subject", json!("s".repeat(999)))),
        (
            "long from",
            with("from", json!(format!("{}@example.com", "a".repeat(300)))),
        ),
        (
            "long text",
            with("text", json!("t".repeat(1024 * 1024 + 1))),
        ),
        ("no IPs", with("ip_ids", json!([]))),
        ("repeated IP", with("ip_ids", json!([ip, ip]))),
        ("foreign IP", with("ip_ids", json!([ip, foreign_ip]))),
        ("unknown IP", with("ip_ids", json!([unknown_ip]))),
        ("IP id not a UUID", with("ip_ids", json!(["127.0.0.2"]))),
        ("priority too high", with("priority", json!(1001))),
        ("priority negative", with("priority", json!(-1))),
        ("priority not a number", with("priority", json!("high"))),
        ("daily cap zero", with("daily_cap", json!(0))),
        (
            "bad window",
            with("send_window", json!({ "start": "25:00", "end": "10:00" })),
        ),
        (
            "window field",
            with(
                "send_window",
                json!({ "start": "09:00", "end": "10:00", "tz": "UTC" }),
            ),
        ),
        (
            "window timezone",
            with(
                "send_window",
                json!({ "start": "09:00", "end": "10:00", "timezone": "Mars/Base" }),
            ),
        ),
        (
            "window days",
            with(
                "send_window",
                json!({ "start": "09:00", "end": "10:00", "days": ["someday"] }),
            ),
        ),
        (
            "template syntax",
            with("subject", json!("Hi {{ first_name")),
        ),
        (
            "html template syntax",
            with("html", json!("<p>{% if %}</p>")),
        ),
        ("unknown field", with("bcc", json!("x@y.com"))),
        ("status given", with("status", json!("running"))),
        ("missing from", without("from")),
        ("missing ip_ids", without("ip_ids")),
    ];
    for (what, body) in refused {
        let answer = api.create_campaign_with(&token, &body).await;
        assert_eq!(
            (answer.status, answer.code()),
            (422, "invalid_request"),
            "{what}: {:#}",
            answer.body
        );
    }
    for (ip, what) in [(foreign_ip, "foreign"), (unknown_ip, "unknown")] {
        let answer = api
            .create_campaign_with(&token, &with("ip_ids", json!([ip])))
            .await;
        assert!(
            answer.message().contains(&ip.to_string()),
            "{what}: {}",
            answer.message()
        );
    }
    let answer = api
        .create_campaign_with(&token, &with("subject", json!("Hi\r\nBcc: x@y.com")))
        .await;
    assert!(answer.message().contains("subject"), "{}", answer.message());
    let answer = api
        .create_campaign_with(&token, &with("bcc", json!("x")))
        .await;
    assert!(
        answer.message().contains("unknown field"),
        "{}",
        answer.message()
    );

    for text in ["{", "{\"name\": \"x\",}", "{\"name\": \"x\"", "nul\u{0}"] {
        api.post_text("/v1/campaigns", Some(&token), text)
            .await
            .assert_error(400, "malformed_json");
    }
    assert_eq!(
        snapshot(&env).await,
        before,
        "refused requests changed nothing"
    );
}
