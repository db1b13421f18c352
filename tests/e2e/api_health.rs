//! API scenario: the public operational routes. `/health`, `/health/db`,
//! `/health/queue` and `/metrics` answer without a token; the probes answer 503
//! when Postgres or Redis is unreachable while `/health` stays 200; unknown paths
//! and methods get the JSON error shape too.

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
