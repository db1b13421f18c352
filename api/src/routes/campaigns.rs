//! Campaigns of the calling tenant: `POST /v1/campaigns` (create, `draft`) and
//! `GET /v1/campaigns/{id}` (with job counts, `rates` and `eta`, see
//! `campaign_rates.rs`). The lifecycle is in `campaign_actions.rs`.
//!
//! Create compiles the templates and dry-runs them without lead data under the
//! `[templates]` budget ([`crate::template_check`]): a template that already
//! breaks it answers 422 naming the field (`subject: …`, `text: …`, `html: …`).
//!
//! Optional `steps` are the follow-ups of a sequence (`crate::campaign_steps`:
//! checked and dry-run like step 1, an error naming `steps[i] (step n).field`),
//! stored in the create transaction with the campaign and its `step_count`.
//! Create's answer and `GET /v1/campaigns/{id}` show every step with its counts.

use std::collections::{BTreeMap, HashSet};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use penguin_engine::db::StoreError;
use penguin_engine::domain::{CampaignStatus, JobStatus, normalize_email};
use penguin_engine::store;
use penguin_engine::store::campaigns::{Campaign, NewCampaign};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{commit, connection, tenant_scope};
use crate::AppState;
use crate::auth::TenantCaller;
use crate::campaign_rates::{self, RatesBody};
use crate::campaign_steps::{self, StepBody, StepRequest};
use crate::campaign_waiting::{self, WaitingReason};
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{IdPath, JsonBody};
use crate::openapi::{JsonBodyErrors, TenantOnly, string_enum};
use crate::template_check::{self, Templates};
use crate::validate::{self, SendWindow};

/// The default priority (normal band).
const DEFAULT_PRIORITY: i32 = 100;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(show))
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
    /// Follow-ups after step 1 (the top-level content), in order; at most
    /// `[sequences] max_steps` − 1 (default 9).
    steps: Option<Vec<StepRequest>>,
}

/// `draft`, `scheduled`, `running`, `paused`, `completed` or `cancelled`.
pub(super) fn campaign_status_schema() -> utoipa::openapi::schema::Object {
    use CampaignStatus::*;
    string_enum(
        [Draft, Scheduled, Running, Paused, Completed, Cancelled].map(CampaignStatus::as_str),
    )
}

/// A campaign as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CampaignBody {
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
    /// When a scheduled start was asked for (`POST …/start` with a future
    /// `start_at`); null for a campaign started at once or not yet.
    #[serde(with = "time::serde::rfc3339::option")]
    start_at: Option<OffsetDateTime>,
    /// How many steps it has, step 1 included (1: no follow-ups).
    step_count: i32,
}

/// A campaign with its steps (create's answer).
#[derive(Debug, Serialize, ToSchema)]
struct CampaignWithSteps {
    #[serde(flatten)]
    campaign: CampaignBody,
    /// Every step, step 1 first (`delay_secs` 0, the top-level content).
    steps: Vec<StepBody>,
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
    /// Why a `running` campaign's jobs are not being sent now: `daily_cap`
    /// (its local day's cap is used), `send_window` (outside its window),
    /// `ips_paused` (every IP of its pool is paused) or `ip_allowance` (every
    /// IP of its pool used its hourly or daily allowance), first that holds in
    /// this order; null while it sends, or when it is not running or has no job
    /// left.
    #[schema(value_type = Option<WaitingReason>)]
    waiting_reason: Option<WaitingReason>,
    /// When the engine may next start one of its messages: now while it sends,
    /// else the next local day's first window opening (`daily_cap`), the
    /// window's next opening (`send_window`), the end of an automatic IP pause
    /// (`ips_paused`; null while they wait for a resume), the allowance's
    /// reopening (`ip_allowance`) or a retry's time. Null when it is not
    /// running or has no job left.
    #[serde(with = "time::serde::rfc3339::option")]
    next_send_at: Option<OffsetDateTime>,
    /// Every step, step 1 first, with its counts (`sent`, `bounced`, `opened`,
    /// `clicked`, `replied` from the per-step rollup; `waiting`: its jobs not
    /// yet done now).
    steps: Vec<StepBody>,
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
            start_at: c.start_at,
            step_count: c.step_count,
        }
    }
}

/// 404 names the campaign; everything else maps as usual.
pub(super) fn campaign_error(err: StoreError) -> AppError {
    AppError::missing("no such campaign")(err)
}

