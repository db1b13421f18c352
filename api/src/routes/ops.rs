//! Public operational routes: `/health` (the process answers), `/health/db`
//! (a Postgres round trip), `/health/queue` (a Redis PING), `/health/email` (an
//! SMTP route answers its greeting) and `/metrics` (Prometheus text). No token
//! needed.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
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
        .routes(routes!(health_email))
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

/// How long one route may take to greet.
const GREETING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// What `/health/email` found.
#[derive(Debug, Serialize, ToSchema)]
struct EmailHealth {
    /// Always `ok` (a failure answers 503).
    status: &'static str,
    /// One entry per `[[delivery.routes]]`, in order; empty when mail goes by MX.
    routes: Vec<RouteHealth>,
}

/// One fixed SMTP route and whether it greeted.
#[derive(Debug, Serialize, ToSchema)]
struct RouteHealth {
    /// The route's domain (`*` for every domain).
    domain: String,
    /// `host:port` asked.
    address: String,
    reachable: bool,
    /// The `220` line, when it greeted.
    #[serde(skip_serializing_if = "Option::is_none")]
    greeting: Option<String>,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// An SMTP route answers its greeting.
///
/// Every `[[delivery.routes]]` host is asked for its SMTP greeting (connect,
/// read the `220` line, `QUIT`): 200 with each route's result when at least one
/// greets, 503 when none does. Without fixed routes mail goes by MX and there
/// is no single host to ask: 200 with no routes.
#[utoipa::path(get, path = "/health/email", tag = "ops",
    responses(
        (status = 200, description = "At least one route greets (or none is fixed)", body = EmailHealth),
        (status = 503, description = "No route greets (`unavailable`)", body = ErrorBody),
    ))]
async fn health_email(State(state): State<AppState>) -> ApiResult<Json<EmailHealth>> {
    let routes = &state.config.delivery.routes;
    let checks = futures::future::join_all(
        routes
            .iter()
            .map(|route| greeting(route.host.clone(), route.port)),
    )
    .await;
    let mut results = Vec::with_capacity(routes.len());
    let mut failures = Vec::new();
    for (route, check) in routes.iter().zip(checks) {
        let address = format!("{}:{}", route.host, route.port);
        let (greeting, error) = match check {
            Ok(banner) => (Some(banner), None),
            Err(error) => {
                failures.push(format!("{address}: {error}"));
                (None, Some(error))
            }
        };
        results.push(RouteHealth {
            domain: route.domain.clone(),
            address,
            reachable: greeting.is_some(),
            greeting,
            error,
        });
    }
    if !routes.is_empty() && failures.len() == routes.len() {
        return Err(AppError::unavailable(
            "email",
            format!("no SMTP route reachable: {}", failures.join("; ")),
        ));
    }
    Ok(Json(EmailHealth {
        status: "ok",
        routes: results,
    }))
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
