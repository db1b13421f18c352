//! SMTP IPs:
//!
//! - `POST /v1/tenants/{id}/ips` (admin) `{address, helo_name, warmup_schedule?,
//!   timezone?, active_hours?: {start, end}}` adds one to a tenant → 201 IP.
//! - `GET /v1/ips` → `{ips: [IP]}` and `GET /v1/ips/{id}` → IP: every IP to the
//!   admin, its own to a tenant (a foreign id is 404).
//! - `POST /v1/ips/{id}/pause` `{reason?}` and `POST /v1/ips/{id}/resume` (admin
//!   or the owning tenant; the body may be empty) → 200 IP; idempotent.
//! - `DELETE /v1/ips/{id}` (admin) retires it → 204; 409 while a campaign that
//!   can still send lists it (see `store::ip_retire`). A retired IP stays
//!   readable by id (`status: retired`) but leaves every list.
//!
//! An IP is shown as [`IpBody`] (allowance, quota, usage, health and state at
//! this instant, and the shaping actions in force on it). Every change publishes `TenantChanged` so the node owning the
//! tenant reloads its IPs at once.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use penguin_engine::control::ControlEvent;
use penguin_engine::db::StoreError;
use penguin_engine::store;
use penguin_engine::store::audit::{self, Actor, Entry};
use penguin_engine::store::ips::{NewIp, StatusChange};
use penguin_engine::store::shaping_actions;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{AdminCaller, Caller};
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{IdPath, JsonBody, NoFields, OptionalJsonBody};
use crate::ip_view::IpBody;
use crate::openapi::{AdminOnly, AnyCaller, JsonBodyErrors};
use crate::validate::{self, ActiveHours};

/// The reason of a pause through the API that gives none.
pub const DEFAULT_PAUSE_REASON: &str = "paused through the API";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(list))
        .routes(routes!(show, retire))
        .routes(routes!(pause))
        .routes(routes!(resume))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateIp {
    /// An IPv4 or IPv6 address of this host, not yet registered.
    #[schema(example = "203.0.113.7")]
    address: String,
    /// The name the IP says in EHLO.
    #[schema(example = "mta1.example.com")]
    helo_name: String,
    /// Absent: the IP is already warm.
    warmup_schedule: Option<String>,
    /// IANA name; the IP's day (caps, warm-up) runs in it. Default `UTC`.
    timezone: Option<String>,
    /// The local hours it sends in; default the whole day (0 to 24).
    active_hours: Option<ActiveHours>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PauseIp {
    /// At most 200 characters, no control characters; default
    /// "paused through the API".
    reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct IpList {
    ips: Vec<IpBody>,
}

/// Adds an SMTP IP to a tenant (admin).
///
/// Validates everything, then inserts the IP; 201 with the IP, 404 for an
/// unknown tenant, 409 for a taken address. Without `warmup_schedule` the IP
/// counts as already warm (no ramp).
#[utoipa::path(post, path = "/v1/tenants/{id}/ips", tag = "ips",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The tenant")),
    request_body = CreateIp,
    responses(
        (status = 201, description = "The IP", body = IpBody),
        (status = 404, description = "No such tenant (`not_found`)", body = ErrorBody),
        (status = 409, description = "The address is already registered (`conflict`)", body = ErrorBody),
        AdminOnly, JsonBodyErrors,
    ))]
async fn create(
    _: AdminCaller,
    State(state): State<AppState>,
    IdPath(tenant_id): IdPath,
    JsonBody(request): JsonBody<CreateIp>,
) -> ApiResult<(StatusCode, Json<IpBody>)> {
    let address = validate::ip_address(&request.address)?;
    let helo_name = validate::hostname("helo_name", &request.helo_name)?;
    let timezone = request.timezone.unwrap_or_else(|| "UTC".to_string());
    validate::timezone_shape("timezone", &timezone)?;
    if let Some(schedule) = &request.warmup_schedule {
        validate::schedule_name("warmup_schedule", schedule)?;
    }
    let (active_hours_start, active_hours_end) = match &request.active_hours {
        Some(hours) => validate::active_hours(hours)?,
        None => (0, 24),
    };

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
        active_hours_start,
        active_hours_end,
    };
    let ip = store::ips::insert_ip(&state.pg, &new, OffsetDateTime::now_utc())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                AppError::conflict(format!("address {address} is already registered"))
            }
            other => other.into(),
        })?;
    let entry = Entry::new(Actor::Admin, Some(tenant_id), "ip.add").target(ip.id);
    super::audit_after(&state, entry).await;
    super::publish(&state, ControlEvent::TenantChanged { tenant_id }).await;
    tracing::info!(%tenant_id, ip_id = %ip.id, %address, "IP added");
    Ok((StatusCode::CREATED, Json(IpBody::new(ip, &state.config))))
}

