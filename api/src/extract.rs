//! Request extractors that fail with [`AppError`] instead of axum's plain-text
//! rejections:
//!
//! - [`JsonBody`]: a JSON body. Not JSON → 400 `malformed_json`; JSON of the wrong
//!   shape (unknown field, wrong type, missing field) → 422 `invalid_request` with
//!   serde's message; another content type → 415; over `api.max_body_bytes` → 413.
//! - [`OptionalJsonBody`]: like [`JsonBody`], but an empty or absent body is
//!   `None` (whatever its content type), for actions whose body is optional.
//! - [`NoFields`]: the JSON body of an action that takes no field (`{}`), used
//!   as `OptionalJsonBody<NoFields>` so a state-changing POST refuses a body it
//!   cannot read (400/413/415/422) instead of ignoring it.
//! - [`RawBody`]: the body's bytes and its `Content-Type`, for routes that take
//!   more than JSON; over the limit → 413.
//! - [`IdPath`]: the `{id}` of a path; an id that is not a UUID cannot exist → 404.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::AppError;

/// A JSON request body of type `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    let inner = |r: &dyn std::error::Error, fallback: String| {
        r.source().map(|s| s.to_string()).unwrap_or(fallback)
    };
    match rejection {
        JsonRejection::JsonDataError(e) => AppError::invalid(inner(&e, e.body_text())),
        JsonRejection::JsonSyntaxError(e) => AppError::malformed_json(inner(&e, e.body_text())),
        JsonRejection::MissingJsonContentType(_) => {
            AppError::unsupported_media_type("expected Content-Type: application/json")
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => AppError::payload_too_large(),
        other => AppError::malformed_json(other.body_text()),
    }
}

/// An optional JSON request body: `None` when the body is empty (or only
/// whitespace); otherwise exactly as [`JsonBody`] (415 unless JSON, 400, 422).
#[derive(Debug, Clone, Default)]
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let RawBody { content_type, body } = RawBody::from_request(req, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        if !is_json(content_type.as_deref().unwrap_or("")) {
            return Err(AppError::unsupported_media_type(
                "expected Content-Type: application/json (or no body)",
            ));
        }
        parse_json(&body).map(|value| OptionalJsonBody(Some(value)))
    }
}

/// Whether a `Content-Type` is JSON (`application/json`, `application/*+json`).
pub fn is_json(content_type: &str) -> bool {
    let mime = mime_of(content_type);
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// The lower-cased `type/subtype` of a `Content-Type` (parameters dropped).
pub fn mime_of(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Parses JSON bytes as [`JsonBody`] does: not JSON → 400 `malformed_json`,
/// JSON of the wrong shape → 422 `invalid_request` with serde's message.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => AppError::invalid(e.to_string()),
        _ => AppError::malformed_json(e.to_string()),
    })
}

/// The body of an action without fields: the object `{}`. A field is 422, as
/// `deny_unknown_fields` would answer, and so is anything but an object: a
/// derived empty struct would take `[]` too (serde reads structs from arrays).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ToSchema)]
pub struct NoFields {}

impl<'de> Deserialize<'de> for NoFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        match object.keys().next() {
            Some(field) => Err(D::Error::unknown_field(field, &[])),
            None => Ok(NoFields {}),
        }
    }
}

/// A request body as bytes, with its `Content-Type` header (if any and readable).
#[derive(Debug, Clone, Default)]
pub struct RawBody {
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl<S> FromRequest<S> for RawBody
where
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        Ok(RawBody { content_type, body })
    }
}

fn bytes_rejection(rejection: BytesRejection) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::payload_too_large()
    } else {
        AppError::malformed_json(rejection.body_text())
    }
}

/// The `{id}` path parameter as a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdPath(pub Uuid);

impl<S> FromRequestParts<S> for IdPath
where
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Path::<Uuid>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| IdPath(id))
            .map_err(|_| AppError::not_found("not found"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_fields_takes_only_the_empty_object() {
        assert_eq!(parse_json::<NoFields>(b"{}"), Ok(NoFields {}));
        assert_eq!(parse_json::<NoFields>(b" { } "), Ok(NoFields {}));
        for body in [
            &b"[]"[..],
            b"[{}]",
            b"null",
            b"\"x\"",
            b"1",
            br#"{"reason": "x"}"#,
        ] {
            let err = parse_json::<NoFields>(body).unwrap_err();
            assert_eq!(
                err.code,
                "invalid_request",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let err = parse_json::<NoFields>(b"{").unwrap_err();
        assert_eq!(err.code, "malformed_json");
    }
}
