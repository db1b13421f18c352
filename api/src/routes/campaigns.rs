//! Campaigns of the calling tenant: `POST /v1/campaigns` (create, `draft`),
//! `GET /v1/campaigns/{id}` (with job counts), and the lifecycle
//! `POST /v1/campaigns/{id}/start|pause|resume|cancel` → `{id, status}`.
//!
//! Lifecycle calls are idempotent (asking for the current state answers 200) and
//! refuse impossible transitions with 409. `pause` returns only once no job of the
//! campaign is `sending` (or `api.pause_drain_timeout_ms` passed: then the answer
//! carries `in_flight`), so after it returns no new SMTP transaction starts.
//! `start` honours an `Idempotency-Key` header: repeating a start with the key
//! that started the campaign answers that start again (200 `running`, header
//! `Idempotent-Replayed: true`) even if the campaign was paused since.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use penguin_engine::control::ControlEvent;
use penguin_engine::db::StoreError;
use penguin_engine::domain::{CampaignStatus, JobStatus, normalize_email};
use penguin_engine::message::CampaignTemplate;
use penguin_engine::store;
use penguin_engine::store::campaigns::{Campaign, NewCampaign, StartOutcome, StatusChange};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;
use uuid::Uuid;

use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::{ApiResult, AppError};
use crate::extract::{IdPath, JsonBody};
use crate::validate::{self, SendWindow};

/// How often `pause` looks whether the campaign's SMTP transactions are done.
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// The default priority (normal band).
const DEFAULT_PRIORITY: i32 = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/campaigns", post(create))
        .route("/v1/campaigns/{id}", get(show))
        .route("/v1/campaigns/{id}/start", post(start))
        .route("/v1/campaigns/{id}/pause", post(pause))
        .route("/v1/campaigns/{id}/resume", post(resume))
        .route("/v1/campaigns/{id}/cancel", post(cancel))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCampaign {
    name: String,
    from: String,
    from_name: Option<String>,
    subject: String,
    text: String,
    html: Option<String>,
    ip_ids: Vec<Uuid>,
    priority: Option<i32>,
    daily_cap: Option<i32>,
    send_window: Option<SendWindow>,
}

/// A campaign as the API shows it.
#[derive(Debug, Serialize)]
struct CampaignBody {
    id: Uuid,
    name: String,
    status: CampaignStatus,
    priority: i32,
    from: String,
    from_name: Option<String>,
    subject: String,
    text: String,
    html: Option<String>,
    ip_ids: Vec<Uuid>,
    daily_cap: Option<i32>,
    send_window: Option<Value>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    completed_at: Option<OffsetDateTime>,
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
    match err {
        StoreError::NotFound => AppError::not_found("no such campaign"),
        other => other.into(),
    }
}

/// Every check that needs no database, in request order.
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
    CampaignTemplate::compile(
        &from,
        request.from_name.as_deref(),
        &request.subject,
        &request.text,
        request.html.as_deref(),
    )
    .map_err(|e| AppError::invalid(e.to_string()))?;
    Ok(from)
}

async fn create(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateCampaign>,
) -> ApiResult<(StatusCode, Json<CampaignBody>)> {
    let from_address = validate_request(&request)?;

    let owned: HashSet<Uuid> = store::ips::owned_ip_ids(&state.pg, tenant, &request.ip_ids)
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
    let campaign = store::campaigns::insert_campaign(&state.pg, &new).await?;
    tracing::info!(tenant_id = %tenant, campaign_id = %campaign.id, "campaign created");
    Ok((StatusCode::CREATED, Json(campaign.into())))
}

async fn show(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<Value>> {
    let campaign = store::campaigns::tenant_campaign(&state.pg, tenant, id)
        .await
        .map_err(campaign_error)?;
    let counts = store::jobs::counts_by_status(&state.pg, tenant, id).await?;
    let mut by_status: Map<String, Value> = JobStatus::ALL
        .iter()
        .map(|status| (status.as_str().to_string(), json!(0)))
        .collect();
    let mut total = 0;
    for (status, count) in counts {
        by_status.insert(status.as_str().to_string(), json!(count));
        total += count;
    }
    let mut body = serde_json::to_value(CampaignBody::from(campaign))
        .map_err(|e| AppError::internal(e.to_string()))?;
    body["counts"] = Value::Object(by_status);
    body["total"] = json!(total);
    Ok(Json(body))
}

/// Publishes the campaign's state (also when unchanged: a retried call repairs a
/// lost notification) and answers `{id, status}`.
async fn answer(state: &AppState, tenant: Uuid, id: Uuid, change: StatusChange) -> Json<Value> {
    let event = ControlEvent::CampaignChanged {
        tenant_id: tenant,
        campaign_id: id,
        status: change.status,
    };
    super::publish(state, event).await;
    if change.changed {
        tracing::info!(tenant_id = %tenant, campaign_id = %id, status = %change.status, "campaign status changed");
    }
    Json(json!({ "id": id, "status": change.status }))
}

async fn start(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = validate::idempotency_key(&headers)?;
    let outcome = store::campaigns::start_campaign(&state.pg, tenant, id, key.as_deref())
        .await
        .map_err(campaign_error)?;
    Ok(match outcome {
        StartOutcome::Change(change) => answer(&state, tenant, id, change).await.into_response(),
        StartOutcome::Replayed => {
            let body = Json(json!({ "id": id, "status": CampaignStatus::Running }));
            let mut response = body.into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
    })
}

async fn pause(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<Value>> {
    let change = store::campaigns::pause_campaign(&state.pg, tenant, id)
        .await
        .map_err(campaign_error)?;
    let Json(mut body) = answer(&state, tenant, id, change).await;
    let in_flight = wait_for_drain(&state, tenant, id).await?;
    if in_flight > 0 {
        tracing::warn!(tenant_id = %tenant, campaign_id = %id, in_flight, "pause returned with SMTP transactions still under way");
        body["in_flight"] = json!(in_flight);
    }
    Ok(Json(body))
}

/// Waits until no job of the campaign is `sending`, at most
/// `api.pause_drain_timeout_ms`; returns how many still are.
async fn wait_for_drain(state: &AppState, tenant: Uuid, id: Uuid) -> ApiResult<i64> {
    let deadline = Instant::now() + Duration::from_millis(state.config.api.pause_drain_timeout_ms);
    loop {
        let sending = store::campaigns::sending_count(&state.pg, tenant, id).await?;
        if sending == 0 || Instant::now() >= deadline {
            return Ok(sending);
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

async fn resume(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<Value>> {
    let change = store::campaigns::resume_campaign(&state.pg, tenant, id)
        .await
        .map_err(campaign_error)?;
    Ok(answer(&state, tenant, id, change).await)
}

async fn cancel(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<Value>> {
    let change = store::campaigns::cancel_campaign(&state.pg, tenant, id)
        .await
        .map_err(campaign_error)?;
    Ok(answer(&state, tenant, id, change).await)
}
