//! Campaigns of the calling tenant: `POST /v1/campaigns` (create, `draft`),
//! `GET /v1/campaigns/{id}` (with job counts, `rates` and `eta`, see
//! `campaign_rates.rs`), and the lifecycle
//! `POST /v1/campaigns/{id}/start|pause|resume|cancel` → `{id, status}`.
//!
//! Create compiles the templates and dry-runs them without lead data under the
//! `[templates]` budget ([`crate::template_check`]): a template that already
//! breaks it answers 422 naming the field (`subject: …`, `text: …`, `html: …`).
//!
//! Lifecycle calls are idempotent (asking for the current state answers 200) and
//! refuse impossible transitions with 409. They take no field: the body is
//! empty or `{}`, and any other body is refused (400/413/415/422) before
//! anything changes. `pause` returns only once no job of the
//! campaign is `sending` (or `api.pause_drain_timeout_ms` passed: then the answer
//! carries `in_flight`), so after it returns no new SMTP transaction starts.
//! `start` honours an `Idempotency-Key` header: repeating a start with the key
//! that started the campaign answers that start again (200 `running`, header
//! `Idempotent-Replayed: true`) even if the campaign was paused since.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use deadpool_postgres::{Object, Transaction};
use penguin_engine::control::ControlEvent;
use penguin_engine::db::StoreError;
use penguin_engine::domain::{CampaignStatus, JobStatus, normalize_email};
use penguin_engine::store;
use penguin_engine::store::campaigns::{Campaign, NewCampaign, StartOutcome, StatusChange};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::Instant;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{commit, connection, tenant_scope};
use crate::AppState;
use crate::auth::TenantCaller;
use crate::campaign_rates::{self, RatesBody};
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{IdPath, JsonBody, NoFields, OptionalJsonBody};
use crate::openapi::{JsonBodyErrors, TenantOnly, string_enum};
use crate::template_check::{self, Templates};
use crate::validate::{self, SendWindow};

/// How often `pause` looks whether the campaign's SMTP transactions are done.
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// The default priority (normal band).
const DEFAULT_PRIORITY: i32 = 100;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(show))
        .routes(routes!(start))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel))
}

/// A new campaign. `subject`, `text` and `html` are templates: `{{field}}` is
/// the lead's field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCampaign {
    name: String,
    /// The sender's address.
    #[schema(example = "hello@sender.example.com")]
    from: String,
    from_name: Option<String>,
    #[schema(example = "Hi {{ first_name }}")]
    subject: String,
    text: String,
    html: Option<String>,
    /// The caller's IPs to send from (1 or more, no repeats).
    ip_ids: Vec<Uuid>,
    /// 0 to 1000, lower first; default 100.
    priority: Option<i32>,
    /// Most messages a day (positive).
    daily_cap: Option<i32>,
    send_window: Option<SendWindow>,
}

/// `draft`, `running`, `paused`, `completed` or `cancelled`.
fn campaign_status_schema() -> utoipa::openapi::schema::Object {
    use CampaignStatus::*;
    string_enum([Draft, Running, Paused, Completed, Cancelled].map(CampaignStatus::as_str))
}

/// A campaign as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
struct CampaignBody {
    id: Uuid,
    name: String,
    #[schema(schema_with = campaign_status_schema)]
    status: CampaignStatus,
    priority: i32,
    from: String,
    from_name: Option<String>,
    subject: String,
    text: String,
    html: Option<String>,
    ip_ids: Vec<Uuid>,
    daily_cap: Option<i32>,
    #[schema(value_type = Option<SendWindow>)]
    send_window: Option<Value>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    completed_at: Option<OffsetDateTime>,
}

/// A campaign with how many of its jobs are in each state.
#[derive(Debug, Serialize, ToSchema)]
struct CampaignWithCounts {
    #[serde(flatten)]
    campaign: CampaignBody,
    /// Jobs per state, every state present (`pending`, `queued`, `sending`,
    /// `sent`, `deferred`, `bounced`, `failed`, `suppressed`, `cancelled`).
    counts: BTreeMap<&'static str, i64>,
    /// Every job of the campaign.
    total: i64,
    /// Sending speed, outcomes and engagement (see each field).
    rates: RatesBody,
    /// When the remaining jobs would be done at `rates.finished_per_minute`;
    /// null when nothing is left, the campaign is not `running`, or no job
    /// finished in the last 5 minutes.
    #[serde(with = "time::serde::rfc3339::option")]
    eta: Option<OffsetDateTime>,
}

/// The answer of a lifecycle call.
#[derive(Debug, Serialize, ToSchema)]
struct CampaignState {
    id: Uuid,
    #[schema(schema_with = campaign_status_schema)]
    status: CampaignStatus,
    /// `pause` only, when `api.pause_drain_timeout_ms` passed first: SMTP
    /// transactions still under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<i64>,
}

