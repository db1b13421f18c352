//! Public operational routes: `/health` (the process answers), `/health/db`
//! (a Postgres round trip), `/health/queue` (a Redis PING), and `/metrics`
//! (Prometheus text). No token needed.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, AppError, ErrorBody};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(health_db))
        .routes(routes!(health_queue))
        .routes(routes!(metrics))
}

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
struct Healthy {
    /// Always `ok`.
    status: &'static str,
}

fn ok() -> Json<Healthy> {
    Json(Healthy { status: "ok" })
}

/// The process answers.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "Alive", body = Healthy)))]
async fn health() -> Json<Healthy> {
    ok()
}

/// Postgres answers a round trip.
#[utoipa::path(get, path = "/health/db", tag = "ops",
    responses(
        (status = 200, description = "Postgres answers", body = Healthy),
        (status = 503, description = "Postgres is unreachable (`unavailable`)", body = ErrorBody),
    ))]
async fn health_db(State(state): State<AppState>) -> ApiResult<Json<Healthy>> {
    penguin_engine::store::tenants::ping(&state.pg)
        .await
        .map_err(|e| AppError::unavailable("database", e.to_string()))?;
    Ok(ok())
}

/// Redis answers a PING.
#[utoipa::path(get, path = "/health/queue", tag = "ops",
    responses(
        (status = 200, description = "Redis answers", body = Healthy),
        (status = 503, description = "Redis is unreachable (`unavailable`)", body = ErrorBody),
    ))]
async fn health_queue(State(state): State<AppState>) -> ApiResult<Json<Healthy>> {
    let unavailable = |e: &dyn std::fmt::Display| AppError::unavailable("redis", e.to_string());
    let mut conn = state.redis.get().await.map_err(|e| unavailable(&e))?;
    let _: String = deadpool_redis::redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(ok())
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Every metric of this process",
        body = String, content_type = "text/plain; version=0.0.4")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
