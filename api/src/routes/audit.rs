//! `GET /v1/audit?before=&limit=&tenant_id=&action=` (admin) → `{entries:
//! [{id, at, actor, tenant_id, action, target, detail}], next_before}`: the
//! audit log (`store::audit`), newest first. `before` = the previous page's
//! `next_before` (null on the last page); `limit` 1 to [`super::MAX_PAGE_LIMIT`] (default
//! 100); `tenant_id` and `action` keep only the entries of that tenant or
//! action. A malformed, repeated or unknown parameter, or a limit out of
//! range: 422. Tenants never read the log (403; their role has no SELECT).

use axum::Json;
use axum::extract::{Query, State};
use penguin_engine::store::audit::{self, Filter, Row};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Paging};
use crate::AppState;
use crate::auth::AdminCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::openapi::AdminOnly;

/// Longest `action` filter.
const MAX_ACTION: usize = 64;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    before: Option<i64>,
    limit: Option<i64>,
    tenant_id: Option<Uuid>,
    action: Option<String>,
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
struct AuditEntry {
    id: i64,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    /// `admin` or `tenant:<uuid>`.
    actor: String,
    tenant_id: Option<Uuid>,
    /// `tenant.create`, `token.issue`, `token.revoke`, `ip.add`, `ip.pause`,
    /// `ip.resume`, `ip.retire`, `domain.create`, `domain.delete`,
    /// `domain.trust`, `domain.rotate`, `erasure`, `erasure.global`.
    action: String,
    /// Ids only (an erasure: the address's pseudonym).
    target: Option<String>,
    /// Counts and flags; never personal data.
    #[schema(value_type = Object)]
    detail: serde_json::Value,
}

impl From<Row> for AuditEntry {
    fn from(row: Row) -> Self {
        AuditEntry {
            id: row.id,
            at: row.at,
            actor: row.actor,
            tenant_id: row.tenant,
            action: row.action,
            target: row.target,
            detail: row.detail,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct AuditPage {
    entries: Vec<AuditEntry>,
    /// The `before` of the next page; null on the last page.
    next_before: Option<i64>,
}

/// The audit log, newest first (admin).
#[utoipa::path(get, path = "/v1/audit", tag = "privacy",
    security(("bearer" = [])),
    params(
        ("before" = Option<i64>, Query, description = "Entries older than this id (the previous page's `next_before`)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
        ("tenant_id" = Option<Uuid>, Query, description = "Only this tenant's entries"),
        ("action" = Option<String>, Query, description = "Only this action, e.g. `erasure`"),
    ),
    responses(
        (status = 200, description = "A page of the audit log", body = AuditPage),
        (status = 422, description = "A malformed, repeated or unknown query parameter, or \
            `limit` out of range (`invalid_request`)", body = ErrorBody),
        AdminOnly,
    ))]
async fn list_audit(
    _: AdminCaller,
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    let Query(query) = query.map_err(|rejection| AppError::invalid(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
        return Err(AppError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE_LIMIT}"
        )));
    }
    if query.before.is_some_and(|before| before < 1) {
        return Err(AppError::invalid("before must be a positive entry id"));
    }
    if let Some(action) = &query.action
        && (action.is_empty()
            || action.len() > MAX_ACTION
            || !action
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.'))
    {
        return Err(AppError::invalid(format!(
            "action must be 1-{MAX_ACTION} characters of a-z, _ and ."
        )));
    }
    let filter = Filter {
        before: query.before,
        tenant: query.tenant_id,
        action: query.action,
    };
    // Newest first: the shared paging cuts the page, its cursor is `before`.
    let paging = Paging {
        after: query.before,
        limit,
    };
    let client = super::connection(&state).await?;
    let rows = audit::page(&client, &filter, paging.fetch()).await?;
    drop(client);
    let (rows, next_before) = paging.page(rows, |row| row.id);
    Ok(Json(AuditPage {
        entries: rows.into_iter().map(AuditEntry::from).collect(),
        next_before,
    }))
}