impl From<Campaign> for CampaignBody {
    fn from(c: Campaign) -> Self {
        CampaignBody {
            id: c.id,
            name: c.name,
            status: c.status,
            priority: c.priority,
            from: c.from_address,
            from_name: c.from_name,
            subject: c.subject,
            text: c.text_body,
            html: c.html_body,
            ip_ids: c.ip_ids,
            daily_cap: c.daily_cap,
            send_window: c.send_window,
            created_at: c.created_at,
            started_at: c.started_at,
            completed_at: c.completed_at,
        }
    }
}

/// 404 names the campaign; everything else maps as usual.
fn campaign_error(err: StoreError) -> AppError {
    AppError::missing("no such campaign")(err)
}

/// Every check that needs neither the database nor a render, in request order.
fn validate_request(request: &CreateCampaign) -> ApiResult<String> {
    validate::header_text("name", &request.name, validate::MAX_NAME)?;
    let from = normalize_email(&request.from).map_err(|e| AppError::invalid_field("from", &e))?;
    if let Some(from_name) = &request.from_name {
        validate::header_text("from_name", from_name, validate::MAX_NAME)?;
    }
    validate::header_text("subject", &request.subject, validate::MAX_SUBJECT)?;
    validate::body_template("text", &request.text)?;
    if let Some(html) = &request.html {
        validate::body_template("html", html)?;
    }
    if request.ip_ids.is_empty() || request.ip_ids.len() > validate::MAX_CAMPAIGN_IPS {
        return Err(AppError::invalid(format!(
            "ip_ids must hold 1-{} IP ids",
            validate::MAX_CAMPAIGN_IPS
        )));
    }
    let mut seen = HashSet::new();
    if let Some(repeated) = request.ip_ids.iter().find(|id| !seen.insert(**id)) {
        return Err(AppError::invalid(format!("ip_ids lists {repeated} twice")));
    }
    if let Some(priority) = request.priority
        && !(0..=1000).contains(&priority)
    {
        return Err(AppError::invalid("priority must be between 0 and 1000"));
    }
    if let Some(cap) = request.daily_cap
        && cap <= 0
    {
        return Err(AppError::invalid("daily_cap must be positive"));
    }
    if let Some(window) = &request.send_window {
        validate::send_window(window)?;
    }
    Ok(from)
}

/// Creates a campaign of the calling tenant, in `draft`.
///
/// The From address must be under a verified sending domain of the tenant (the
/// domain itself or a parent of it; `POST /v1/domains`): 422
/// `domain_not_verified` otherwise (unless `domains.require_verified = false`).
#[utoipa::path(post, path = "/v1/campaigns", tag = "campaigns",
    security(("bearer" = [])),
    request_body = CreateCampaign,
    responses(
        (status = 201, description = "The campaign, `draft`", body = CampaignBody),
        (status = 422, description = "Invalid (`invalid_request`), or the From's domain is not a verified sending domain of the tenant (`domain_not_verified`, with `domains.require_verified`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn create(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateCampaign>,
) -> ApiResult<(StatusCode, Json<CampaignBody>)> {
    let from_address = validate_request(&request)?;
    let templates = Templates {
        from_address: from_address.clone(),
        from_name: request.from_name.clone(),
        subject: request.subject.clone(),
        text: request.text.clone(),
        html: request.html.clone(),
    };
    template_check::dry_run(&state.config.templates, templates).await?;

    let mut client = connection(&state).await?;
    let tx = tenant_scope(&mut client, tenant).await?;
    let owned: HashSet<Uuid> = store::ips::owned_ip_ids(&tx, tenant, &request.ip_ids)
        .await?
        .into_iter()
        .collect();
    let unknown: Vec<String> = request
        .ip_ids
        .iter()
        .filter(|id| !owned.contains(id))
        .map(Uuid::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(AppError::invalid(format!(
            "ip_ids: no such IP: {}",
            unknown.join(", ")
        )));
    }
    if state.config.domains.require_verified {
        let from_domain = penguin_engine::domain::email_domain(&from_address);
        if store::domains::verified_covering(&tx, tenant, from_domain)
            .await?
            .is_none()
        {
            return Err(AppError::domain_not_verified(from_domain));
        }
    }
    if let Some(timezone) = request
        .send_window
        .as_ref()
        .and_then(|w| w.timezone.as_ref())
        && !store::ips::timezone_exists(&state.pg, timezone).await?
    {
        return Err(AppError::invalid(format!(
            "send_window.timezone {timezone:?} is not a known timezone"
        )));
    }

    let send_window = request
        .send_window
        .map(|w| serde_json::to_value(w).map_err(|e| AppError::internal(e.to_string())))
        .transpose()?;
    let new = NewCampaign {
        tenant_id: tenant,
        id: Uuid::now_v7(),
        name: request.name,
        priority: request.priority.unwrap_or(DEFAULT_PRIORITY),
        from_address,
        from_name: request.from_name,
        subject: request.subject,
        text_body: request.text,
        html_body: request.html,
        ip_ids: request.ip_ids,
        daily_cap: request.daily_cap,
        send_window,
    };
    let campaign = store::campaigns::insert_campaign(&tx, &new).await?;
    commit(tx).await?;
    tracing::info!(tenant_id = %tenant, campaign_id = %campaign.id, "campaign created");
    Ok((StatusCode::CREATED, Json(campaign.into())))
}

/// One campaign of the calling tenant, with its job counts per state, its
/// `rates` (speed over the last 5 minutes, outcome and engagement fractions)
/// and `eta`.
#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The campaign")),
    responses(
        (status = 200, description = "The campaign and its counts", body = CampaignWithCounts),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        TenantOnly,
    ))]
