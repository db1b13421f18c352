//! The campaign lifecycle: `POST /v1/campaigns/{id}/start|pause|resume|cancel`
//! → `{id, status}`.
//!
//! Lifecycle calls are idempotent (asking for the current state answers 200) and
//! refuse impossible transitions with 409. `pause`, `resume` and `cancel` take
//! no field: the body is empty or `{}`; `start` takes only an optional
//! `start_at` (RFC 3339: a future time schedules the campaign, see
//! `store::campaigns::start_campaign_at`). Any other body is refused
//! (400/413/415/422) before anything changes. `pause` returns only once no job of the
//! campaign is `sending` (or `api.pause_drain_timeout_ms` passed: then the answer
//! carries `in_flight`), so after it returns no new SMTP transaction starts.
//! `start` honours an `Idempotency-Key` header: repeating a start with the key
//! that started the campaign answers that start again (200 with the status it
//! gave, `running` or `scheduled`, header `Idempotent-Replayed: true`) even if
//! the campaign was paused since. A paused scheduled campaign resumes to
//! `scheduled` while its `start_at` is ahead, else to `running`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use deadpool_postgres::{Object, Transaction};
use penguin_engine::control::ControlEvent;
use penguin_engine::db::StoreError;
use penguin_engine::domain::CampaignStatus;
use penguin_engine::store;
use penguin_engine::store::campaigns::{StartOutcome, StatusChange};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::campaigns::{campaign_error, campaign_status_schema};
use super::{commit, connection, tenant_scope};
use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{IdPath, NoFields, OptionalJsonBody};
use crate::openapi::{JsonBodyErrors, TenantOnly};
use crate::validate;

/// How often `pause` looks whether the campaign's SMTP transactions are done.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// The furthest ahead a start may be scheduled.
const MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(366 * 86_400);

/// The body of `start`: `{}` or `{"start_at": "…"}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ToSchema)]
struct StartRequest {
    /// RFC 3339. After now: the campaign becomes `scheduled` and starts by
    /// itself then (at most 366 days ahead). Absent, null or past: it starts now.
    #[schema(example = "2030-01-01T09:00:00Z")]
    start_at: Option<OffsetDateTime>,
}

/// Read by hand, like `NoFields`: only an object, only `start_at` (a string or
/// null), so an array or an unknown field is refused with serde's message.
impl<'de> Deserialize<'de> for StartRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        if let Some(field) = object.keys().find(|k| *k != "start_at") {
            return Err(D::Error::unknown_field(field, &["start_at"]));
        }
        let start_at = match object.get("start_at") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) => {
                Some(OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
                    D::Error::custom(
                        "start_at must be an RFC 3339 date-time, e.g. 2030-01-01T09:00:00Z",
                    )
                })?)
            }
            Some(_) => {
                return Err(D::Error::custom(
                    "start_at must be a string (RFC 3339) or null",
                ));
            }
        };
        Ok(StartRequest { start_at })
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel))
}

/// The answer of a lifecycle call.
#[derive(Debug, Serialize, ToSchema)]
struct CampaignState {
    id: Uuid,
    #[schema(schema_with = campaign_status_schema)]
    status: CampaignStatus,
    /// `pause` and `cancel`, when `api.pause_drain_timeout_ms` passed first:
    /// SMTP transactions still under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<i64>,
}

