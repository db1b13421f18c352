//! The API's metrics, declared in one place, and the middleware recording them.
//!
//! Labels come from bounded sets only: the method (a fixed list or `other`), the
//! route *template* (`/v1/campaigns/{id}`, or `unmatched`), the status class.

use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{
    Recorder, Unit, counter, describe_counter, describe_gauge, describe_histogram, histogram,
};

/// Requests answered, by `method`, `route`, `status` (`2xx`, `4xx`, …).
pub const REQUESTS_TOTAL: &str = "penguin_api_requests_total";
/// Time to answer a request, by `method`, `route` (a histogram).
pub const REQUEST_DURATION_SECONDS: &str = "penguin_api_request_duration_seconds";
/// Bucket bounds of [`REQUEST_DURATION_SECONDS`]: 1 ms to 10 s.
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Requests refused by a protective limit, by `limit`: `auth_failures` (the
/// address failed to authenticate too often), `token_budget`, `token_cap`,
/// `import_slots`, `upload_rate`.
pub const LIMIT_REFUSALS_TOTAL: &str = "penguin_api_limit_refusals_total";

/// Connections refused at accept because the listener had `max_connections`
/// open, by `listener` (`api`, `public`, `shared`).
pub const CONNECTIONS_REFUSED_TOTAL: &str = "penguin_http_connections_refused_total";
/// Connections closed by the server for taking too long, by `listener` and
/// `reason`: `header_read` (headers not in within the header-read timeout),
/// `no_request` (no request begun within it), `idle` (no request in flight for
/// the idle timeout).
pub const CONNECTIONS_TIMED_OUT_TOTAL: &str = "penguin_http_connections_timed_out_total";
/// Connections open now, by `listener`.
pub const CONNECTIONS_OPEN: &str = "penguin_http_connections_open";

/// Runs `future` with `recorder` (the node's registry) as the metrics recorder
/// of each of its polls, on the polling thread for the poll's duration: what a
/// listener and the connections it spawns (each wrapped too) record — this
/// module's middleware, the limits, the connection counters — goes to the node
/// that served them, not to the process-wide recorder.
pub async fn recorded<F: Future>(
    recorder: Arc<dyn Recorder + Send + Sync>,
    future: F,
) -> F::Output {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        let _node = metrics::set_default_local_recorder(recorder.as_ref());
        future.as_mut().poll(cx)
    })
    .await
}

/// Registers descriptions with the current recorder (the node's, inside [`recorded`]).
pub fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "HTTP requests answered by the control API"
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time the control API took to answer a request (histogram, 1 ms to 10 s)"
    );
    describe_counter!(
        LIMIT_REFUSALS_TOTAL,
        Unit::Count,
        "Requests the control API refused by a protective limit"
    );
    describe_counter!(
        CONNECTIONS_REFUSED_TOTAL,
        Unit::Count,
        "HTTP connections refused at accept: the listener's max_connections were open"
    );
    describe_counter!(
        CONNECTIONS_TIMED_OUT_TOTAL,
        Unit::Count,
        "HTTP connections closed for a header-read, first-request or idle timeout"
    );
    describe_gauge!(
        CONNECTIONS_OPEN,
        Unit::Count,
        "HTTP connections open on the listener"
    );
    crate::process_metrics::describe();
}

/// Which protective limit refused a request (the `limit` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    AuthFailures,
    TokenBudget,
    TokenCap,
    ImportSlots,
    UploadRate,
}

impl Limit {
    fn label(self) -> &'static str {
        match self {
            Limit::AuthFailures => "auth_failures",
            Limit::TokenBudget => "token_budget",
            Limit::TokenCap => "token_cap",
            Limit::ImportSlots => "import_slots",
            Limit::UploadRate => "upload_rate",
        }
    }
}

/// Counts a refusal by `limit`.
pub fn refused(limit: Limit) {
    counter!(LIMIT_REFUSALS_TOTAL, "limit" => limit.label()).increment(1);
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Middleware: counts and times every request.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(req).await;
    let status = status_class(response.status().as_u16());
    counter!(REQUESTS_TOTAL, "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    histogram!(REQUEST_DURATION_SECONDS, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(503), "5xx");
    }
}