async fn show(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<CampaignWithCounts>> {
    let mut client = connection(&state).await?;
    let tx = tenant_scope(&mut client, tenant).await?;
    let campaign = store::campaigns::tenant_campaign(&tx, tenant, id)
        .await
        .map_err(campaign_error)?;
    let counts = store::jobs::counts_by_status(&tx, tenant, id).await?;
    let now = OffsetDateTime::now_utc();
    let (since, until) = campaign_rates::window(now);
    let activity = store::stats::campaign_activity(&tx, tenant, id, since, until).await?;
    commit(tx).await?;
    let mut by_status: BTreeMap<&'static str, i64> = JobStatus::ALL
        .iter()
        .map(|status| (status.as_str(), 0))
        .collect();
    let mut total = 0;
    for (status, count) in counts {
        by_status.insert(status.as_str(), count);
        total += count;
    }
    let rates = RatesBody::new(&by_status, &activity);
    let eta = campaign_rates::eta(campaign.status, &by_status, &activity, now);
    Ok(Json(CampaignWithCounts {
        campaign: campaign.into(),
        counts: by_status,
        total,
        rates,
        eta,
    }))
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

/// Starts a campaign: `draft` → `running`, one job per lead.
///
/// Idempotent: starting a running campaign answers 200; any other state is 409
/// (a paused campaign is resumed, not started). With an `Idempotency-Key`,
/// repeating the key that started the campaign answers that start again (200
/// `running`, `Idempotent-Replayed: true`), even after a pause.
#[utoipa::path(post, path = "/v1/campaigns/{id}/start", tag = "campaigns",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The campaign"),
        ("Idempotency-Key" = Option<String>, Header,
         description = "1–255 visible ASCII characters; a repeat of the key that started the campaign replays that start"),
    ),
    request_body = Option<NoFields>,
    responses(
        (status = 200, description = "The campaign's status", body = CampaignState,
         headers(("Idempotent-Replayed" = String, description = "`true` when this answer replays an earlier start with the same key"))),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        (status = 409, description = "Not possible from the current status (`conflict`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
        (status = 422, description = "A malformed `Idempotency-Key`, or a body other than `{}` \
            (`invalid_request`)", body = ErrorBody),
    ))]
async fn start(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
    OptionalJsonBody(_): OptionalJsonBody<NoFields>,
) -> ApiResult<Response> {
    let key = validate::idempotency_key(&headers)?;
    let mut client = connection(&state).await?;
    let outcome = in_tenant_tx(&mut client, tenant, async |tx| {
        store::campaigns::start_campaign(tx, tenant, id, key.as_deref()).await
    })
    .await?;
    drop(client);
    Ok(match outcome {
        StartOutcome::Change(change) => answer(&state, tenant, id, change).await.into_response(),
        StartOutcome::Replayed => {
            let body = Json(CampaignState {
                id,
                status: CampaignStatus::Running,
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

/// Pauses a running campaign.
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
    let Json(mut body) = answer(&state, tenant, id, change).await;
    let in_flight = wait_for_drain(&state, tenant, id).await?;
    if in_flight > 0 {
        tracing::warn!(tenant_id = %tenant, campaign_id = %id, in_flight, "pause returned with SMTP transactions still under way");
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

/// Resumes a paused campaign. Idempotent; an impossible transition is 409.
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
        store::campaigns::resume_campaign(tx, tenant, id).await
    })
    .await?;
    drop(client);
    Ok(answer(&state, tenant, id, change).await)
}

/// Cancels a campaign: every job not yet handed to SMTP is cancelled (those
/// `sending` finish their attempt). Idempotent; an impossible transition is 409.
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
    Ok(answer(&state, tenant, id, change).await)
}
