//! API scenario: the public operational routes. `/health`, `/health/db`,
//! `/health/queue` and `/metrics` answer without a token; the probes answer 503
//! when Postgres or Redis is unreachable while `/health` stays 200; unknown paths
//! and methods get the JSON error shape too. `/health/email` asks each fixed
//! SMTP route for its greeting.

use std::net::SocketAddr;

use penguin_config::Route;
use penguin_engine::sink::{Sink, SinkConfig};
use reqwest::Method;
use serde_json::json;

use crate::support::TestEnv;
use crate::support::api::ApiServer;

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

#[tokio::test]
async fn health_email_asks_each_smtp_route_for_its_greeting() {
    let env = TestEnv::start().await;
    let sink = Sink::start(SinkConfig::new(SocketAddr::from(([127, 0, 0, 1], 0))))
        .await
        .expect("sink starts");
    let port = sink.smtp_addr().port();

    // One route greets, one is refused (nothing listens on port 1): still 200,
    // with each route's result.
    let server = ApiServer::start(&env, |config| {
        config.delivery.routes = vec![route("*", port), route("dead.test", 1)];
    })
    .await;
    let answer = server.api.get("/health/email", None).await;
    let body = answer.expect(200);
    assert_eq!(body["status"], "ok");
    let routes = body["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0]["reachable"], true, "{body}");
    assert!(routes[0]["greeting"].as_str().unwrap().starts_with("220"));
    assert_eq!(routes[0]["address"], format!("127.0.0.1:{port}"));
    assert_eq!(routes[1]["reachable"], false, "{body}");
    assert!(!routes[1]["error"].as_str().unwrap().is_empty());

    // No route greets: 503.
    let server = ApiServer::start(&env, |config| {
        config.delivery.routes = vec![route("*", 1)];
    })
    .await;
    server
        .api
        .get("/health/email", None)
        .await
        .assert_error(503, "unavailable");

    // Mail by MX only: nothing fixed to ask.
    let server = ApiServer::start(&env, |config| config.delivery.routes.clear()).await;
    let answer = server.api.get("/health/email", None).await;
    assert_eq!(answer.expect(200), &json!({ "status": "ok", "routes": [] }));
}
