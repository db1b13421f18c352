//! The calling tenant's suppression list (`/v1/suppressions`, tenant token):
//!
//! - `GET /v1/suppressions?after=&limit=` → `{suppressions: [{email, reason,
//!   created_at, expires_at}], next_after}`, ordered by email; `next_after` is
//!   the cursor of the next page (the last email of this one), `null` on the
//!   last page. Lapsed entries are listed until removed or replaced.
//! - `POST /v1/suppressions` `{emails: [..], reason?, expires_at?}` → `{added,
//!   already, rejected: [{index, reason}]}`. An entry is an address or a whole
//!   domain, `@example.com`. `index` is the 0-based position in `emails`; an
//!   invalid entry is rejected, one in force already (or repeated in the
//!   request) counts in `already` (its expiry becomes the later of the two), so
//!   `added + already + rejected.len()` = entries sent. `reason` defaults to
//!   `manual`; tenants may give `manual`, `unsubscribe` or `complaint`
//!   (`hard_bounce` is the engine's). `expires_at` (RFC 3339, in the future)
//!   lifts the entries by themselves; none = for good. At most [`MAX_EMAILS`]
//!   entries per request; one bulk insert.
//! - `DELETE /v1/suppressions/{email}` (the entry percent-encoded) → 204, or
//!   404 when it is not on the list.
//!
//! Entries are normalised (`normalize_suppression_entry`: trimmed, lower-cased)
//! exactly as lead import normalises addresses, so an entry matches its leads.
//! The operator's global list (`/v1/suppressions/global`) applies on top. Rows
//! of other tenants are never read or changed (every store call filters
//! `tenant_id`).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use penguin_engine::domain::normalize_suppression_entry;
use penguin_engine::store;
use penguin_engine::store::suppressions::{Suppression, SuppressionReason};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Paging;
use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::JsonBody;
use crate::openapi::{JsonBodyErrors, TenantOnly, string_enum};

/// Most addresses in one `POST /v1/suppressions`.
pub const MAX_EMAILS: usize = 10_000;
/// Longest `after` cursor (an address is at most 254 bytes).
pub const MAX_CURSOR: usize = 254;

/// The reasons a tenant may give; `hard_bounce` comes from delivery only.
const TENANT_REASONS: [SuppressionReason; 3] = [
    SuppressionReason::Manual,
    SuppressionReason::Unsubscribe,
    SuppressionReason::Complaint,
];

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(remove))
}

fn reason_schema() -> utoipa::openapi::schema::Object {
    string_enum(SuppressionReason::ALL.map(SuppressionReason::as_str))
}

