//! API scenario: the public operational routes. `/health`, `/health/db`,
//! `/health/queue` and `/metrics` answer without a token; the probes answer 503
//! when Postgres or Redis is unreachable while `/health` stays 200; unknown paths
//! and methods get the JSON error shape too. `/health/email` reports the last
//! periodic greeting of each fixed SMTP route, with when it was taken, and no
//! number of GETs opens an SMTP connection.

use std::net::SocketAddr;
use std::time::Duration;

use penguin_config::Route;
use penguin_engine::sink::{Sink, SinkConfig};
use reqwest::Method;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::support::api::{Answer, ApiClient, ApiServer};
use crate::support::rig::series;
use crate::support::{TestEnv, wait_for};

#[tokio::test]
async fn health_probes_and_metrics_answer_without_a_token() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;

    for path in ["/health", "/health/db", "/health/queue"] {
        let answer = api.get(path, None).await;
        assert_eq!(answer.expect(200), &json!({ "status": "ok" }), "{path}");
    }
    let metrics = api.get("/metrics", None).await;
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.content_type, "text/plain; version=0.0.4");
    // The server's own registry: exactly the probes above, whatever the tests
    // running beside this one ask of theirs.
    let page = metrics.body.as_str().unwrap_or_default();
    for path in ["/health", "/health/db", "/health/queue"] {
        let name =
            format!("penguin_api_requests_total{{method=\"GET\",route=\"{path}\",status=\"2xx\"}}");
        assert_eq!(series(page, &name), Some(1.0), "{name}:\n{page}");
    }

    api.get("/v1/nope", None)
        .await
        .assert_error(404, "not_found");
    api.raw(Method::DELETE, "/health", None, None, None)
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn probes_answer_503_when_backends_are_down() {
    let env = TestEnv::start().await;
    let mut config = env.config.clone();
    // Nothing listens on port 1 of loopback: connections are refused at once.
    config.database.url = "postgres://postgres@127.0.0.1:1/nothing".into();
    config.database.acquire_timeout_ms = 1_000;
    config.redis.url = "redis://127.0.0.1:1".into();
    let pg = penguin_engine::db::pg_pool(&config.database).expect("pool");
    let redis = penguin_engine::queue::redis_pool(&config.redis).expect("pool");
    let server = ApiServer::start_on(config, pg, redis).await;
    let api = &server.api;

    assert_eq!(api.get("/health", None).await.status, 200);
    api.get("/health/db", None)
        .await
        .assert_error(503, "unavailable");
    api.get("/health/queue", None)
        .await
        .assert_error(503, "unavailable");
}

fn route(domain: &str, port: u16) -> Route {
    Route {
        domain: domain.into(),
        host: "127.0.0.1".into(),
        port,
    }
}

/// `/health/email` once its first periodic check has finished (the first
/// answers are 503 until then).
async fn first_email_check(api: &ApiClient) -> Answer {
    wait_for("the first SMTP check", Duration::from_secs(20), || async {
        let answer = api.get("/health/email", None).await;
        let first = answer.status != 503 || !answer.message().contains("not finished");
        first.then_some(answer)
    })
    .await
}

#[tokio::test]
async fn health_email_reports_the_last_periodic_check_and_dials_nothing() {
    let env = TestEnv::start().await;
    let sink = Sink::start(SinkConfig::new(SocketAddr::from(([127, 0, 0, 1], 0))))
        .await
        .expect("sink starts");
    let port = sink.smtp_addr().port();

    // One route greets, one is refused (nothing listens on port 1): still 200,
    // with each route's result and when it was checked. A long interval: the
    // check at start is the only one.
    let server = ApiServer::start(&env, |config| {
        config.delivery.routes = vec![route("*", port), route("dead.test", 1)];
        config.api.email_health_interval_ms = 3_600_000;
    })
    .await;
    let answer = first_email_check(&server.api).await;
    let body = answer.expect(200).clone();
    assert_eq!(body["status"], "ok");
    let checked_at = body["checked_at"].as_str().expect("checked_at").to_string();
    time::OffsetDateTime::parse(&checked_at, &Rfc3339).expect("RFC 3339");
    let routes = body["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0]["reachable"], true, "{body}");
    assert!(routes[0]["greeting"].as_str().unwrap().starts_with("220"));
    assert_eq!(routes[0]["address"], format!("127.0.0.1:{port}"));
    assert_eq!(routes[1]["reachable"], false, "{body}");
    assert!(!routes[1]["error"].as_str().unwrap().is_empty());

    // Many GETs: the same report, and not one SMTP connection more.
    let dialled = sink.stats().connections;
    assert_eq!(dialled, 1, "the check at start greets the sink once");
    let gets = futures::future::join_all((0..200).map(|_| server.api.get("/health/email", None)));
    for answer in gets.await {
        assert_eq!(answer.expect(200)["checked_at"], checked_at.as_str());
    }
    assert_eq!(
        sink.stats().connections,
        dialled,
        "200 GETs of /health/email opened SMTP connections"
    );
    println!("200 GETs of /health/email: {dialled} SMTP connection (the periodic check's)");

    // A short interval: the report moves on, one round after another.
    let server = ApiServer::start(&env, |config| {
        config.delivery.routes = vec![route("*", port)];
        config.api.email_health_interval_ms = 100;
    })
    .await;
    let first = first_email_check(&server.api).await.expect(200)["checked_at"].clone();
    wait_for("a later check", Duration::from_secs(20), || async {
        let answer = server.api.get("/health/email", None).await;
        (answer.expect(200)["checked_at"] != first).then_some(())
    })
    .await;

    // No route greets: 503, saying when it was checked.
    let server = ApiServer::start(&env, |config| {
        config.delivery.routes = vec![route("*", 1)];
    })
    .await;
    let answer = first_email_check(&server.api).await;
    answer.assert_error(503, "unavailable");
    assert!(
        answer
            .message()
            .contains("no SMTP route greeted at the check of "),
        "{}",
        answer.message()
    );

    // Mail by MX only: nothing fixed to ask.
    let server = ApiServer::start(&env, |config| config.delivery.routes.clear()).await;
    let answer = first_email_check(&server.api).await;
    let body = answer.expect(200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["routes"], json!([]));
}
