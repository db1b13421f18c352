//! Public unsubscribe links (RFC 8058): `GET /u/{token}` shows a confirmation page
//! and changes nothing (link scanners follow GETs); `POST /u/{token}` — what mail
//! clients send for `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and what
//! the page's button sends — adds the recipient to its tenant's suppression list
//! (reason `unsubscribe`) and records an `unsubscribed` event. Repeating it is
//! harmless. The token is signed (`penguin_engine::tracking`); a forged, altered or
//! unknown one answers 404 and changes nothing.

use axum::extract::{Path, State};
use axum::response::Html;
use penguin_engine::store::suppressions;
use penguin_engine::tracking::{self, LinkKind};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiResult, AppError, ErrorBody};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(confirm_page, unsubscribe))
}

fn verify(state: &AppState, token: &str) -> ApiResult<(Uuid, Uuid)> {
    tracking::verify(&state.config.tracking.secret, LinkKind::Unsubscribe, token)
        .ok_or_else(|| AppError::not_found("unknown unsubscribe link"))
}

/// The unsubscribe link's confirmation page; changes nothing (link scanners
/// follow GETs).
#[utoipa::path(get, path = "/u/{token}", tag = "unsubscribe",
    params(("token" = String, Path, description = "The signed token of the message's link")),
    responses(
        (status = 200, description = "A page with an Unsubscribe button", body = String,
            content_type = "text/html; charset=utf-8"),
        (status = 404, description = "A forged, altered or unknown link (`not_found`)", body = ErrorBody),
    ))]
async fn confirm_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Html<String>> {
    let (tenant, job) = verify(&state, &token)?;
    let email = suppressions::job_recipient(&state.pg, tenant, job)
        .await?
        .ok_or_else(|| AppError::not_found("unknown unsubscribe link"))?;
    Ok(Html(page(
        "Unsubscribe",
        &format!(
            "<p>Stop emails to <b>{}</b>?</p>\
             <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <button type=\"submit\">Unsubscribe</button></form>",
            escape(&email)
        ),
    )))
}

/// Unsubscribes the recipient (RFC 8058 one-click, or the page's button).
///
/// Adds the address to its tenant's suppression list (reason `unsubscribe`) and
/// records an `unsubscribed` event; repeating it is harmless. Any body (e.g.
/// `List-Unsubscribe=One-Click`) is ignored.
#[utoipa::path(post, path = "/u/{token}", tag = "unsubscribe",
    params(("token" = String, Path, description = "The signed token of the message's link")),
    responses(
        (status = 200, description = "A page saying it is done", body = String,
            content_type = "text/html; charset=utf-8"),
        (status = 404, description = "A forged, altered or unknown link (`not_found`)", body = ErrorBody),
    ))]
async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Html<String>> {
    let (tenant, job) = verify(&state, &token)?;
    let done = suppressions::unsubscribe_job(&state.pg, tenant, job)
        .await?
        .ok_or_else(|| AppError::not_found("unknown unsubscribe link"))?;
    if done.newly {
        tracing::info!(%tenant, %job, "recipient unsubscribed");
    }
    Ok(Html(page(
        "Unsubscribed",
        &format!(
            "<p><b>{}</b> will receive no more emails from this sender.</p>",
            escape(&done.email)
        ),
    )))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body>{body}</body></html>"
    )
}

/// Minimal HTML escaping for text we put into the page.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
