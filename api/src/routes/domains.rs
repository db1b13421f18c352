//! Sending domains (tenant token; the admin token acts on any tenant's):
//!
//! - `POST /v1/domains` `{domain, ed25519?, tenant_id? (admin only)}` → 201 the
//!   domain, `pending`, with a fresh DKIM key and the `dns_records` to publish.
//! - `GET /v1/domains`, `GET /v1/domains/{id}` (with the last checks),
//!   `DELETE /v1/domains/{id}` (409 while a campaign that may still send uses it).
//! - `POST /v1/domains/{id}/verify` → `{status, checks}`: DKIM, SPF, DMARC and
//!   forward-confirmed PTR looked up now (`[delivery.dns]`); `{"trust": true}`
//!   (admin only) marks it verified without DNS, recorded as such.
//! - `POST /v1/domains/{id}/rotate` → a new selector and key, published beside
//!   the old; mail is signed with it once it verifies.
//!
//! Private keys are made here, sealed before they leave the blocking thread
//! that made them ([`crate::domain_kit`]), and never returned or logged.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use penguin_engine::db::StoreError;
use penguin_engine::store;
use penguin_engine::store::audit::Entry;
use penguin_engine::store::domains::{DomainRow, NewDomain};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::domain_view::{DomainBody, VerifyBody};
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{IdPath, JsonBody, NoFields, OptionalJsonBody};
use crate::openapi::{AnyCaller, JsonBodyErrors};
use crate::validate;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, delete))
        .routes(routes!(verify))
        .routes(routes!(rotate))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateDomain {
    /// The domain mail will come from (its From addresses are `…@domain` or
    /// `…@sub.domain`).
    #[schema(example = "mail.example.com")]
    domain: String,
    /// Also sign with an Ed25519 key (mail is then signed twice: RSA and Ed25519).
    #[serde(default)]
    ed25519: bool,
    /// The tenant (admin token only; a tenant token registers for itself).
    tenant_id: Option<Uuid>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    /// Admin only: mark the domain verified without looking at DNS.
    trust: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
struct DomainList {
    domains: Vec<DomainBody>,
}

/// Registers a sending domain with a fresh DKIM key.
///
/// 201 with the records to publish; 409 `conflict` when the domain is already
/// registered (by any tenant), 409 `secrets_not_configured` when the node
/// cannot seal keys, 422 for a bad name, 503 when every key-generation slot
/// stays busy.
#[utoipa::path(post, path = "/v1/domains", tag = "domains",
    security(("bearer" = [])),
    request_body = CreateDomain,
    responses(
        (status = 201, description = "The domain, pending", body = DomainBody),
        (status = 409, description = "Taken (`conflict`), too many domains (`conflict`) or no master key (`secrets_not_configured`)", body = ErrorBody),
        AnyCaller, JsonBodyErrors,
    ))]
async fn create(
    caller: Caller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateDomain>,
) -> ApiResult<(StatusCode, Json<DomainBody>)> {
    let tenant = match (caller, request.tenant_id) {
        (Caller::Tenant(tenant), None) => tenant,
        (Caller::Tenant(_), Some(_)) => {
            return Err(AppError::invalid("tenant_id is for the admin token only"));
        }
        (Caller::Admin, Some(tenant)) => tenant,
        (Caller::Admin, None) => {
            return Err(AppError::invalid(
                "tenant_id is required with the admin token",
            ));
        }
    };
    let domain = validate::hostname("domain", &request.domain)?;
    state.domains.sealer()?;
    let now = OffsetDateTime::now_utc();
    let id = Uuid::now_v7();
    let keys = state
        .domains
        .new_keys(tenant, id, request.ed25519, now)
        .await?;
    let max = state.config.domains.max_per_tenant;
    let new = NewDomain {
        tenant,
        id,
        domain: &domain,
        ed25519: request.ed25519,
        keys: &keys,
    };
    store::domains::insert(&state.pg, &new, max, now)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => AppError::not_found("no such tenant"),
            StoreError::Conflict(what) if what == "too_many_domains" => AppError::conflict(
                format!("a tenant has at most {max} sending domains (domains.max_per_tenant)"),
            ),
            StoreError::Conflict(_) => {
                AppError::conflict(format!("domain {domain} is already registered"))
            }
            other => other.into(),
        })?;
    let entry = Entry::new(super::actor(caller), Some(tenant), "domain.create").target(id);
    super::audit_after(&state, entry).await;
    tracing::info!(%tenant, domain_id = %id, %domain, "sending domain registered");
    let row = store::domains::fetch(&state.pg, Some(tenant), id).await?;
    Ok((StatusCode::CREATED, Json(body(&state, row).await?)))
}

