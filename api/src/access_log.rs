//! The access log: one `info` event per `/v1` request, target
//! `penguin_api::access`, after it was answered: method, route template
//! (`/v1/campaigns/{id}`, never the raw path or query, which carry tenant data),
//! status and milliseconds. Headers are not logged, so neither is the bearer
//! token. Probes and `/metrics` are left out: scraped every few seconds, they
//! would drown the rest.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Middleware: logs each `/v1` request once answered.
pub async fn log(req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(req).await;
    tracing::info!(
        target: "penguin_api::access",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}