/// `ip_ids` holds 1 to `MAX_CAMPAIGN_IPS` ids, none twice.
pub(super) fn check_ip_ids(ip_ids: &[Uuid]) -> ApiResult<()> {
    if ip_ids.is_empty() || ip_ids.len() > validate::MAX_CAMPAIGN_IPS {
        return Err(AppError::invalid(format!(
            "ip_ids must hold 1-{} IP ids",
            validate::MAX_CAMPAIGN_IPS
        )));
    }
    let mut seen = HashSet::new();
    if let Some(repeated) = ip_ids.iter().find(|id| !seen.insert(**id)) {
        return Err(AppError::invalid(format!("ip_ids lists {repeated} twice")));
    }
    Ok(())
}

/// Every id of `ip_ids` is an IP of the tenant that is not retired (locked
/// `FOR SHARE` until `tx` ends, so it cannot be retired meanwhile).
pub(super) async fn check_owned_ips(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant: Uuid,
    ip_ids: &[Uuid],
) -> ApiResult<()> {
    let owned: HashSet<Uuid> = store::ips::owned_ip_ids(tx, tenant, ip_ids)
        .await?
        .into_iter()
        .collect();
    let unknown: Vec<String> = ip_ids
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
    Ok(())
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
    check_ip_ids(&request.ip_ids)?;
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
        (status = 201, description = "The campaign, `draft`, with its steps", body = CampaignWithSteps),
        (status = 422, description = "Invalid (`invalid_request`; a step's error names it: `steps[0] (step 2).delay_secs …`), or the From's domain is not a verified sending domain of the tenant (`domain_not_verified`, with `domains.require_verified`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn create(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateCampaign>,
) -> ApiResult<(StatusCode, Json<CampaignWithSteps>)> {
    let from_address = validate_request(&request)?;
    let steps = campaign_steps::check_steps(
        request.steps.as_deref().unwrap_or_default(),
        &state.config.sequences,
    )?;
    let templates = Templates {
        from_address: from_address.clone(),
        from_name: request.from_name.clone(),
        subject: request.subject.clone(),
        text: request.text.clone(),
        html: request.html.clone(),
    };
    let follow_ups = Templates {
        text: String::new(),
        html: None,
        ..templates.clone()
    };
    template_check::dry_run(&state.config.templates, templates).await?;
    campaign_steps::dry_run_steps(&state.config.templates, &follow_ups, &steps).await?;

    let mut client = connection(&state).await?;
    let tx = tenant_scope(&mut client, tenant).await?;
    check_owned_ips(&tx, tenant, &request.ip_ids).await?;
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
    let mut campaign = store::campaigns::insert_campaign(&tx, &new).await?;
    store::sequences::insert_steps(&tx, tenant, campaign.id, &steps).await?;
    commit(tx).await?;
    campaign.step_count = 1 + steps.len() as i32;
    tracing::info!(tenant_id = %tenant, campaign_id = %campaign.id,
        step_count = campaign.step_count, "campaign created");
    let steps = campaign_steps::step_bodies(&campaign, steps, &BTreeMap::new());
    Ok((
        StatusCode::CREATED,
        Json(CampaignWithSteps {
            campaign: campaign.into(),
            steps,
        }),
    ))
}

/// One campaign of the calling tenant, with its job counts per state, its
/// `rates` (speed over the last 5 minutes, outcome and engagement fractions),
/// `eta`, and what it waits for (`waiting_reason`, `next_send_at`).
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
    let follow_ups = store::sequences::campaign_steps(&tx, tenant, id).await?;
    let step_counts = store::step_stats::step_counts(&tx, tenant, id).await?;
    let now = OffsetDateTime::now_utc();
    let (since, until) = campaign_rates::window(now);
    let activity = store::stats::campaign_activity(&tx, tenant, id, since, until).await?;
    let engine_now = state.clock.now();
    let facts = store::waiting::wait_facts(&tx, tenant, id, engine_now)
        .await?
        .ok_or_else(|| AppError::not_found("no such campaign"))?;
    commit(tx).await?;
    let (waiting_reason, next_send_at) =
        campaign_waiting::waiting(campaign.status, &facts, engine_now);
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
    let steps = campaign_steps::step_bodies(&campaign, follow_ups, &step_counts);
    Ok(Json(CampaignWithCounts {
        campaign: campaign.into(),
        counts: by_status,
        total,
        rates,
        eta,
        waiting_reason,
        next_send_at,
        steps,
    }))
}
