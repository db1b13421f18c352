//! Public open and click tracking (DESIGN.md §8): the links the delivery path puts
//! into a message's HTML part (`penguin_engine::tracking_html`).
//!
//! - `GET /t/o/{token}`: always a 1×1 transparent GIF (`Cache-Control: no-store`),
//!   also for a bad token, so a mail client never shows a broken image; a valid
//!   token records the job's `open` event.
//! - `GET /t/c/{token}`: a valid token answers 302 to the URL signed into it and
//!   records a `click` event; a forged or altered token (or one whose URL was
//!   swapped) answers 404 and records nothing — the route is never an open
//!   redirect.
//!
//! Events are deduplicated in the store (`store::engagement`: one open per job,
//! one click per job and link). A slow or failing database never withholds the
//! pixel or the redirect: recording waits at most half the request timeout and a
//! failure is logged, not answered.

use std::future::Future;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use penguin_engine::db::StoreError;
use penguin_engine::store::engagement;
use penguin_engine::tracking::{self, LinkKind};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, AppError, ErrorBody};

/// A 1×1 transparent GIF (GIF89a, one transparent palette entry).
const PIXEL_GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open))
        .routes(routes!(click))
}

/// The open pixel: always a 1×1 transparent GIF; a valid token records the
/// job's first `open`.
#[utoipa::path(get, path = "/t/o/{token}", tag = "tracking",
    params(("token" = String, Path, description = "The signed token of the message's pixel")),
    responses(
        (status = 200, description = "A 1×1 transparent GIF (`Cache-Control: no-store`), whatever the token",
            body = Vec<u8>, content_type = "image/gif"),
    ))]
async fn open(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    if let Some((tenant, job)) =
        tracking::verify(&state.config.tracking.secret, LinkKind::Open, &token)
    {
        let recorded = engagement::record_open(&state.pg, tenant, job);
        if record(&state, recorded).await {
            tracing::debug!(%tenant, %job, "first open recorded");
        }
    }
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PIXEL_GIF,
    )
        .into_response()
}

/// A click: 302 to the URL signed into the token, recording the first `click`
/// per job and link. Never an open redirect: a forged or altered token is 404.
#[utoipa::path(get, path = "/t/c/{token}", tag = "tracking",
    params(("token" = String, Path, description = "The signed token of the message's link")),
    responses(
        (status = 302, description = "Redirect to the original URL (`Location`)",
            headers(("Location" = String, description = "The URL the message linked to"))),
        (status = 404, description = "A forged, altered or unknown link (`not_found`)", body = ErrorBody),
    ))]
async fn click(State(state): State<AppState>, Path(token): Path<String>) -> ApiResult<Response> {
    let (tenant, job, url) = tracking::verify_click(&state.config.tracking.secret, &token)
        .ok_or_else(|| AppError::not_found("unknown tracking link"))?;
    let recorded = engagement::record_click(&state.pg, tenant, job, &url);
    if record(&state, recorded).await {
        tracing::debug!(%tenant, %job, "first click on a link recorded");
    }
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, url),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response())
}

/// Waits for an event write, bounded; `true` when it added a row. Failures are
/// logged here: the recipient still gets the pixel or the redirect.
async fn record(state: &AppState, write: impl Future<Output = Result<bool, StoreError>>) -> bool {
    let limit = Duration::from_millis(state.config.api.request_timeout_ms / 2);
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(added)) => added,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "tracking event not recorded");
            false
        }
        Err(_) => {
            tracing::warn!(?limit, "tracking event not recorded in time");
            false
        }
    }
}