/// The caller's sending domains (every tenant's for the admin), oldest first.
#[utoipa::path(get, path = "/v1/domains", tag = "domains",
    security(("bearer" = [])),
    responses((status = 200, description = "The domains", body = DomainList), AnyCaller))]
async fn list(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<DomainList>> {
    let rows = {
        let mut client = super::connection(&state).await?;
        let tx = super::caller_scope(&mut client, caller).await?;
        let rows = store::domains::list(&tx, tenant_of(caller)).await?;
        super::commit(tx).await?;
        rows
    };
    // The SPF record needs each tenant's IPs: read once per tenant listed.
    let mut ips: std::collections::HashMap<Uuid, Vec<std::net::IpAddr>> = Default::default();
    let mut domains = Vec::with_capacity(rows.len());
    for row in rows {
        let tenant_ips = match ips.entry(row.tenant_id) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(crate::domain_verify::tenant_ips(&state.pg, row.tenant_id).await?)
            }
        };
        domains.push(DomainBody::new(row, tenant_ips));
    }
    Ok(Json(DomainList { domains }))
}

/// One sending domain with its last verification's checks; 404 when absent or
/// another tenant's.
#[utoipa::path(get, path = "/v1/domains/{id}", tag = "domains",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The domain")),
    responses(
        (status = 200, description = "The domain", body = DomainBody),
        (status = 404, description = "No such domain of the caller (`not_found`)", body = ErrorBody),
        AnyCaller,
    ))]
async fn show(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DomainBody>> {
    let row = load(&state, caller, id).await?;
    Ok(Json(body(&state, row).await?))
}

/// Deletes a sending domain and its keys.
///
/// 409 while a draft, running or paused campaign sends from it (or a
/// subdomain): its mail could no longer be signed.
#[utoipa::path(delete, path = "/v1/domains/{id}", tag = "domains",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The domain")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such domain of the caller (`not_found`)", body = ErrorBody),
        (status = 409, description = "A campaign still sends from it (`conflict`)", body = ErrorBody),
        AnyCaller,
    ))]
async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<StatusCode> {
    let row = load(&state, caller, id).await?;
    store::domains::delete(&state.pg, row.tenant_id, id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => AppError::not_found("no such domain"),
            StoreError::Conflict(_) => AppError::conflict(format!(
                "a draft, running or paused campaign sends from {}",
                row.domain
            )),
            other => other.into(),
        })?;
    let entry = Entry::new(super::actor(caller), Some(row.tenant_id), "domain.delete").target(id);
    super::audit_after(&state, entry).await;
    tracing::info!(tenant = %row.tenant_id, domain_id = %id, domain = %row.domain, "sending domain deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Verifies a domain in DNS now, or trusts it (admin).
///
/// Looks up the DKIM record of every active and pending selector, SPF (every
/// IP of the tenant must pass, with RFC 7208's ten-lookup limit), DMARC (`p=`
/// present) and forward-confirmed PTR of each IP (reported, not required).
/// `verified` when every required check passes; `pending` while a record is
/// still missing; `failed` when one is wrong. A pending rotation key whose
/// record is seen starts signing. `{"trust": true}` (admin token) marks the
/// domain verified without DNS and activates its pending keys.
#[utoipa::path(post, path = "/v1/domains/{id}/verify", tag = "domains",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The domain")),
    request_body = Option<VerifyRequest>,
    responses(
        (status = 200, description = "The outcome", body = VerifyBody),
        (status = 403, description = "`trust` with a tenant token (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such domain of the caller (`not_found`)", body = ErrorBody),
        AnyCaller, JsonBodyErrors,
    ))]
