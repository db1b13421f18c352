//! Penguin Engine control API (DESIGN.md §8): axum, JSON, under `/v1`.
//!
//! - Two listeners (DESIGN.md §10): [`router`] builds the routes of one from an
//!   [`AppState`] — [`Routes::Operator`] for `api.listen` (`/v1/*`, `/metrics`,
//!   `/health/*`, `/openapi.json`, `/docs`), [`Routes::Public`] for
//!   `public.listen` (`/t/*`, `/u/*`), [`Routes::All`] when the operator shares
//!   one; each answers the JSON 404 for the other's paths.
//! - [`serve`](mod@serve): [`Listeners`] binds them, [`serve()`] runs both with
//!   a connection cap, a header-read timeout and an idle timeout each, until
//!   `shutdown` resolves (graceful: in-flight requests finish).
//! - [`email_health`]: the periodic SMTP check `/health/email` reports.
//! - [`error`]: [`AppError`], the one place errors become responses
//!   (`{"error": {"code", "message"}}`).
//! - [`auth`]: bearer tokens → admin or tenant ([`auth::Caller`]).
//! - [`extract`]: JSON body and path-id extractors that fail with [`AppError`].
//! - [`validate`]: pure checks of request fields.
//! - [`template_check`]: a new campaign's templates compiled and dry-run under
//!   the `[templates]` budget, off the runtime, a bounded number at once.
//! - [`csv_leads`]: leads from a streamed CSV body.
//! - [`campaign_steps`]: a campaign's follow-up steps: request and answer
//!   shapes, their validation and dry runs.
//! - [`campaign_rates`]: a campaign's `rates` and `eta`, pure arithmetic over
//!   its job counts and recent events; [`campaign_waiting`]: its
//!   `waiting_reason` and `next_send_at`.
//! - [`ip_view`]: an IP as the API shows it, with its allowance, quota, health
//!   and state computed by the engine's own arithmetic; [`shaping_view`]: the
//!   suspensions and slow-downs in force on its shaping units.
//! - [`metrics`]: metric names and the request-counting middleware;
//!   [`recorder`]: the node's registry with every histogram's buckets;
//!   [`process_metrics`]: `process_*` from `/proc`, read at each scrape.
//! - [`openapi`](mod@openapi): the OpenAPI 3 document's frame (info, bearer
//!   scheme, tags, which listener serves what, shared error answers);
//!   [`openapi()`] is the whole document of both listeners, built from the same
//!   `utoipa_axum` registrations [`router`] serves.
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
//!   campaign, IP and tenant), `suppressions` (list, add, remove), `replies`
//!   (a lead's reply stops its sequence), `webhooks` (a tenant's webhooks, their
//!   deliveries and attempts, a test event, a retry), `erasure` (an address
//!   erased on request: `DELETE /v1/leads?email=`, `POST /v1/erasures`),
//!   `audit` (`GET /v1/audit`, the audit log), `storage` (`GET
//!   /v1/stats/storage`, sizes per table and partition),
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
//! `complaints`, `replies`, `webhooks`, `erasure` (`DELETE /v1/leads`), and as the owner `tokens` and `ips` (list, show, pause,
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

pub mod access_log;
pub mod auth;
pub mod campaign_rates;
pub mod campaign_steps;
pub mod campaign_waiting;
pub mod csv_leads;
pub mod domain_kit;
pub mod domain_recheck;
pub mod domain_verify;
pub mod domain_view;
pub mod email_health;
pub mod error;
pub mod extract;
pub mod import_guard;
pub mod ip_view;
pub mod json_leads;
pub mod lead_rows;
pub mod metrics;
pub mod openapi;
pub mod process_metrics;
pub mod rate_limit;
pub mod recorder;
mod routes;
pub mod serve;
pub mod shaping_view;
pub mod template_check;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use metrics_exporter_prometheus::PrometheusRecorder;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

pub use error::AppError;
pub use serve::{Listeners, serve};