#[derive(Debug, Serialize, ToSchema)]
struct SuppressionBody {
    email: String,
    #[schema(schema_with = reason_schema)]
    reason: SuppressionReason,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// When the entry stops suppressing; null = never.
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

impl From<Suppression> for SuppressionBody {
    fn from(s: Suppression) -> Self {
        SuppressionBody {
            email: s.email,
            reason: s.reason,
            created_at: s.created_at,
            expires_at: s.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct SuppressionList {
    suppressions: Vec<SuppressionBody>,
    /// The `after` of the next page (the last email of this one); null on the
    /// last page.
    next_after: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AddSuppressions {
    /// 1 to 10,000 addresses or `@domain` entries.
    #[schema(example = json!(["ann@example.com", "@example.org"]))]
    emails: Vec<String>,
    /// `manual` (default), `unsubscribe` or `complaint` (`hard_bounce` is the
    /// engine's).
    reason: Option<String>,
    /// RFC 3339, in the future: the entries lapse by themselves then; absent =
    /// for good.
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, PartialEq, Eq, ToSchema)]
pub struct RejectedEmail {
    /// The 0-based position in `emails`.
    index: usize,
    reason: String,
}

/// `added + already + rejected.len()` = addresses sent.
#[derive(Debug, Serialize, ToSchema)]
struct AddResult {
    added: u64,
    /// Already suppressed, or repeated in the request.
    already: u64,
    rejected: Vec<RejectedEmail>,
}

/// The calling tenant's suppression list, by email.
#[utoipa::path(get, path = "/v1/suppressions", tag = "suppressions",
    security(("bearer" = [])),
    params(
        ("after" = Option<String>, Query, description = "Addresses after this one (the previous page's `next_after`)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of suppressions", body = SuppressionList),
        (status = 422, description = "A malformed, repeated or unknown query parameter, \
            or `limit` out of range (`invalid_request`)", body = ErrorBody),
        TenantOnly,
    ))]
async fn list(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    paging: Paging<String>,
) -> ApiResult<Json<SuppressionList>> {
    if let Some(after) = &paging.after
        && (after.len() > MAX_CURSOR || after.chars().any(char::is_control))
    {
        return Err(AppError::invalid(format!(
            "after must be an address of at most {MAX_CURSOR} bytes without control characters"
        )));
    }
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let rows =
        store::suppressions::list(&tx, tenant, paging.after.as_deref(), paging.fetch()).await?;
    super::commit(tx).await?;
    let (rows, next_after) = paging.page(rows, |s| s.email.clone());
    Ok(Json(SuppressionList {
        suppressions: rows.into_iter().map(SuppressionBody::from).collect(),
        next_after,
    }))
}

/// The reason a tenant asked for (default `manual`), or why it is refused.
fn tenant_reason(reason: Option<&str>) -> ApiResult<SuppressionReason> {
    let Some(name) = reason else {
        return Ok(SuppressionReason::Manual);
    };
    let allowed = || {
        TENANT_REASONS
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name.parse::<SuppressionReason>() {
        Ok(reason) if TENANT_REASONS.contains(&reason) => Ok(reason),
        Ok(reason) => Err(AppError::invalid(format!(
            "reason {reason} is recorded by the engine only; use one of {}",
            allowed()
        ))),
        Err(()) => Err(AppError::invalid(format!(
            "reason {name:?} is not one of {}",
            allowed()
        ))),
    }
}

/// Refuses an expiry that is not in the future.
pub fn check_expiry(expires_at: Option<OffsetDateTime>) -> ApiResult<()> {
    match expires_at {
        Some(at) if at <= OffsetDateTime::now_utc() => Err(AppError::invalid(
            "expires_at must be in the future (or absent: for good)",
        )),
        _ => Ok(()),
    }
}

/// Splits the entries (addresses or `@domain`s) into normalised valid ones
/// and rejections.
pub fn check_emails(emails: &[String]) -> (Vec<String>, Vec<RejectedEmail>) {
    let mut valid = Vec::with_capacity(emails.len());
    let mut rejected = Vec::new();
    for (index, email) in emails.iter().enumerate() {
        match normalize_suppression_entry(email) {
            Ok(email) => valid.push(email),
            Err(e) => rejected.push(RejectedEmail {
                index,
                reason: format!("email {e}"),
            }),
        }
    }
    (valid, rejected)
}

/// Suppresses addresses or whole domains (`@example.com`) for the calling
/// tenant, for good or until `expires_at` (one bulk insert).
///
/// Entries are normalised (trimmed, lower-cased) as lead import does; an
/// invalid one is rejected by index.
#[utoipa::path(post, path = "/v1/suppressions", tag = "suppressions",
    security(("bearer" = [])),
    request_body = AddSuppressions,
    responses(
        (status = 200, description = "What became of each address", body = AddResult),
        TenantOnly, JsonBodyErrors,
    ))]
async fn add(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<AddSuppressions>,
) -> ApiResult<Json<AddResult>> {
    let reason = tenant_reason(request.reason.as_deref())?;
    check_expiry(request.expires_at)?;
    if request.emails.is_empty() || request.emails.len() > MAX_EMAILS {
        return Err(AppError::invalid(format!(
            "emails must hold 1-{MAX_EMAILS} addresses"
        )));
    }
    let (valid, rejected) = check_emails(&request.emails);
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let (added, already) =
        store::suppressions::add(&tx, tenant, &valid, reason, request.expires_at).await?;
    super::commit(tx).await?;
    tracing::info!(
        tenant_id = %tenant, %reason, added, already, rejected = rejected.len(),
        "suppressions added"
    );
    Ok(Json(AddResult {
        added,
        already,
        rejected,
    }))
}

/// Removes an address from the calling tenant's suppression list.
#[utoipa::path(delete, path = "/v1/suppressions/{email}", tag = "suppressions",
    security(("bearer" = [])),
    params(("email" = String, Path, description = "The address or `@domain`, percent-encoded")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "The address is not on the list (`not_found`)", body = ErrorBody),
        (status = 422, description = "Not a valid address or `@domain` (`invalid_request`)", body = ErrorBody),
        TenantOnly,
    ))]
async fn remove(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    email: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path(raw) =
        email.map_err(|_| AppError::invalid("email in the path is not a valid address"))?;
    let email =
        normalize_suppression_entry(&raw).map_err(|e| AppError::invalid_field("email", &e))?;
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    store::suppressions::remove(&tx, tenant, &email)
        .await
        .map_err(AppError::missing("address is not suppressed"))?;
    super::commit(tx).await?;
    tracing::info!(tenant_id = %tenant, "suppression removed");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_may_give_three_reasons() {
        assert_eq!(tenant_reason(None).unwrap(), SuppressionReason::Manual);
        for (name, reason) in [
            ("manual", SuppressionReason::Manual),
            ("unsubscribe", SuppressionReason::Unsubscribe),
            ("complaint", SuppressionReason::Complaint),
        ] {
            assert_eq!(tenant_reason(Some(name)).unwrap(), reason);
        }
        for bad in ["hard_bounce", "bounce", "", "Manual", "manual\r\n"] {
            let err = tenant_reason(Some(bad)).unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        }
        assert!(
            tenant_reason(Some("hard_bounce"))
                .unwrap_err()
                .message
                .contains("engine")
        );
    }

    #[test]
    fn emails_are_normalised_or_rejected_by_index() {
        let emails: Vec<String> = ["Ann@Example.com", "nope", "a\r\nb@x.com", " bob@x.com "]
            .map(String::from)
            .to_vec();
        let (valid, rejected) = check_emails(&emails);
        assert_eq!(valid, vec!["ann@example.com", "bob@x.com"]);
        let indexes: Vec<usize> = rejected.iter().map(|r| r.index).collect();
        assert_eq!(indexes, vec![1, 2]);
        assert!(rejected[0].reason.starts_with("email "));
    }
}
