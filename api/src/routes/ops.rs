//! Public operational routes: `/health` (the process answers), `/health/db`
//! (a Postgres round trip), `/health/queue` (a Redis PING), `/health/email` (an
//! SMTP route answers its greeting) and `/metrics` (Prometheus text). No token
//! needed.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::AppState;
use crate::error::{ApiResult, AppError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/health/db", get(health_db))
        .route("/health/queue", get(health_queue))
        .route("/health/email", get(health_email))
        .route("/metrics", get(metrics))
}

fn ok() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn health() -> Json<Value> {
    ok()
}

async fn health_db(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    penguin_engine::store::tenants::ping(&state.pg)
        .await
        .map_err(|e| AppError::unavailable("database", e.to_string()))?;
    Ok(ok())
}

async fn health_queue(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let unavailable = |e: &dyn std::fmt::Display| AppError::unavailable("redis", e.to_string());
    let mut conn = state.redis.get().await.map_err(|e| unavailable(&e))?;
    let _: String = deadpool_redis::redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(ok())
}

/// How long one route may take to greet.
const GREETING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Every `[[delivery.routes]]` host is asked for its SMTP greeting (connect, read
/// the `220` line, `QUIT`). 200 with each route's result when at least one
/// greets; 503 `unavailable` naming the failures when none does. Without fixed
/// routes mail goes by MX and there is no single host to ask: 200 with no routes.
async fn health_email(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let routes = &state.config.delivery.routes;
    let checks = futures::future::join_all(
        routes
            .iter()
            .map(|route| greeting(route.host.clone(), route.port)),
    )
    .await;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (route, check) in routes.iter().zip(checks) {
        let address = format!("{}:{}", route.host, route.port);
        match check {
            Ok(banner) => results.push(json!({
                "domain": route.domain, "address": address, "reachable": true, "greeting": banner,
            })),
            Err(error) => {
                failures.push(format!("{address}: {error}"));
                results.push(json!({
                    "domain": route.domain, "address": address, "reachable": false, "error": error,
                }));
            }
        }
    }
    if !routes.is_empty() && failures.len() == routes.len() {
        return Err(AppError::unavailable(
            "email",
            format!("no SMTP route reachable: {}", failures.join("; ")),
        ));
    }
    Ok(Json(json!({ "status": "ok", "routes": results })))
}

/// The first line an SMTP server sends, if it is a `220` greeting.
async fn greeting(host: String, port: u16) -> Result<String, String> {
    let check = async {
        let stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading the greeting: {e}"))?;
        let line = line.trim_end().to_string();
        if !line.starts_with("220") {
            return Err(format!("no 220 greeting: {line:?}"));
        }
        let _ = reader.get_mut().write_all(b"QUIT\r\n").await;
        Ok(line)
    };
    tokio::time::timeout(GREETING_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err("no greeting in time".into()))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