/// Everything a handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<penguin_config::Config>,
    /// The API's own pool (`database.api_max_connections`), never the
    /// engine's: no number of API requests can take the engine's connections.
    pub pg: deadpool_postgres::Pool,
    pub redis: penguin_engine::queue::RedisPool,
    /// This node's metrics registry: what its listeners record goes there
    /// (see [`metrics::recorded`]) and `/metrics` renders it. The owner runs
    /// its upkeep.
    pub metrics: Arc<PrometheusRecorder>,
    /// Request budgets, failed-authentication throttle and import slots of
    /// this node: `Arc::new(Limits::new(&config.api))`.
    pub limits: Arc<rate_limit::Limits>,
    /// The last periodic SMTP check (`/health/email`).
    pub email_health: email_health::EmailHealth,
    /// Sealer, key generation slots and DNS of the sending-domain routes.
    pub domains: domain_kit::DomainKit,
    /// The engine's clock: what a route says about the engine's timing (a
    /// campaign's `next_send_at`) is on the time the engine runs on.
    pub clock: penguin_engine::clock::SharedClock,
    /// The node's phase (`/health/ready`), moved by its engine.
    pub readiness: penguin_engine::readiness::Readiness,
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// `api.listen`: `/v1/*`, `/metrics`, `/health/*`, `/openapi.json`, `/docs`.
    Operator,
    /// `public.listen`: the signed links `/t/*` and `/u/*`, meant for the internet.
    Public,
    /// Every route on one listener (`public.share_api_listener`).
    All,
}

/// The operators' routes, each registered with its `#[utoipa::path]` documentation.
fn operator_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(routes::ops::routes())
        .merge(routes::docs::routes())
        .merge(routes::tenants::routes())
        .merge(routes::nodes::routes())
        .merge(routes::tokens::routes())
        .merge(routes::ips::routes())
        .merge(routes::domains::routes())
        .merge(routes::schedules::routes())
        .merge(routes::complaints::routes())
        .merge(routes::bounces::routes())
        .merge(routes::replies::routes())
        .merge(routes::campaigns::routes())
        .merge(routes::campaign_actions::routes())
        .merge(routes::campaign_patch::routes())
        .merge(routes::campaign_lists::routes())
        .merge(routes::campaign_retry::routes())
        .merge(routes::leads::routes())
        .merge(routes::events::routes())
        .merge(routes::events_stream::routes())
        .merge(routes::stats::routes())
        .merge(routes::suppressions::routes())
        .merge(routes::suppressions_global::routes())
        .merge(routes::webhooks::routes())
        .merge(routes::erasure::routes())
        .merge(routes::audit::routes())
        .merge(routes::storage::routes())
}

/// The public signed links, each registered with its documentation.
fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(routes::unsubscribe::routes())
        .merge(routes::tracking::routes())
}

/// The OpenAPI 3 document of every route of both listeners (what
/// `GET /openapi.json` answers); the public links say they are served on
/// `public.listen`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let public = public_routes().into_openapi();
    let public_paths: Vec<&str> = public.paths.paths.keys().map(String::as_str).collect();
    let doc = OpenApiRouter::<AppState>::with_openapi(openapi::base())
        .merge(operator_routes())
        .merge(public_routes())
        .into_openapi();
    openapi::finish(doc, &public_paths)
}

/// The routes of one listener: JSON fallbacks for unknown paths (the other
/// listener's included) and methods, the body limit (`api.max_body_bytes`),
/// the request timeout (`api.request_timeout_ms`), request metrics and
/// tracing. The budgets (`state.limits`) are enforced by the auth extractors
/// ([`auth`]).
pub fn router(state: AppState, which: Routes) -> Router {
    metrics::describe();
    let timeout = Duration::from_millis(state.config.api.request_timeout_ms);
    let routes = match which {
        Routes::Operator => operator_routes(),
        Routes::Public => public_routes(),
        Routes::All => operator_routes().merge(public_routes()),
    };
    let (routes, _) = routes.split_for_parts();
    let doc = openapi()
        .to_json()
        .expect("the OpenAPI document serializes");
    routes
        .fallback(|| async { AppError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { AppError::method_not_allowed() })
        .layer(Extension(routes::docs::Document(Bytes::from(doc))))
        .layer(DefaultBodyLimit::max(state.config.api.max_body_bytes))
        .layer(middleware::from_fn_with_state(timeout, request_timeout))
        .layer(middleware::from_fn(metrics::track))
        .layer(middleware::from_fn(access_log::log))
        // The span names the path, never the query: queries carry addresses
        // (`DELETE /v1/leads?email=`, suppression cursors).
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
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