/// The caller's IPs (every IP for the admin), oldest first.
#[utoipa::path(get, path = "/v1/ips", tag = "ips",
    security(("bearer" = [])),
    responses((status = 200, description = "The IPs", body = IpList), AnyCaller))]
async fn list(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<IpList>> {
    let now = OffsetDateTime::now_utc();
    let (ips, actions) = match caller {
        Caller::Admin => {
            let ips = store::ips::all_ips(&state.pg, now).await?;
            let ids: Vec<Uuid> = ips.iter().map(|ip| ip.id).collect();
            let actions = shaping_actions::in_force_any(&state.pg, &ids, now).await?;
            (ips, actions)
        }
        Caller::Tenant(tenant) => {
            let mut client = super::connection(&state).await?;
            let tx = super::tenant_scope(&mut client, tenant).await?;
            let ips = store::ips::tenant_ips(&tx, tenant, now).await?;
            let ids: Vec<Uuid> = ips.iter().map(|ip| ip.id).collect();
            let actions = shaping_actions::in_force(&tx, &ids, now).await?;
            super::commit(tx).await?;
            (ips, actions)
        }
    };
    let ips: Vec<IpBody> = ips
        .into_iter()
        .map(|ip| IpBody::new(ip, &state.config).with_shaping(&actions))
        .collect();
    Ok(Json(IpList { ips }))
}

/// One IP; 404 when absent or another tenant's.
#[utoipa::path(get, path = "/v1/ips/{id}", tag = "ips",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The IP")),
    responses(
        (status = 200, description = "The IP", body = IpBody),
        (status = 404, description = "No such IP of the caller (`not_found`)", body = ErrorBody),
        AnyCaller,
    ))]
async fn show(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<IpBody>> {
    let now = OffsetDateTime::now_utc();
    let (ip, actions) = match caller {
        Caller::Admin => {
            let ip = store::ips::ip_by_id(&state.pg, id, now).await;
            let actions = shaping_actions::in_force_any(&state.pg, &[id], now).await?;
            (ip, actions)
        }
        Caller::Tenant(tenant) => {
            let mut client = super::connection(&state).await?;
            let tx = super::tenant_scope(&mut client, tenant).await?;
            let ip = store::ips::tenant_ip(&tx, tenant, id, now).await;
            let actions = shaping_actions::in_force(&tx, &[id], now).await?;
            super::commit(tx).await?;
            (ip, actions)
        }
    };
    let body = IpBody::new(ip.map_err(no_such_ip)?, &state.config).with_shaping(&actions);
    Ok(Json(body))
}

/// Pauses an IP until resumed (admin or owner); idempotent.
///
/// Status `paused` with the reason (at most 200 characters, no control
/// characters; default "paused through the API") until resumed — an automatic
/// pause's end is cleared. The node owning the IP stops starting SMTP
/// transactions from it. The body is optional.
#[utoipa::path(post, path = "/v1/ips/{id}/pause", tag = "ips",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The IP")),
    request_body = Option<PauseIp>,
    responses(
        (status = 200, description = "The IP, paused", body = IpBody),
        (status = 404, description = "No such IP of the caller (`not_found`)", body = ErrorBody),
        AnyCaller, JsonBodyErrors,
    ))]
async fn pause(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    OptionalJsonBody(body): OptionalJsonBody<PauseIp>,
) -> ApiResult<Json<IpBody>> {
    let reason = match body.and_then(|b| b.reason) {
        Some(reason) => validate::reason("reason", &reason)?,
        None => DEFAULT_PAUSE_REASON.to_string(),
    };
    change_status(caller, state, id, StatusChange::Pause { reason }).await
}

