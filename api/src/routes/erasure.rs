//! Erasure on request (issue 23):
//!
//! - `DELETE /v1/leads?email=` (tenant): the address is erased from the
//!   caller's tenant, under its role (row-level security: no other tenant is
//!   reachable);
//! - `POST /v1/erasures` `{"email"}` (admin): the address goes on the global
//!   suppression list (reason `erasure`), then is erased from every tenant
//!   holding a lead of it, one transaction per tenant.
//!
//! Erasing (`store::erasure`): the address's leads and jobs are deleted in
//! every campaign; the text of their delivery events is rewritten with the
//! address's pseudonym (`penguin_engine::erasure`), the events and rollups
//! stay, so counts stay true; the tenant's suppression of the address is kept
//! or added, for good — it holds the address by design, so it is never mailed
//! again (re-imports count it `suppressed`). Each tenant's erasure writes an
//! `audit_log` row (`erasure`, target the pseudonym, detail the counts) in its
//! transaction; the admin's also one for the whole request (`erasure.global`).
//!
//! Answer 200 `{email_hash, tenants, leads, jobs, events, events_rewritten,
//! suppressed}` (`email_hash` = the pseudonym; the address is never echoed).
//! Erasing an address nobody holds still suppresses it. A missing or invalid
//! address, or an unknown query parameter: 422, nothing changes. While a
//! message to the address is being sent (a job `sending`): 409 `conflict`,
//! nothing changes in that tenant — retry in a moment (queued jobs are
//! deleted: their claim then finds nothing and drops them). The admin's
//! erasure is idempotent: a 409 leaves the other tenants erased and the
//! global suppression in place; the retry finishes.

use axum::Json;
use axum::extract::{Query, State};
use penguin_engine::domain::normalize_email;
use penguin_engine::erasure::pseudonym;
use penguin_engine::store::audit::{self, Actor, Entry};
use penguin_engine::store::erasure::{self, Erased};
use penguin_engine::store::global_suppressions::{self, GlobalReason};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{AdminCaller, TenantCaller};
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::JsonBody;
use crate::openapi::{AdminOnly, JsonBodyErrors, TenantOnly};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(erase_lead))
        .routes(routes!(erase_everywhere))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailQuery {
    email: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EraseRequest {
    /// The address to erase (any case; trimmed).
    email: String,
}

/// What an erasure changed.
#[derive(Debug, Default, Serialize, ToSchema)]
struct ErasureResult {
    /// The address's pseudonym, `erased:<16 hex digits>` (HMAC-SHA256 keyed
    /// from `tracking.secret`): what now stands for it in event text and in
    /// the audit log.
    email_hash: String,
    /// Tenants the address was erased from.
    tenants: u64,
    /// Leads deleted (one per campaign that held the address).
    leads: u64,
    /// Send jobs deleted.
    jobs: u64,
    /// Delivery events of those jobs: kept (counts and rollups stay true),
    /// tied to no address any more.
    events: u64,
    /// Of those, events whose text held the address: rewritten with
    /// `email_hash`.
    events_rewritten: u64,
    /// Always true: the address stays suppressed (the suppression keeps it,
    /// by design), so it is never mailed again.
    suppressed: bool,
}

impl ErasureResult {
    fn add(&mut self, erased: &Erased) {
        self.tenants += 1;
        self.leads += erased.leads;
        self.jobs += erased.jobs;
        self.events += erased.events;
        self.events_rewritten += erased.events_rewritten;
    }
}

fn counts(erased: &Erased) -> serde_json::Value {
    json!({
        "leads": erased.leads,
        "jobs": erased.jobs,
        "events": erased.events,
        "events_rewritten": erased.events_rewritten,
        "suppression_added": erased.suppression_added,
    })
}

/// The normalised address, or 422 (the message never quotes it).
fn address(raw: Option<&str>) -> ApiResult<String> {
    let raw = raw.ok_or_else(|| AppError::invalid("email is required"))?;
    normalize_email(raw).map_err(|e| AppError::invalid_field("email", &e))
}

/// Erases an address from every campaign of the calling tenant.
///
/// Leads and jobs of the address are deleted; its delivery events stay with
/// their text pseudonymised; it stays suppressed.
#[utoipa::path(delete, path = "/v1/leads", tag = "privacy",
    security(("bearer" = [])),
    params(("email" = String, Query, description = "The address to erase")),
    responses(
        (status = 200, description = "What was erased", body = ErasureResult),
        (status = 409, description = "A message to the address is being sent right now \
            (`conflict`): nothing changed; retry in a moment", body = ErrorBody),
        (status = 422, description = "No `email`, an invalid one, or an unknown or repeated \
            query parameter (`invalid_request`): nothing changed", body = ErrorBody),
        TenantOnly,
    ))]
