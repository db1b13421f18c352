//! The operator's suppression list, for every tenant (`/v1/suppressions/global`,
//! admin token):
//!
//! - `GET /v1/suppressions/global?after=&limit=` → `{suppressions: [{email,
//!   reason, note, created_at, expires_at}], next_after}`, ordered by entry;
//! - `POST /v1/suppressions/global` `{emails: [..], reason?, note?, expires_at?}`
//!   → `{added, already, rejected: [{index, reason}]}`: an entry is an address
//!   or a whole domain (`@example.com`); `reason` is `manual` (default),
//!   `spam_trap`, `litigator`, `complaint`, `hard_bounce` or `unsubscribe`;
//!   `note` at most 500 characters; `expires_at` (RFC 3339, in the future) lifts
//!   the entry by itself, none = for good. At most [`MAX_EMAILS`] entries.
//! - `DELETE /v1/suppressions/global/{email}` (percent-encoded) → 204, or 404.
//!
//! Every tenant's lead import, claim before sending, follow-ups and requeues
//! check this list with their own (`penguin_suppression`); jobs already queued
//! for a listed address end `suppressed` at their claim.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use penguin_engine::domain::normalize_suppression_entry;
use penguin_engine::store::global_suppressions::{self, GlobalReason, GlobalSuppression};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Paging;
use super::suppressions::{MAX_CURSOR, MAX_EMAILS, RejectedEmail, check_emails, check_expiry};
use crate::AppState;
use crate::auth::AdminCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::JsonBody;
use crate::openapi::{AdminOnly, JsonBodyErrors, string_enum};

/// Longest `note`, in characters.
pub const MAX_NOTE: usize = 500;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_global, add_global))
        .routes(routes!(remove_global))
}

fn reason_schema() -> utoipa::openapi::schema::Object {
    string_enum(GlobalReason::ALL.map(GlobalReason::as_str))
}

#[derive(Debug, Serialize, ToSchema)]
struct GlobalBody {
    /// An address, or `@domain` for the whole domain.
    email: String,
    #[schema(schema_with = reason_schema)]
    reason: GlobalReason,
    note: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// When the entry lapses by itself; null = never.
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

impl From<GlobalSuppression> for GlobalBody {
    fn from(s: GlobalSuppression) -> Self {
        GlobalBody {
            email: s.email,
            reason: s.reason,
            note: s.note,
            created_at: s.created_at,
            expires_at: s.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct GlobalList {
    suppressions: Vec<GlobalBody>,
    /// The `after` of the next page; null on the last page.
    next_after: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AddGlobal {
    /// 1 to 10,000 addresses or `@domain` entries.
    #[schema(example = json!(["trap@example.com", "@litigious.example"]))]
    emails: Vec<String>,
    /// `manual` (default), `spam_trap`, `litigator`, `complaint`, `hard_bounce`
    /// or `unsubscribe`.
    reason: Option<String>,
    /// At most 500 characters.
    note: Option<String>,
    /// RFC 3339, in the future; absent = for good.
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
struct AddResult {
    added: u64,
    /// In force already, or repeated in the request.
    already: u64,
    rejected: Vec<RejectedEmail>,
}

/// The operator's suppression list (every tenant's sending checks it).
#[utoipa::path(get, path = "/v1/suppressions/global", tag = "suppressions",
    security(("bearer" = [])),
    params(
        ("after" = Option<String>, Query, description = "Entries after this one (the previous page's `next_after`)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of the global list", body = GlobalList),
        (status = 422, description = "A malformed, repeated or unknown query parameter, \
            or `limit` out of range (`invalid_request`)", body = ErrorBody),
        AdminOnly,
    ))]
async fn list_global(
    _: AdminCaller,
    State(state): State<AppState>,
    paging: Paging<String>,
) -> ApiResult<Json<GlobalList>> {
    if let Some(after) = &paging.after
        && (after.len() > MAX_CURSOR || after.chars().any(char::is_control))
    {
        return Err(AppError::invalid(format!(
            "after must be an entry of at most {MAX_CURSOR} bytes without control characters"
        )));
    }
    let client = super::connection(&state).await?;
    let rows = global_suppressions::list(&client, paging.after.as_deref(), paging.fetch()).await?;
    let (rows, next_after) = paging.page(rows, |s| s.email.clone());
    Ok(Json(GlobalList {
        suppressions: rows.into_iter().map(GlobalBody::from).collect(),
        next_after,
    }))
}

fn global_reason(reason: Option<&str>) -> ApiResult<GlobalReason> {
    let Some(name) = reason else {
        return Ok(GlobalReason::Manual);
    };
    name.parse().map_err(|()| {
        let all: Vec<&str> = GlobalReason::ALL.iter().map(|r| r.as_str()).collect();
        AppError::invalid(format!("reason {name:?} is not one of {}", all.join(", ")))
    })
}

fn check_note(note: Option<&str>) -> ApiResult<()> {
    if let Some(note) = note
        && (note.chars().count() > MAX_NOTE || note.chars().any(|c| c.is_control() && c != '\n'))
    {
        return Err(AppError::invalid(format!(
            "note must be at most {MAX_NOTE} characters without control characters"
        )));
    }
    Ok(())
}

/// Suppresses addresses or whole domains for every tenant (one bulk insert).
#[utoipa::path(post, path = "/v1/suppressions/global", tag = "suppressions",
    security(("bearer" = [])),
    request_body = AddGlobal,
    responses(
        (status = 200, description = "What became of each entry", body = AddResult),
        AdminOnly, JsonBodyErrors,
    ))]
async fn add_global(
    _: AdminCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<AddGlobal>,
) -> ApiResult<Json<AddResult>> {
    let reason = global_reason(request.reason.as_deref())?;
    check_note(request.note.as_deref())?;
    check_expiry(request.expires_at)?;
    if request.emails.is_empty() || request.emails.len() > MAX_EMAILS {
        return Err(AppError::invalid(format!(
            "emails must hold 1-{MAX_EMAILS} entries"
        )));
    }
    let (valid, rejected) = check_emails(&request.emails);
    let client = super::connection(&state).await?;
    let (added, already) = global_suppressions::add(
        &client,
        &valid,
        reason,
        request.note.as_deref(),
        request.expires_at,
    )
    .await?;
    tracing::info!(%reason, added, already, rejected = rejected.len(), "global suppressions added");
    Ok(Json(AddResult {
        added,
        already,
        rejected,
    }))
}

/// Lifts a global suppression.
#[utoipa::path(delete, path = "/v1/suppressions/global/{email}", tag = "suppressions",
    security(("bearer" = [])),
    params(("email" = String, Path, description = "The address or `@domain`, percent-encoded")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "Not on the list (`not_found`)", body = ErrorBody),
        (status = 422, description = "Not an address or `@domain` (`invalid_request`)", body = ErrorBody),
        AdminOnly,
    ))]
async fn remove_global(
    _: AdminCaller,
    State(state): State<AppState>,
    email: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path(raw) =
        email.map_err(|_| AppError::invalid("email in the path is not a valid entry"))?;
    let email =
        normalize_suppression_entry(&raw).map_err(|e| AppError::invalid_field("email", &e))?;
    let client = super::connection(&state).await?;
    global_suppressions::remove(&client, &email)
        .await
        .map_err(AppError::missing("entry is not on the global list"))?;
    tracing::info!("global suppression removed");
    Ok(StatusCode::NO_CONTENT)
}