/// Runs one lifecycle call in a tenant transaction on `client` and commits it;
/// a missing campaign is 404 "no such campaign".
async fn in_tenant_tx<T>(
    client: &mut Object,
    tenant: Uuid,
    call: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> ApiResult<T> {
    let tx = tenant_scope(client, tenant).await?;
    let out = call(&tx).await.map_err(campaign_error)?;
    commit(tx).await?;
    Ok(out)
}

/// Publishes the campaign's state (also when unchanged: a retried call repairs a
/// lost notification) and answers `{id, status}`.
async fn answer(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
    change: StatusChange,
) -> Json<CampaignState> {
    let event = ControlEvent::CampaignChanged {
        tenant_id: tenant,
        campaign_id: id,
        status: change.status,
    };
    super::publish(state, event).await;
    if change.changed {
        tracing::info!(tenant_id = %tenant, campaign_id = %id, status = %change.status, "campaign status changed");
    }
    Json(CampaignState {
        id,
        status: change.status,
        in_flight: None,
    })
}

/// Starts a campaign now (`draft` → `running`) or at `start_at`
/// (`draft` → `scheduled`), one job per lead.
///
/// A scheduled campaign starts by itself at `start_at` on the node that owns
/// its tenant; nothing of it is sent before. Starting a scheduled campaign
/// again moves its start to the new future `start_at`, or starts it now
/// without one. Idempotent: starting a running campaign answers 200; any other
/// state is 409 (a paused campaign is resumed, not started). With an
/// `Idempotency-Key`, repeating the key that started the campaign answers that
/// start again (200 with the status it gave, `Idempotent-Replayed: true`),
/// even after a pause.
#[utoipa::path(post, path = "/v1/campaigns/{id}/start", tag = "campaigns",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The campaign"),
        ("Idempotency-Key" = Option<String>, Header,
         description = "1–255 visible ASCII characters; a repeat of the key that started the campaign replays that start"),
    ),
    request_body = Option<StartRequest>,
    responses(
        (status = 200, description = "The campaign's status", body = CampaignState,
         headers(("Idempotent-Replayed" = String, description = "`true` when this answer replays an earlier start with the same key"))),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        (status = 409, description = "Not possible from the current status (`conflict`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
        (status = 422, description = "A malformed `Idempotency-Key`, a body other than `{}` or \
            `{\"start_at\"}`, or a `start_at` that is not RFC 3339 or over 366 days ahead \
            (`invalid_request`)", body = ErrorBody),
    ))]
