//! `GET /v1/campaigns/{id}/events?after=&limit=` (tenant): the delivery events of
//! one campaign, oldest first → `{events: [{id, job_id, ip_id, kind, smtp_code,
//! enhanced_code, class, provider, reply, created_at, recipient}], next_after}`.
//!
//! Events are append-only and ids only grow, so paging by `after` = the last id
//! seen walks every event exactly once, also while new ones arrive (they land on
//! later pages). `next_after` is `null` on the last page; a client tailing the
//! campaign keeps polling with the last id it saw. A campaign of another tenant
//! (or none) answers 404.
//!
//! Kinds: `sent`, `deferred`, `bounced`, `failed`, `suppressed` (delivery),
//! `complaint`, `unsubscribed`, and `open` (first open per job) and `click` (first
//! click per job and link; `reply` holds the link's URL) from the tracking links.

use axum::Json;
use axum::extract::State;
use penguin_engine::store;
use penguin_engine::store::events_read::EventRow;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::Paging;
use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::IdPath;
use crate::openapi::TenantOnly;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// One delivery event.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EventBody {
    id: i64,
    job_id: Uuid,
    ip_id: Option<Uuid>,
    kind: String,
    smtp_code: Option<i32>,
    enhanced_code: Option<String>,
    class: Option<String>,
    provider: Option<String>,
    reply: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    recipient: Option<String>,
}

impl From<EventRow> for EventBody {
    fn from(e: EventRow) -> Self {
        EventBody {
            id: e.id,
            job_id: e.job_id,
            ip_id: e.ip_id,
            kind: e.kind,
            smtp_code: e.smtp_code,
            enhanced_code: e.enhanced_code,
            class: e.class,
            provider: e.provider,
            reply: e.reply,
            created_at: e.created_at,
            recipient: e.recipient,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct EventsBody {
    events: Vec<EventBody>,
    /// The `after` of the next page; null on the last page.
    next_after: Option<i64>,
}

/// The delivery events of a campaign of the calling tenant, oldest first.
///
/// Paged by event id: `after` = the last id seen walks every event exactly
/// once, also while new ones arrive.
#[utoipa::path(get, path = "/v1/campaigns/{id}/events", tag = "events",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The campaign"),
        ("after" = Option<i64>, Query, description = "Events after this id (default 0)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of events", body = EventsBody),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        (status = 422, description = "A malformed, repeated or unknown query parameter, \
            or `limit` out of range (`invalid_request`)", body = ErrorBody),
        TenantOnly,
    ))]
async fn list(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(campaign): IdPath,
    paging: Paging<i64>,
) -> ApiResult<Json<EventsBody>> {
    let after = paging.after.unwrap_or(0);
    if after < 0 {
        return Err(AppError::invalid("after must be an event id (0 or more)"));
    }
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let rows = store::events_read::events_page(&tx, tenant, campaign, after, paging.fetch())
        .await
        .map_err(AppError::missing("no such campaign"))?;
    super::commit(tx).await?;
    let (rows, next_after) = paging.page(rows, |e| e.id);
    Ok(Json(EventsBody {
        events: rows.into_iter().map(EventBody::from).collect(),
        next_after,
    }))
}
