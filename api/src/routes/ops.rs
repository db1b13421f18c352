//! Public operational routes: `/health` and `/health/live` (the process
//! answers: the liveness probe), `/health/ready` (the node takes work: the
//! readiness probe, 503 while starting, draining or stopping), `/health/db`
//! (a Postgres round trip), `/health/queue` (a Redis PING), `/health/email` (the
//! last periodic SMTP check, `crate::email_health`) and `/metrics` (Prometheus
//! text). No token needed; served on the operators' listener (`api.listen`) only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use penguin_engine::readiness::Phase;

use crate::AppState;
use crate::error::{ApiResult, AppError, ErrorBody};

/// 1 while `/health/ready` answers 200, else 0 (set at each scrape).
pub const NODE_READY: &str = "penguin_node_ready";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(health_live))
        .routes(routes!(health_ready))
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

/// Liveness: the process serves HTTP. It does not look at Postgres, Redis or
/// the node's phase: a node that drains, or waits for its database, is alive
/// and must not be restarted for it.
#[utoipa::path(get, path = "/health/live", tag = "ops",
    responses((status = 200, description = "The process serves", body = Healthy)))]
async fn health_live() -> Json<Healthy> {
    ok()
}

/// The readiness probe's answer when the node is not ready.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "draining"}))]
struct NotReady {
    /// `starting` (its first membership round has not placed it yet),
    /// `draining` (handing its partitions off) or `stopping` (shutting down).
    status: &'static str,
}

/// Readiness: the node has joined the cluster and takes work. 503 while it
/// starts, drains (`POST /v1/nodes/{id}/drain`) or stops, so a load balancer
/// sends its API traffic elsewhere meanwhile.
#[utoipa::path(get, path = "/health/ready", tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Healthy),
        (status = 503, description = "Starting, draining or stopping", body = NotReady),
    ))]
async fn health_ready(State(state): State<AppState>) -> axum::response::Response {
    match state.readiness.phase() {
        Phase::Ready => ok().into_response(),
        phase => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(NotReady {
                status: phase.as_str(),
            }),
        )
            .into_response(),
    }
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

/// What the last periodic SMTP check found.
#[derive(Debug, Serialize, ToSchema)]
struct EmailHealth {
    /// Always `ok` (a failure answers 503).
    status: &'static str,
    /// When the check this reports finished (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    checked_at: time::OffsetDateTime,
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

/// An SMTP route answered its greeting at the last periodic check.
///
/// One background task per node asks every `[[delivery.routes]]` host for its
/// SMTP greeting (connect, read the `220` line, `QUIT`) at start and every
/// `api.email_health_interval_ms`; this route reports the last result and when
/// it was taken, and never opens a connection itself. 200 with each route's
/// result when at least one greeted, 503 when none did or before the first
/// check has finished. Without fixed routes mail goes by MX and there is no
/// single host to ask: 200 with no routes.
#[utoipa::path(get, path = "/health/email", tag = "ops",
    responses(
        (status = 200, description = "At least one route greeted (or none is fixed)", body = EmailHealth),
        (status = 503, description = "No route greeted, or no check has finished yet (`unavailable`)", body = ErrorBody),
    ))]
async fn health_email(State(state): State<AppState>) -> ApiResult<Json<EmailHealth>> {
    let Some(check) = state.email_health.last() else {
        return Err(AppError::unavailable_because(
            "email unavailable: the first SMTP check has not finished yet",
            "no check yet",
        ));
    };
    let mut failures = Vec::new();
    let routes: Vec<RouteHealth> = check
        .routes
        .iter()
        .map(|route| {
            let (greeting, error) = match &route.greeting {
                Ok(banner) => (Some(banner.clone()), None),
                Err(error) => {
                    failures.push(format!("{}: {error}", route.address));
                    (None, Some(error.clone()))
                }
            };
            RouteHealth {
                domain: route.domain.clone(),
                address: route.address.clone(),
                reachable: greeting.is_some(),
                greeting,
                error,
            }
        })
        .collect();
    if !routes.is_empty() && failures.len() == routes.len() {
        let checked_at = check
            .checked_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        return Err(AppError::unavailable_because(
            format!("email unavailable: no SMTP route greeted at the check of {checked_at}"),
            failures.join("; "),
        ));
    }
    Ok(Json(EmailHealth {
        status: "ok",
        checked_at: check.checked_at,
        routes,
    }))
}

/// The API pool's gauges (`pool="api"`), with the current recorder.
fn api_pool_gauges(status: &deadpool_postgres::Status) {
    use penguin_actors::metrics_node::{DB_POOL_CONNECTIONS, DB_POOL_MAX, DB_POOL_WAITING};
    let in_use = status.size.saturating_sub(status.available) as f64;
    metrics::gauge!(DB_POOL_CONNECTIONS, "pool" => "api", "state" => "in_use").set(in_use);
    metrics::gauge!(DB_POOL_CONNECTIONS, "pool" => "api", "state" => "idle")
        .set(status.available as f64);
    metrics::gauge!(DB_POOL_MAX, "pool" => "api").set(status.max_size as f64);
    metrics::gauge!(DB_POOL_WAITING, "pool" => "api").set(status.waiting as f64);
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Every metric of this node",
        body = String, content_type = "text/plain; version=0.0.4")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Read at scrape time: the process' numbers and the API's own pool (the
    // engine's pools are set by its Gauges actor).
    metrics::with_local_recorder(state.metrics.as_ref(), || {
        crate::process_metrics::record();
        api_pool_gauges(&state.pg.status());
        let ready = state.readiness.phase() == Phase::Ready;
        metrics::gauge!(NODE_READY).set(if ready { 1.0 } else { 0.0 });
    });
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.handle().render(),
    )
}
