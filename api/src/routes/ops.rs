//! Public operational routes: `/health` (the process answers), `/health/db`
//! (a Postgres round trip), `/health/queue` (a Redis PING), and `/metrics`
//! (Prometheus text). No token needed.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiResult, AppError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/health/db", get(health_db))
        .route("/health/queue", get(health_queue))
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

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
