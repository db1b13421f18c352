//! SMTP IPs: `POST /v1/tenants/{id}/ips` (admin) adds one to a tenant;
//! `GET /v1/ips` and `GET /v1/ips/{id}` show them — every IP to the admin, its own
//! to a tenant (a foreign id is 404).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use penguin_engine::control::ControlEvent;
use penguin_engine::db::StoreError;
use penguin_engine::store;
use penguin_engine::store::ips::{IpView, NewIp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{AdminCaller, Caller};
use crate::error::{ApiResult, AppError};
use crate::extract::{IdPath, JsonBody};
use crate::validate;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{id}/ips", post(create))
        .route("/v1/ips", get(list))
        .route("/v1/ips/{id}", get(show))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateIp {
    address: String,
    helo_name: String,
    /// Absent: the IP is already warm.
    warmup_schedule: Option<String>,
    /// IANA name; the IP's day (caps, warm-up) runs in it. Default `UTC`.
    timezone: Option<String>,
}

/// An IP as the API shows it.
#[derive(Debug, Serialize)]
struct Ip {
    id: Uuid,
    tenant_id: Uuid,
    address: String,
    helo_name: String,
    status: String,
    status_reason: Option<String>,
    warmup_schedule: Option<String>,
    warmup_day: i32,
    /// The schedule's volume for today's warm-up day; null without a schedule.
    warmup_daily_volume: Option<i64>,
    timezone: String,
    sent_today: i64,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl From<IpView> for Ip {
    fn from(ip: IpView) -> Self {
        Ip {
            id: ip.id,
            tenant_id: ip.tenant_id,
            address: ip.address.to_string(),
            helo_name: ip.helo_name,
            status: ip.status,
            status_reason: ip.status_reason,
            warmup_schedule: ip.warmup_schedule,
            warmup_day: ip.warmup_day,
            warmup_daily_volume: ip.warmup_daily_volume,
            timezone: ip.timezone,
            sent_today: ip.sent_today,
            created_at: ip.created_at,
        }
    }
}

async fn create(
    _: AdminCaller,
    State(state): State<AppState>,
    IdPath(tenant_id): IdPath,
    JsonBody(request): JsonBody<CreateIp>,
) -> ApiResult<(StatusCode, Json<Ip>)> {
    let address = validate::ip_address(&request.address)?;
    let helo_name = validate::hostname("helo_name", &request.helo_name)?;
    let timezone = request.timezone.unwrap_or_else(|| "UTC".to_string());
    validate::timezone_shape("timezone", &timezone)?;
    if let Some(schedule) = &request.warmup_schedule {
        validate::schedule_name(schedule)?;
    }

    if !store::tenants::tenant_exists(&state.pg, tenant_id).await? {
        return Err(AppError::not_found("no such tenant"));
    }
    if let Some(schedule) = &request.warmup_schedule
        && !store::ips::warmup_schedule_exists(&state.pg, schedule).await?
    {
        return Err(AppError::invalid(format!(
            "warmup_schedule {schedule:?} does not exist"
        )));
    }
    if !store::ips::timezone_exists(&state.pg, &timezone).await? {
        return Err(AppError::invalid(format!(
            "timezone {timezone:?} is not a known timezone"
        )));
    }

    let new = NewIp {
        tenant_id,
        id: Uuid::now_v7(),
        address,
        helo_name,
        warmup_schedule: request.warmup_schedule,
        timezone,
    };
    let ip = store::ips::insert_ip(&state.pg, &new)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                AppError::conflict(format!("address {address} is already registered"))
            }
            other => other.into(),
        })?;
    super::publish(&state, ControlEvent::TenantChanged { tenant_id }).await;
    tracing::info!(%tenant_id, ip_id = %ip.id, %address, "IP added");
    Ok((StatusCode::CREATED, Json(ip.into())))
}

async fn list(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let ips = match caller {
        Caller::Admin => store::ips::all_ips(&state.pg).await?,
        Caller::Tenant(tenant) => store::ips::tenant_ips(&state.pg, tenant).await?,
    };
    let ips: Vec<Ip> = ips.into_iter().map(Ip::from).collect();
    Ok(Json(json!({ "ips": ips })))
}

async fn show(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<Ip>> {
    let ip = match caller {
        Caller::Admin => store::ips::ip_by_id(&state.pg, id).await,
        Caller::Tenant(tenant) => store::ips::tenant_ip(&state.pg, tenant, id).await,
    };
    match ip {
        Ok(ip) => Ok(Json(ip.into())),
        Err(StoreError::NotFound) => Err(AppError::not_found("no such IP")),
        Err(other) => Err(other.into()),
    }
}
