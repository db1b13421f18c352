//! Request extractors that fail with [`AppError`] instead of axum's plain-text
//! rejections:
//!
//! - [`JsonBody`]: a JSON body. Not JSON → 400 `malformed_json`; JSON of the wrong
//!   shape (unknown field, wrong type, missing field) → 422 `invalid_request` with
//!   serde's message; another content type → 415; over `api.max_body_bytes` → 413.
//! - [`IdPath`]: the `{id}` of a path; an id that is not a UUID cannot exist → 404.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
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