/// Resumes an IP (admin or owner); idempotent.
///
/// Status `active`, reason and automatic-pause end cleared; the health
/// `rate_factor` stays as it is. The body is optional.
#[utoipa::path(post, path = "/v1/ips/{id}/resume", tag = "ips",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The IP")),
    request_body = Option<NoFields>,
    responses(
        (status = 200, description = "The IP, active", body = IpBody),
        (status = 404, description = "No such IP of the caller (`not_found`)", body = ErrorBody),
        AnyCaller, JsonBodyErrors,
    ))]
async fn resume(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    OptionalJsonBody(_): OptionalJsonBody<NoFields>,
) -> ApiResult<Json<IpBody>> {
    change_status(caller, state, id, StatusChange::Resume).await
}

async fn change_status(
    caller: Caller,
    state: AppState,
    id: Uuid,
    change: StatusChange,
) -> ApiResult<Json<IpBody>> {
    let owner = match caller {
        Caller::Admin => None,
        Caller::Tenant(tenant) => Some(tenant),
    };
    let mut client = super::connection(&state).await?;
    let tx = super::caller_scope(&mut client, caller).await?;
    let now = OffsetDateTime::now_utc();
    let ip = store::ips::set_status(&tx, owner, id, &change, now)
        .await
        .map_err(no_such_ip)?;
    let actions = shaping_actions::in_force(&tx, &[id], now).await?;
    let action = match change {
        StatusChange::Pause { .. } => "ip.pause",
        StatusChange::Resume => "ip.resume",
    };
    let entry = Entry::new(super::actor(caller), Some(ip.tenant_id), action).target(id);
    audit::record(&tx, &entry).await?;
    super::commit(tx).await?;
    drop(client);
    let tenant_id = ip.tenant_id;
    super::publish(&state, ControlEvent::TenantChanged { tenant_id }).await;
    tracing::info!(%tenant_id, ip_id = %id, ?change, "IP status set through the API");
    Ok(Json(IpBody::new(ip, &state.config).with_shaping(&actions)))
}

/// Retires an IP (admin only).
///
/// It stops taking work at once (the node owning it stops its actor), leaves
/// `GET /v1/ips`, and can be neither paused, resumed nor named by a campaign;
/// `GET /v1/ips/{id}` still shows it, `status: retired`, and its history
/// stays. Its address may be registered again. Refused (409 `conflict`, naming
/// them) while a campaign in `draft`, `scheduled`, `running` or `paused` lists
/// it: move those first with `PATCH /v1/campaigns/{id}`. Idempotent.
#[utoipa::path(delete, path = "/v1/ips/{id}", tag = "ips",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The IP")),
    responses(
        (status = 204, description = "The IP is retired"),
        (status = 404, description = "No such IP (`not_found`)", body = ErrorBody),
        (status = 409, description = "Campaigns that can still send list it (`conflict`)", body = ErrorBody),
        AdminOnly,
    ))]
async fn retire(
    _admin: AdminCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<StatusCode> {
    let now = OffsetDateTime::now_utc();
    let retired = store::ip_retire::retire_ip(&state.pg, id, now)
        .await
        .map_err(no_such_ip)?;
    match retired {
        store::ip_retire::Retired::InUse(campaigns) => {
            let ids: Vec<String> = campaigns.iter().map(Uuid::to_string).collect();
            Err(AppError::conflict(format!(
                "the IP is listed by campaigns that can still send: {}; move them to other IPs first",
                ids.join(", ")
            )))
        }
        store::ip_retire::Retired::Done { tenant_id, already } => {
            if !already {
                let entry = Entry::new(Actor::Admin, Some(tenant_id), "ip.retire").target(id);
                super::audit_after(&state, entry).await;
                super::publish(&state, ControlEvent::TenantChanged { tenant_id }).await;
                tracing::info!(%tenant_id, ip_id = %id, "IP retired");
            }
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

fn no_such_ip(error: StoreError) -> AppError {
    AppError::missing("no such IP")(error)
}
