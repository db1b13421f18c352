//! Lists of the calling tenant: `GET /v1/campaigns?status=&after=&limit=` →
//! `{campaigns: [...], next_after}` (newest first) and
//! `GET /v1/campaigns/{id}/jobs?status=&after=&limit=` → `{jobs: [{id,
//! recipient, status, attempts, last_reply, next_run_at, updated_at}],
//! next_after}` (by job id).
//!
//! Both page by key (`store::campaign_lists`): `after` = the previous page's
//! `next_after` (the last id of that page) walks every row once; `next_after`
//! is null on the last page. `limit` is 1 to [`MAX_PAGE_LIMIT`] (default
//! [`DEFAULT_PAGE_LIMIT`]). A `status` that is not one of the list's states,
//! an `after` that is not a UUID, a limit out of range, a repeated or unknown
//! parameter is 422 `invalid_request`. The reads run in a tenant transaction
//! (row-level security): another tenant's campaigns are never listed, and its
//! campaign's jobs are 404.

use std::str::FromStr;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::Uri;
use penguin_engine::domain::{CampaignStatus, JobStatus};
use penguin_engine::store;
use penguin_engine::store::campaign_lists::JobRow;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::campaigns::{CampaignBody, campaign_error};
use super::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Paging, commit, connection, tenant_scope};
use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::IdPath;
use crate::openapi::{TenantOnly, string_enum};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_campaigns))
        .routes(routes!(list_jobs))
}

/// `?status=&after=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    after: Option<Uuid>,
    limit: Option<i64>,
}

/// Reads the query of a list whose `status` is one of `S`'s states (`states`
/// names them for the error).
fn list_query<S: FromStr>(uri: &Uri, states: &[&str]) -> ApiResult<(Option<S>, Paging<Uuid>)> {
    let Query(query) = Query::<ListQuery>::try_from_uri(uri)
        .map_err(|rejection| AppError::invalid(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
        return Err(AppError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE_LIMIT}"
        )));
    }
    let status = query
        .status
        .map(|s| {
            s.parse::<S>().map_err(|_| {
                AppError::invalid(format!("status must be one of {}", states.join(", ")))
            })
        })
        .transpose()?;
    Ok((
        status,
        Paging {
            after: query.after,
            limit,
        },
    ))
}

const CAMPAIGN_STATES: [&str; 6] = [
    "draft",
    "scheduled",
    "running",
    "paused",
    "completed",
    "cancelled",
];

#[derive(Debug, Serialize, ToSchema)]
struct CampaignsBody {
    campaigns: Vec<CampaignBody>,
    /// The `after` of the next page; null on the last page.
    next_after: Option<Uuid>,
}

/// The calling tenant's campaigns, newest first.
///
/// Paged by id: `after` = the previous page's `next_after`.
#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns",
    security(("bearer" = [])),
    params(
        ("status" = Option<String>, Query, description = "Only campaigns in this state: \
            draft, scheduled, running, paused, completed or cancelled"),
        ("after" = Option<Uuid>, Query, description = "The previous page's `next_after`"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of campaigns", body = CampaignsBody),
        (status = 422, description = "An unknown `status`, an `after` that is not a campaign id, \
            `limit` out of range, or a repeated or unknown query parameter (`invalid_request`)",
            body = ErrorBody),
        TenantOnly,
    ))]
async fn list_campaigns(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    uri: Uri,
) -> ApiResult<Json<CampaignsBody>> {
    let (status, paging) = list_query::<CampaignStatus>(&uri, &CAMPAIGN_STATES)?;
    let mut client = connection(&state).await?;
    let tx = tenant_scope(&mut client, tenant).await?;
    let rows =
        store::campaign_lists::campaigns_page(&tx, tenant, status, paging.after, paging.fetch())
            .await?;
    commit(tx).await?;
    let (rows, next_after) = paging.page(rows, |c| c.id);
    Ok(Json(CampaignsBody {
        campaigns: rows.into_iter().map(CampaignBody::from).collect(),
        next_after,
    }))
}

fn job_status_schema() -> utoipa::openapi::schema::Object {
    string_enum(JobStatus::ALL.map(JobStatus::as_str))
}

/// One job of a campaign.
#[derive(Debug, Serialize, ToSchema)]
struct JobBody {
    id: Uuid,
    /// The lead's address.
    recipient: String,
    #[schema(schema_with = job_status_schema)]
    status: JobStatus,
    /// SMTP attempts made since the job was created (a retry keeps counting).
    attempts: i32,
    /// The last SMTP reply, or why the job was postponed, failed or suppressed.
    last_reply: Option<String>,
    /// When a waiting (`pending` or `deferred`) job is due next; null otherwise.
    #[serde(with = "time::serde::rfc3339::option")]
    next_run_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    /// Its step in the campaign's sequence (1: the first email).
    step: i32,
    /// The Message-ID it was sent with (without angle brackets), once
    /// attempted: what `POST /v1/replies` `{message_id}` takes.
    message_id: Option<String>,
}

impl From<JobRow> for JobBody {
    fn from(j: JobRow) -> Self {
        JobBody {
            id: j.id,
            recipient: j.recipient,
            status: j.status,
            attempts: j.attempts,
            last_reply: j.last_reply,
            next_run_at: j.next_run_at,
            updated_at: j.updated_at,
            step: j.step,
            message_id: j.message_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct JobsBody {
    jobs: Vec<JobBody>,
    /// The `after` of the next page; null on the last page.
    next_after: Option<Uuid>,
}

/// The jobs of a campaign of the calling tenant, by job id.
///
/// Paged by id: `after` = the previous page's `next_after`.
#[utoipa::path(get, path = "/v1/campaigns/{id}/jobs", tag = "campaigns",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The campaign"),
        ("status" = Option<String>, Query, description = "Only jobs in this state: pending, \
            queued, sending, sent, deferred, bounced, failed, suppressed or cancelled"),
        ("after" = Option<Uuid>, Query, description = "The previous page's `next_after`"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of jobs", body = JobsBody),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        (status = 422, description = "An unknown `status`, an `after` that is not a job id, \
            `limit` out of range, or a repeated or unknown query parameter (`invalid_request`)",
            body = ErrorBody),
        TenantOnly,
    ))]
async fn list_jobs(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(campaign): IdPath,
    uri: Uri,
) -> ApiResult<Json<JobsBody>> {
    let states = JobStatus::ALL.map(JobStatus::as_str);
    let (status, paging) = list_query::<JobStatus>(&uri, &states)?;
    let mut client = connection(&state).await?;
    let tx = tenant_scope(&mut client, tenant).await?;
    let rows = store::campaign_lists::jobs_page(
        &tx,
        tenant,
        campaign,
        status,
        paging.after,
        paging.fetch(),
    )
    .await
    .map_err(campaign_error)?;
    commit(tx).await?;
    let (rows, next_after) = paging.page(rows, |j| j.id);
    Ok(Json(JobsBody {
        jobs: rows.into_iter().map(JobBody::from).collect(),
        next_after,
    }))
}
