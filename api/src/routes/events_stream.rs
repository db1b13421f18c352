//! `GET /v1/events?after=&limit=&kind=&campaign_id=` (tenant): every delivery
//! event of the calling tenant, all campaigns, as one stream, oldest first →
//! `{events: [{id, campaign_id, job_id, ip_id, kind, smtp_code, enhanced_code,
//! class, provider, reply, created_at, recipient}], next_after}`.
//!
//! Paged by event id like a campaign's events: `after` = the previous page's
//! `next_after` walks every event once, also while new ones arrive; a client
//! tailing the tenant keeps polling with it. `kind` keeps only the kinds given
//! (comma-separated; the webhook names `opened`, `clicked`, `complained` are
//! taken for `open`, `click`, `complaint`); `campaign_id` one campaign's. A page
//! reads at most `store::events_read::STREAM_SCAN` events whatever `kind`
//! filters out, so a page may be short (even empty) with a `next_after`: keep
//! following it; `null` means the end of the stream for now.

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use penguin_engine::store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::events::EventBody;
use super::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::openapi::TenantOnly;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

/// The kinds of delivery events the engine records, as stored.
pub const KINDS: [&str; 13] = [
    "sent",
    "deferred",
    "bounced",
    "failed",
    "suppressed",
    "delayed",
    "complaint",
    "unsubscribed",
    "open",
    "click",
    "replied",
    "auto_replied",
    "campaign_completed",
];

/// A kind by its stored name or its webhook name.
fn kind(name: &str) -> Option<&'static str> {
    let name = match name {
        "opened" => "open",
        "clicked" => "click",
        "complained" => "complaint",
        other => other,
    };
    KINDS.into_iter().find(|k| *k == name)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    after: Option<i64>,
    limit: Option<i64>,
    kind: Option<String>,
    campaign_id: Option<Uuid>,
}

/// The query, checked.
struct StreamParams {
    after: i64,
    limit: i64,
    kinds: Vec<String>,
    campaign: Option<Uuid>,
}

impl<S: Send + Sync> FromRequestParts<S> for StreamParams {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        let Query(q) = Query::<StreamQuery>::try_from_uri(&parts.uri)
            .map_err(|rejection| AppError::invalid(rejection.body_text()))?;
        let limit = q.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(AppError::invalid(format!(
                "limit must be between 1 and {MAX_PAGE_LIMIT}"
            )));
        }
        let after = q.after.unwrap_or(0);
        if after < 0 {
            return Err(AppError::invalid("after must be an event id (0 or more)"));
        }
        let mut kinds = Vec::new();
        if let Some(list) = &q.kind {
            for name in list.split(',').map(str::trim) {
                let Some(k) = kind(name) else {
                    return Err(AppError::invalid(format!(
                        "kind {:?} is not one of {}",
                        name.chars().take(40).collect::<String>(),
                        KINDS.join(", ")
                    )));
                };
                if !kinds.iter().any(|x| x == k) {
                    kinds.push(k.to_string());
                }
            }
        }
        Ok(StreamParams {
            after,
            limit,
            kinds,
            campaign: q.campaign_id,
        })
    }
}

/// One event of the stream: a campaign's event (`GET /v1/campaigns/{id}/events`)
/// and its campaign.
#[derive(Debug, Serialize, ToSchema)]
struct StreamEventBody {
    campaign_id: Uuid,
    #[serde(flatten)]
    event: EventBody,
}

#[derive(Debug, Serialize, ToSchema)]
struct StreamBody {
    events: Vec<StreamEventBody>,
    /// The `after` of the next page; null at the end of the stream (for now).
    next_after: Option<i64>,
}

/// Every delivery event of the calling tenant, all campaigns, oldest first.
///
/// Paged by event id: `after` = the previous page's `next_after` walks every
/// event once, also while new ones arrive. A page may be short or empty with a
/// `next_after` when `kind` filters much out: keep following it.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    security(("bearer" = [])),
    params(
        ("after" = Option<i64>, Query, description = "Events after this id (default 0)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
        ("kind" = Option<String>, Query, description = "Only these kinds, comma-separated \
            (sent, deferred, bounced, failed, suppressed, delayed, complaint, unsubscribed, \
            open, click, replied, auto_replied, campaign_completed; opened, clicked, complained too)"),
        ("campaign_id" = Option<Uuid>, Query, description = "Only this campaign's events"),
    ),
    responses(
        (status = 200, description = "A page of events", body = StreamBody),
        (status = 422, description = "A malformed, repeated or unknown query parameter, an unknown \
            kind, or `limit` out of range (`invalid_request`)", body = ErrorBody),
        TenantOnly,
    ))]
async fn stream(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    params: StreamParams,
) -> ApiResult<Json<StreamBody>> {
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let page = store::events_read::stream_page(
        &tx,
        tenant,
        params.campaign,
        params.after,
        &params.kinds,
        params.limit + 1,
    )
    .await?;
    super::commit(tx).await?;
    let mut events = page.events;
    let limit = usize::try_from(params.limit).unwrap_or(usize::MAX);
    let next_after = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| e.event.id)
    } else if page.scan_full {
        page.scanned_to
    } else {
        None
    };
    Ok(Json(StreamBody {
        events: events
            .into_iter()
            .map(|e| StreamEventBody {
                campaign_id: e.campaign_id,
                event: EventBody::from(e.event),
            })
            .collect(),
        next_after,
    }))
}