async fn erase_lead(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    query: Result<Query<EmailQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<ErasureResult>> {
    let Query(query) =
        query.map_err(|_| AppError::invalid("the only query parameter is email, given once"))?;
    let email = address(query.email.as_deref())?;
    let hash = pseudonym(&state.config.tracking.secret, &email);
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let erased = erasure::erase_in_tenant(&tx, tenant, &email, &hash).await?;
    let entry = Entry::new(Actor::Tenant(tenant), Some(tenant), "erasure")
        .target(&hash)
        .detail(counts(&erased));
    audit::record(&tx, &entry).await?;
    super::commit(tx).await?;
    tracing::info!(%tenant, email_hash = %hash, leads = erased.leads, jobs = erased.jobs,
        events_rewritten = erased.events_rewritten, "address erased");
    let mut result = ErasureResult {
        email_hash: hash,
        suppressed: true,
        ..ErasureResult::default()
    };
    result.add(&erased);
    Ok(Json(result))
}

/// Erases an address from every tenant and suppresses it for all (admin).
///
/// The address goes on the global suppression list (reason `erasure`), then
/// is erased from each tenant holding it, one transaction per tenant.
#[utoipa::path(post, path = "/v1/erasures", tag = "privacy",
    security(("bearer" = [])),
    request_body = EraseRequest,
    responses(
        (status = 200, description = "What was erased", body = ErasureResult),
        (status = 409, description = "A message to the address is being sent right now in a \
            tenant (`conflict`): the others are erased; retry in a moment", body = ErrorBody),
        AdminOnly, JsonBodyErrors,
    ))]
async fn erase_everywhere(
    _: AdminCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<EraseRequest>,
) -> ApiResult<Json<ErasureResult>> {
    let email = address(Some(&request.email))?;
    let hash = pseudonym(&state.config.tracking.secret, &email);
    let mut result = ErasureResult {
        email_hash: hash.clone(),
        suppressed: true,
        ..ErasureResult::default()
    };
    let mut client = super::connection(&state).await?;
    // First the global suppression: from here on no tenant starts a message
    // to the address, whatever the erasures below meet.
    let added = global_suppressions::add(
        &client,
        std::slice::from_ref(&email),
        GlobalReason::Erasure,
        None,
        None,
    )
    .await?
    .0;
    let tenants = erasure::tenants_holding(&client, &email).await?;
    let mut busy: Vec<Uuid> = Vec::new();
    for tenant in tenants {
        let tx = client
            .transaction()
            .await
            .map_err(penguin_engine::db::StoreError::from)?;
        match erasure::erase_in_tenant(&tx, tenant, &email, &hash).await {
            Ok(erased) => {
                let entry = Entry::new(Actor::Admin, Some(tenant), "erasure")
                    .target(&hash)
                    .detail(counts(&erased));
                audit::record(&tx, &entry).await?;
                super::commit(tx).await?;
                result.add(&erased);
            }
            Err(penguin_engine::db::StoreError::Conflict(_)) => busy.push(tenant),
            Err(other) => return Err(other.into()),
        }
    }
    let entry = Entry::new(Actor::Admin, None, "erasure.global")
        .target(&hash)
        .detail(json!({
            "tenants": result.tenants,
            "leads": result.leads,
            "jobs": result.jobs,
            "events": result.events,
            "events_rewritten": result.events_rewritten,
            "global_suppression_added": added > 0,
            "tenants_in_flight": busy.len(),
        }));
    audit::record(&client, &entry).await?;
    tracing::info!(email_hash = %hash, tenants = result.tenants, in_flight = busy.len(),
        "address erased everywhere");
    if !busy.is_empty() {
        return Err(AppError::conflict(format!(
            "a message to this address is being sent right now in {} tenant(s); the others \
             are erased and the address is suppressed everywhere: try again in a minute",
            busy.len()
        )));
    }
    Ok(Json(result))
}