async fn start(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
    OptionalJsonBody(body): OptionalJsonBody<StartRequest>,
) -> ApiResult<Response> {
    let key = validate::idempotency_key(&headers)?;
    let start_at = body.unwrap_or_default().start_at;
    let now = OffsetDateTime::now_utc();
    if start_at.is_some_and(|at| at > now + MAX_SCHEDULE_AHEAD) {
        return Err(AppError::invalid("start_at must be at most 366 days ahead"));
    }
    let mut client = connection(&state).await?;
    let outcome = in_tenant_tx(&mut client, tenant, async |tx| {
        store::campaigns::start_campaign_at(tx, tenant, id, key.as_deref(), start_at, now).await
    })
    .await?;
    drop(client);
    Ok(match outcome {
        StartOutcome::Change(change) => answer(&state, tenant, id, change).await.into_response(),
        StartOutcome::Replayed(status) => {
            let body = Json(CampaignState {
                id,
                status,
                in_flight: None,
            });
            let mut response = body.into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
    })
}

/// Pauses a running or scheduled campaign (a paused scheduled campaign does not start).
///
/// Returns once no job of the campaign is `sending` (or after
/// `api.pause_drain_timeout_ms`: then the answer carries `in_flight`), so no
/// new SMTP transaction starts after it. Idempotent; an impossible transition
/// is 409.
#[utoipa::path(post, path = "/v1/campaigns/{id}/pause", tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The campaign")),
    request_body = Option<NoFields>,
    responses(
        (status = 200, description = "The campaign's status", body = CampaignState),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        (status = 409, description = "Not possible from the current status (`conflict`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn pause(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    OptionalJsonBody(_): OptionalJsonBody<NoFields>,
) -> ApiResult<Json<CampaignState>> {
    let mut client = connection(&state).await?;
    let change = in_tenant_tx(&mut client, tenant, async |tx| {
        store::campaigns::pause_campaign(tx, tenant, id).await
    })
    .await?;
    // Back to the pool while the drain is awaited: waiting pauses hold none.
    drop(client);
    answer_drained(&state, tenant, id, change, "pause").await
}

/// [`answer`] once no job of the campaign is `sending` ([`wait_for_drain`]),
/// with `in_flight` when the drain timed out first.
async fn answer_drained(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
    change: StatusChange,
    call: &'static str,
) -> ApiResult<Json<CampaignState>> {
    let Json(mut body) = answer(state, tenant, id, change).await;
    let in_flight = wait_for_drain(state, tenant, id).await?;
    if in_flight > 0 {
        tracing::warn!(tenant_id = %tenant, campaign_id = %id, in_flight, call, "returned with SMTP transactions still under way");
        body.in_flight = Some(in_flight);
    }
    Ok(Json(body))
}

/// Waits until no job of the campaign is `sending`, at most
/// `api.pause_drain_timeout_ms`; returns how many still are. Each look is its
/// own short tenant transaction on a connection taken from the pool for that
/// look only, so pauses waiting for their drain never hold the API's pool.
async fn wait_for_drain(state: &AppState, tenant: Uuid, id: Uuid) -> ApiResult<i64> {
    let deadline = Instant::now() + Duration::from_millis(state.config.api.pause_drain_timeout_ms);
    loop {
        let mut client = connection(state).await?;
        let tx = tenant_scope(&mut client, tenant).await?;
        let sending = store::campaigns::sending_count(&tx, tenant, id).await?;
        commit(tx).await?;
        drop(client);
        if sending == 0 || Instant::now() >= deadline {
            return Ok(sending);
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Resumes a paused campaign: `scheduled` again while its `start_at` is
/// ahead, else `running`. Idempotent; an impossible transition is 409.
#[utoipa::path(post, path = "/v1/campaigns/{id}/resume", tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The campaign")),
    request_body = Option<NoFields>,
    responses(
        (status = 200, description = "The campaign's status", body = CampaignState),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        (status = 409, description = "Not possible from the current status (`conflict`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn resume(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    OptionalJsonBody(_): OptionalJsonBody<NoFields>,
) -> ApiResult<Json<CampaignState>> {
    let mut client = connection(&state).await?;
    let change = in_tenant_tx(&mut client, tenant, async |tx| {
        store::campaigns::resume_campaign(tx, tenant, id, OffsetDateTime::now_utc()).await
    })
    .await?;
    drop(client);
    Ok(answer(&state, tenant, id, change).await)
}

/// Cancels a campaign.
///
/// Nothing more of it is claimed from the moment the cancel commits; every
/// job not yet handed to SMTP is `cancelled` at once. The call then waits, as
/// `pause` does (at most `api.pause_drain_timeout_ms`; the answer carries
/// `in_flight` when that passed first), for the SMTP transactions under way:
/// each ends with its real outcome — a 250 is `sent`, because the message
/// left — except that a 4xx or an attempt abandoned before SMTP ends
/// `cancelled`, never `deferred` or `pending`. So the campaign ends with no
/// job `pending`, `queued`, `sending` or `deferred`. Idempotent; an impossible
/// transition is 409.
#[utoipa::path(post, path = "/v1/campaigns/{id}/cancel", tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The campaign")),
    request_body = Option<NoFields>,
    responses(
        (status = 200, description = "The campaign's status", body = CampaignState),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        (status = 409, description = "Not possible from the current status (`conflict`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn cancel(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    OptionalJsonBody(_): OptionalJsonBody<NoFields>,
) -> ApiResult<Json<CampaignState>> {
    let mut client = connection(&state).await?;
    let change = in_tenant_tx(&mut client, tenant, async |tx| {
        store::campaigns::cancel_campaign(tx, tenant, id).await
    })
    .await?;
    drop(client);
    let body = answer_drained(&state, tenant, id, change, "cancel").await?;
    // An outcome or release that raced the cancel's commit may have put a job
    // back in the backlog before it could see the campaign cancelled.
    let mut client = connection(&state).await?;
    let swept = in_tenant_tx(&mut client, tenant, async |tx| {
        store::campaigns::sweep_cancelled(tx, tenant, id).await
    })
    .await?;
    if swept > 0 {
        tracing::info!(tenant_id = %tenant, campaign_id = %id, swept, "jobs returned during the cancel were cancelled");
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StartRequest, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn start_takes_only_an_optional_rfc3339_start_at() {
        assert_eq!(parse("{}"), Ok(StartRequest::default()));
        assert_eq!(parse(r#"{"start_at":null}"#), Ok(StartRequest::default()));
        let at = parse(r#"{"start_at":"2030-01-06T09:00:00+01:00"}"#).unwrap();
        assert_eq!(at.start_at.map(|t| t.unix_timestamp()), Some(1_893_916_800));
        for bad in [
            r#"{"start_at":"2030-01-06 09:00"}"#,
            r#"{"start_at":1893916800}"#,
            r#"{"start_at":"2030-01-06T09:00:00Z","x":1}"#,
            r#"["2030-01-06T09:00:00Z"]"#,
            r#""2030-01-06T09:00:00Z""#,
        ] {
            assert!(parse(bad).is_err(), "{bad} must be refused");
        }
        assert!(
            parse(r#"{"at":1}"#)
                .unwrap_err()
                .contains("unknown field `at`")
        );
    }
}
