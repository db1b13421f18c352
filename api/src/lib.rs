//! Penguin Engine control API (DESIGN.md §8): axum, JSON, under `/v1`.
//!
//! - [`router`] builds the whole app from an [`AppState`]; [`serve`] runs it on a
//!   listener until `shutdown` resolves (graceful: in-flight requests finish).
//! - [`error`]: [`AppError`], the one place errors become responses
//!   (`{"error": {"code", "message"}}`).
//! - [`auth`]: bearer tokens → admin or tenant ([`auth::Caller`]).
//! - [`extract`]: JSON body and path-id extractors that fail with [`AppError`].
//! - [`validate`]: pure checks of request fields.
//! - [`csv_leads`]: leads from a streamed CSV body.
//! - [`campaign_rates`]: a campaign's `rates` and `eta`, pure arithmetic over
//!   its job counts and recent events.
//! - [`ip_view`]: an IP as the API shows it, with its allowance, quota, health
//!   and state computed by the engine's own arithmetic.
//! - [`metrics`]: metric names and the request-counting middleware.
//! - [`openapi`](mod@openapi): the OpenAPI 3 document's frame (info, bearer
//!   scheme, tags, shared error answers); [`openapi()`] is the whole document,
//!   built from the same `utoipa_axum` registrations [`router`] serves.
//! - [`rate_limit`]: token buckets for per-token request budgets and for failed
//!   authentications per client address (429 `rate_limited`).
//! - [`import_guard`]: lead imports' per-tenant concurrency slots and the
//!   minimum upload rate.
//! - `routes/`: one route group per file — `ops` (health, metrics), `docs`
//!   (`/openapi.json` and the `/docs` page), `tenants`, `tokens` (a tenant's API
//!   tokens: issue, list, revoke), `ips` (add, show, pause, resume), `schedules`
//!   (warm-up schedules), `complaints` (feedback loops, JSON or ARF), `campaigns`
//!   (create, read, lifecycle), `leads` (import, JSON or streamed CSV), `events`
//!   (a campaign's delivery events, paged), `stats` (per-day counts per
//!   campaign, IP and tenant), `suppressions` (list, add, remove),
//!   and the public signed links: `unsubscribe` (`/u/{token}`) and `tracking`
//!   (`/t/o/{token}` open pixel, `/t/c/{token}` click redirect). Each handler
//!   carries its `#[utoipa::path]` (path, method, body, answers, security), so
//!   what is served is documented.
//!
//! Handlers are thin: validate fully, call `penguin_engine::store`, map the result;
//! no SQL here. After every state change they publish a
//! [`penguin_engine::control::ControlEvent`] so engine nodes react at once.
//!
//! Tenant isolation, two walls: every tenant query filters `tenant_id = $1`
//! explicitly (a foreign id answers 404), and every route a tenant token calls —
//! `campaigns` (create, read, lifecycle), `leads`, `events`, `suppressions`,
//! `complaints`, and as the owner `tokens` and `ips` (list, show, pause,
//! resume) — runs its
//! queries in one transaction under the database role `penguin_tenant`
//! (`V5__api_role.sql`: not the owner, no superuser, no BYPASSRLS, granted only
//! what these routes need) with `app.current_tenant_id` set to the caller
//! (`routes::tenant_scope`, `penguin_engine::db::tenant_transaction`), so the
//! row-level-security policies of DESIGN.md §2 apply as well. On the owner's
//! role (their filters are the only wall): token authentication (it finds the
//! tenant), the admin's calls (they span tenants), the public signed links
//! (`unsubscribe`, `tracking`), which act for the tenant their signed token
//! names, and the timezone check of campaign creation (no tenant data).

pub mod auth;
pub mod campaign_rates;
pub mod csv_leads;
pub mod error;
pub mod extract;
pub mod import_guard;
pub mod ip_view;
pub mod json_leads;
pub mod lead_rows;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
mod routes;
pub mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

pub use error::AppError;

/// Everything a handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<penguin_config::Config>,
    /// The API's own pool (`database.api_max_connections`), never the
    /// engine's: no number of API requests can take the engine's connections.
    pub pg: deadpool_postgres::Pool,
    pub redis: deadpool_redis::Pool,
    /// Renders `/metrics`. The owner of the recorder runs its upkeep.
    pub metrics: PrometheusHandle,
    /// Request budgets, failed-authentication throttle and import slots of
    /// this node: `Arc::new(Limits::new(&config.api))`.
    pub limits: Arc<rate_limit::Limits>,
}

/// Every route, each registered with its `#[utoipa::path]` documentation.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(routes::ops::routes())
        .merge(routes::docs::routes())
        .merge(routes::tenants::routes())
        .merge(routes::nodes::routes())
        .merge(routes::tokens::routes())
        .merge(routes::ips::routes())
        .merge(routes::schedules::routes())
        .merge(routes::complaints::routes())
        .merge(routes::campaigns::routes())
        .merge(routes::leads::routes())
        .merge(routes::events::routes())
        .merge(routes::stats::routes())
        .merge(routes::suppressions::routes())
        .merge(routes::unsubscribe::routes())
        .merge(routes::tracking::routes())
}

/// The OpenAPI 3 document of every route [`router`] serves (what
/// `GET /openapi.json` answers).
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::finish(documented_routes().into_openapi())
}

/// The whole API: routes, `/openapi.json`, JSON fallbacks for unknown paths and
/// methods, the body limit (`api.max_body_bytes`), the request timeout
/// (`api.request_timeout_ms`), request metrics and tracing. The budgets
/// (`state.limits`) are enforced by the auth extractors ([`auth`]).
pub fn router(state: AppState) -> Router {
    metrics::describe();
    let timeout = Duration::from_millis(state.config.api.request_timeout_ms);
    let (routes, doc) = documented_routes().split_for_parts();
    let doc = openapi::finish(doc)
        .to_json()
        .expect("the OpenAPI document serializes");
    routes
        .fallback(|| async { AppError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { AppError::method_not_allowed() })
        .layer(Extension(routes::docs::Document(Bytes::from(doc))))
        .layer(DefaultBodyLimit::max(state.config.api.max_body_bytes))
        .layer(middleware::from_fn_with_state(timeout, request_timeout))
        .layer(middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Answers 503 `timeout` when a request outlives `timeout`. Dropping the handler
/// rolls back any open transaction.
async fn request_timeout(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => AppError::timeout().into_response(),
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish. Every request carries the peer's `ConnectInfo<SocketAddr>`
/// (what [`auth`] throttles failed authentications by): a serving loop that
/// replaces this one must insert it too.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "control API listening");
    }
    // Each request carries `ConnectInfo<SocketAddr>`: failed authentications
    // are throttled per client address (`auth`).
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
