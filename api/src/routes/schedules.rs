//! Warm-up schedules (ramps of messages per day, shared by every tenant):
//!
//! - `GET /v1/warmup-schedules` → `{warmup_schedules: [schedule]}`, the built-ins
//!   (`conservative`, `aggressive`, `transactional`) first, then by name;
//! - `GET /v1/warmup-schedules/{name}` → schedule, 404 when absent;
//! - `POST /v1/warmup-schedules` (admin) `{name, daily_volumes: [..]}` → 201
//!   schedule; `name` matches `^[a-z0-9_-]{1,64}$`, 1 to 365 volumes of 1 to
//!   10,000,000 messages; a taken name is 409.
//!
//! A schedule reads `{name, daily_volumes, days, ceiling, builtin, created_at}`:
//! day N of an IP's warm-up sends `daily_volumes[N-1]`; past the last day it
//! stays at `ceiling` (the last value). Both readers (admin and tenants) see all
//! schedules: they hold no tenant data. Schedules are never changed once created.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use penguin_engine::db::StoreError;
use penguin_engine::store;
use penguin_engine::store::schedules::Schedule;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{AdminCaller, Caller};
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::JsonBody;
use crate::openapi::{AdminOnly, AnyCaller, JsonBodyErrors};
use crate::validate;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateSchedule {
    /// `^[a-z0-9_-]{1,64}$`, not taken.
    #[schema(example = "gentle")]
    name: String,
    /// Messages per day of the ramp: 1 to 365 days of 1 to 10,000,000.
    // Wider than the stored `integer` so an out-of-range day gets our message.
    #[schema(example = json!([50, 100, 200, 400]))]
    daily_volumes: Vec<i64>,
}

/// A warm-up schedule: day N of an IP's warm-up sends `daily_volumes[N-1]`,
/// then `ceiling` every day after the ramp.
#[derive(Debug, Serialize, ToSchema)]
struct ScheduleBody {
    name: String,
    daily_volumes: Vec<i32>,
    /// The number of ramp days.
    days: usize,
    /// The volume of every day past the ramp (its last value).
    ceiling: i32,
    builtin: bool,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl From<Schedule> for ScheduleBody {
    fn from(s: Schedule) -> Self {
        ScheduleBody {
            days: s.daily_volumes.len(),
            ceiling: s.daily_volumes.last().copied().unwrap_or(0),
            name: s.name,
            daily_volumes: s.daily_volumes,
            builtin: s.builtin,
            created_at: s.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct ScheduleList {
    warmup_schedules: Vec<ScheduleBody>,
}

/// Every warm-up schedule (admin or tenant): the built-ins
/// (`conservative`, `aggressive`, `transactional`) first, then by name.
#[utoipa::path(get, path = "/v1/warmup-schedules", tag = "warmup-schedules",
    security(("bearer" = [])),
    responses((status = 200, description = "The schedules", body = ScheduleList), AnyCaller))]
async fn list(_: Caller, State(state): State<AppState>) -> ApiResult<Json<ScheduleList>> {
    let schedules = store::schedules::list(&state.pg).await?;
    Ok(Json(ScheduleList {
        warmup_schedules: schedules.into_iter().map(ScheduleBody::from).collect(),
    }))
}

/// One warm-up schedule (admin or tenant); a name that cannot exist is 404
/// like an absent one.
#[utoipa::path(get, path = "/v1/warmup-schedules/{name}", tag = "warmup-schedules",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleBody),
        (status = 404, description = "No such schedule (`not_found`)", body = ErrorBody),
        AnyCaller,
    ))]
async fn show(
    _: Caller,
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<ScheduleBody>> {
    let Ok(Path(name)) = name else {
        return Err(AppError::not_found("no such warm-up schedule"));
    };
    let not_found = || AppError::not_found(format!("no warm-up schedule named {name:?}"));
    if validate::schedule_name("name", &name).is_err() {
        return Err(not_found());
    }
    match store::schedules::get(&state.pg, &name).await {
        Ok(schedule) => Ok(Json(schedule.into())),
        Err(StoreError::NotFound) => Err(not_found()),
        Err(other) => Err(other.into()),
    }
}

/// Adds a warm-up schedule (admin); schedules never change once created.
#[utoipa::path(post, path = "/v1/warmup-schedules", tag = "warmup-schedules",
    security(("bearer" = [])),
    request_body = CreateSchedule,
    responses(
        (status = 201, description = "The schedule", body = ScheduleBody),
        (status = 409, description = "The name is taken (`conflict`)", body = ErrorBody),
        AdminOnly, JsonBodyErrors,
    ))]
async fn create(
    _: AdminCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateSchedule>,
) -> ApiResult<(StatusCode, Json<ScheduleBody>)> {
    validate::schedule_name("name", &request.name)?;
    let volumes = validate::daily_volumes(&request.daily_volumes)?;
    let schedule = store::schedules::insert(&state.pg, &request.name, &volumes)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => AppError::conflict(format!(
                "a warm-up schedule named {:?} already exists",
                request.name
            )),
            other => other.into(),
        })?;
    tracing::info!(name = %schedule.name, days = volumes.len(), "warm-up schedule added");
    Ok((StatusCode::CREATED, Json(schedule.into())))
}