async fn verify(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    OptionalJsonBody(request): OptionalJsonBody<VerifyRequest>,
) -> ApiResult<Json<VerifyBody>> {
    let trust = request.and_then(|r| r.trust).unwrap_or(false);
    if trust && caller != Caller::Admin {
        return Err(AppError::forbidden(
            "only the admin token may trust a domain",
        ));
    }
    let row = load(&state, caller, id).await?;
    let grace = time::Duration::hours(state.config.domains.rotation_grace_hours as i64);
    let outcome = if trust {
        crate::domain_verify::trust(&state.pg, &row, grace).await?
    } else {
        crate::domain_verify::check(&state.pg, state.domains.dns.as_ref(), &row, grace).await?
    };
    if trust {
        let entry =
            Entry::new(super::actor(caller), Some(row.tenant_id), "domain.trust").target(id);
        super::audit_after(&state, entry).await;
    }
    tracing::info!(tenant = %row.tenant_id, domain_id = %id, domain = %row.domain,
        status = outcome.status, trust, "sending domain verified");
    Ok(Json(outcome))
}

/// Starts a key rotation: a new selector and key, listed in `dns_records`
/// beside the current one. Once its record verifies (or the admin trusts the
/// domain), it signs and the old key stays published for
/// `domains.rotation_grace_hours`. 409 while an earlier rotation is pending.
#[utoipa::path(post, path = "/v1/domains/{id}/rotate", tag = "domains",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The domain")),
    request_body = Option<NoFields>,
    responses(
        (status = 200, description = "The domain with its new pending key", body = DomainBody),
        (status = 404, description = "No such domain of the caller (`not_found`)", body = ErrorBody),
        (status = 409, description = "A rotation is pending (`conflict`), or no master key (`secrets_not_configured`)", body = ErrorBody),
        AnyCaller, JsonBodyErrors,
    ))]
async fn rotate(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    OptionalJsonBody(_): OptionalJsonBody<NoFields>,
) -> ApiResult<Json<DomainBody>> {
    state.domains.sealer()?;
    let row = load(&state, caller, id).await?;
    let now = OffsetDateTime::now_utc();
    let keys = state
        .domains
        .new_keys(row.tenant_id, id, row.ed25519, now)
        .await?;
    store::domains::add_pending_keys(&state.pg, row.tenant_id, id, &keys, now)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => AppError::not_found("no such domain"),
            StoreError::Conflict(_) => AppError::conflict(
                "a rotation is already pending: publish its record and verify first",
            ),
            other => other.into(),
        })?;
    let entry = Entry::new(super::actor(caller), Some(row.tenant_id), "domain.rotate").target(id);
    super::audit_after(&state, entry).await;
    tracing::info!(tenant = %row.tenant_id, domain_id = %id, domain = %row.domain, "DKIM key rotation started");
    let row = store::domains::fetch(&state.pg, Some(row.tenant_id), id).await?;
    Ok(Json(body(&state, row).await?))
}

fn tenant_of(caller: Caller) -> Option<Uuid> {
    match caller {
        Caller::Admin => None,
        Caller::Tenant(tenant) => Some(tenant),
    }
}

/// The domain `id` of the caller (anyone's for the admin), or 404.
async fn load(state: &AppState, caller: Caller, id: Uuid) -> ApiResult<DomainRow> {
    let mut client = super::connection(state).await?;
    let tx = super::caller_scope(&mut client, caller).await?;
    let row = store::domains::get(&tx, tenant_of(caller), id)
        .await
        .map_err(AppError::missing("no such domain"))?;
    super::commit(tx).await?;
    Ok(row)
}

/// The API's view of a domain: the records to publish need the tenant's IPs.
async fn body(state: &AppState, row: DomainRow) -> ApiResult<DomainBody> {
    let ips = crate::domain_verify::tenant_ips(&state.pg, row.tenant_id).await?;
    Ok(DomainBody::new(row, &ips))
}
