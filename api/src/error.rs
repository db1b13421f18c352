//! [`AppError`]: the one error type of the API and the one place errors become
//! responses. Every failure answers `{"error": {"code": "...", "message": "..."}}`
//! with a fitting status; codes are a small fixed set clients can match on.
//! Server-side failures (5xx) are logged here, once, and their details are not
//! sent to the client. [`ErrorBody`] is that shape as a type, so the OpenAPI
//! document (`/openapi.json`) describes exactly what is sent.

use axum::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use penguin_engine::db::StoreError;
use penguin_engine::domain::InputError;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "no such campaign"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// One of `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `conflict`, `invalid_request`, `malformed_json`, `unsupported_media_type`,
    /// `payload_too_large`, `rate_limited`, `too_many_tokens`,
    /// `too_many_imports`, `upload_too_slow`, `timeout`, `unavailable`,
    /// `internal`, `secrets_not_configured`, `domain_not_verified`.
    pub code: String,
    /// For people: what is wrong (never internal details).
    pub message: String,
}

/// An error answer: status, machine-readable code, human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// What went wrong inside, for the log only (never sent to the client).
    pub detail: Option<String>,
    /// Seconds for a `Retry-After` header (the 429 answers).
    pub retry_after: Option<u64>,
}

/// The longest `message` an answer carries: a message that quotes a hostile
/// value (100 KB of it) is cut here, so an error never echoes a request back.
pub const MAX_MESSAGE_CHARS: usize = 300;

fn capped(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push_str("… (cut)");
    }
    message
}

impl AppError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            message: capped(message.into()),
            detail: None,
            retry_after: None,
        }
    }

    fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 401: no token, or a token nobody issued.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: a valid token without the right to this route.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: absent, or owned by another tenant (never told apart).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// For `.map_err`: a store error, with `NotFound` answered as 404 `message`
    /// ("no such campaign") and everything else mapped as usual.
    pub fn missing(message: &'static str) -> impl Fn(StoreError) -> AppError {
        move |error| match error {
            StoreError::NotFound => AppError::not_found(message),
            other => other.into(),
        }
    }

    /// 405: the path exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        )
    }

    /// 409: the request is valid but clashes with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 409 `secrets_not_configured`: the node has no `[secrets] master_key`, so
    /// it cannot seal a private key and makes none.
    pub fn secrets_not_configured() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "secrets_not_configured",
            "this node has no [secrets] master_key: it cannot store DKIM keys",
        )
    }

    /// 422 `domain_not_verified`: a campaign's From is not under a verified
    /// sending domain of the tenant.
    pub fn domain_not_verified(domain: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "domain_not_verified",
            format!(
                "from: {domain} is not a verified sending domain of this tenant \
                 (POST /v1/domains, then POST /v1/domains/{{id}}/verify)"
            ),
        )
    }

    /// 422: well-formed JSON that is not a valid request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    /// 422 for one field: `"<field> <what is wrong>"`.
    pub fn invalid_field(field: &str, error: &InputError) -> Self {
        Self::invalid(format!("{field} {error}"))
    }

    /// 400: the body is not JSON.
    pub fn malformed_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }

    /// 400: the body could not be read to its end (a broken upload).
    pub fn malformed_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_body", message)
    }

    /// 415: a body in a content type this route does not take.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// 413: the body is over `api.max_body_bytes`.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is too large",
        )
    }

    /// 429: the caller's token used up its request budget (`api.rate_limit_*`).
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests for this token; retry in {retry_after_secs} s"),
        );
        error.retry_after = Some(retry_after_secs);
        error
    }

    /// 429: this client address failed to authenticate too often
    /// (`api.auth_failures_*`); no token was looked at.
    pub fn auth_throttled(retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many failed authentications from this address; retry in {retry_after_secs} s"
            ),
        );
        error.retry_after = Some(retry_after_secs);
        error
    }

    /// 409: the tenant already holds `api.max_tokens_per_tenant` live tokens.
    pub fn too_many_tokens(max: u32) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "too_many_tokens",
            format!(
                "the tenant already has {max} live tokens (api.max_tokens_per_tenant); revoke one first"
            ),
        )
    }

    /// 409: the tenant already has `[webhooks] max_per_tenant` webhooks.
    pub fn too_many_webhooks(max: u32) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "too_many_webhooks",
            format!(
                "the tenant already has {max} webhooks ([webhooks] max_per_tenant); delete one first"
            ),
        )
    }

    /// 429: the tenant already runs `api.max_concurrent_imports_per_tenant`
    /// lead imports on this node.
    pub fn too_many_imports(max: u32) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_imports",
            format!(
                "the tenant already runs {max} lead imports (api.max_concurrent_imports_per_tenant); retry when one ends"
            ),
        )
    }

    /// 408: an upload sent less than `api.import_min_bytes_per_sec` over a
    /// window; it was cut off and changed nothing.
    pub fn upload_too_slow(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "upload_too_slow", message)
    }

    /// 503: the request took longer than `api.request_timeout_ms`.
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "request timed out",
        )
    }

    /// 503: a backing service (`what`: "database", "redis") is unreachable;
    /// `detail` goes to the log only.
    pub fn unavailable(what: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what} unavailable"),
        )
        .with_detail(detail)
    }

    /// 503 `unavailable` saying why in `message` (which must hold nothing
    /// secret); `detail` goes to the log only.
    pub fn unavailable_because(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).with_detail(detail)
    }

    /// 500: a bug or an unexpected database error; `detail` goes to the log only.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
        .with_detail(detail)
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for AppError {}

impl From<StoreError> for AppError {
    /// The generic mapping; handlers match `NotFound`/`Conflict` themselves when
    /// they can say more (which resource, which field).
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => AppError::not_found("not found"),
            StoreError::Conflict(what) => AppError::conflict(what),
            StoreError::Invalid(what) => AppError::invalid(what),
            StoreError::Pool(deadpool_postgres::PoolError::Timeout(_)) => {
                let mut error = AppError::unavailable(
                    "database",
                    "no API database connection was free within database.acquire_timeout_ms",
                );
                error.message =
                    "database busy: every API connection is in use; retry later".to_string();
                error
            }
            err if err.is_transient() => AppError::unavailable("database", err.to_string()),
            err => AppError::internal(err.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            let detail = self.detail.as_deref().unwrap_or(&self.message);
            tracing::error!(status = %self.status, code = self.code, detail, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    #[test]
    fn messages_are_capped() {
        let long = AppError::invalid(format!("timezone {:?} is unknown", "é".repeat(100_000)));
        assert!(long.message.ends_with("… (cut)"));
        assert_eq!(
            long.message.chars().count(),
            MAX_MESSAGE_CHARS + "… (cut)".chars().count()
        );
        assert_eq!(AppError::invalid("short").message, "short");
    }

    use super::*;

    #[test]
    fn store_errors_map_to_statuses() {
        assert_eq!(
            AppError::from(StoreError::NotFound).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            AppError::from(StoreError::Conflict("x".into())).code,
            "conflict"
        );
        assert_eq!(
            AppError::from(StoreError::Invalid("x".into())).status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            AppError::from(StoreError::Migration("x".into())).code,
            "internal"
        );
    }
}
