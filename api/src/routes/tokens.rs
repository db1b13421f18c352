//! A tenant's API tokens: `POST /v1/tenants/{id}/tokens` issues another one
//! (shown once; the body is empty or `{}`), `GET` lists them (ids and dates,
//! never the tokens), `DELETE /v1/tenants/{id}/tokens/{token_id}` revokes
//! one — it stops working at once, and revoking it again changes nothing. The
//! admin reaches every tenant; a tenant token reaches only its own tenant
//! (another id answers 404).
//!
//! A tenant holds at most `api.max_tokens_per_tenant` live (unrevoked) tokens:
//! issuing one more answers 409 `too_many_tokens` and creates nothing (counted
//! under a per-tenant lock in the insert's transaction, so concurrent issues
//! cannot overshoot). Tokens are cheap to mint and each has its own request
//! budget, so the cap also bounds what one tenant can draw from the limiter.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use penguin_engine::store;
use penguin_engine::store::audit::{self, Entry};
use penguin_engine::store::tenants::{TokenIssue, TokenRow};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{self, Caller};
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{IdPath, NoFields, OptionalJsonBody};
use crate::openapi::{AnyCaller, JsonBodyErrors};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue, list))
        .routes(routes!(revoke))
}

/// A token as listed: never the token itself.
#[derive(Debug, Serialize, ToSchema)]
struct TokenView {
    id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
}

impl From<TokenRow> for TokenView {
    fn from(row: TokenRow) -> Self {
        TokenView {
            id: row.id,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct TokenIssued {
    id: Uuid,
    /// Shown once: store it now.
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
struct TokenList {
    tokens: Vec<TokenView>,
}

/// The tenant `id` if `caller` may manage its tokens; 404 otherwise (a foreign
/// tenant is never told apart from a missing one).
async fn reachable(state: &AppState, caller: Caller, id: Uuid) -> ApiResult<Uuid> {
    let visible = match caller {
        Caller::Admin => store::tenants::tenant_exists(&state.pg, id).await?,
        Caller::Tenant(own) => own == id,
    };
    visible
        .then_some(id)
        .ok_or_else(|| AppError::not_found("no such tenant"))
}

/// Issues another API token for the tenant (shown once, stored as its sha256).
///
/// The body is optional: empty or `{}`. A tenant with
/// `api.max_tokens_per_tenant` live tokens gets 409 `too_many_tokens`.
#[utoipa::path(post, path = "/v1/tenants/{id}/tokens", tag = "tenants",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The tenant")),
    request_body = Option<NoFields>,
    responses(
        (status = 201, description = "The new token", body = TokenIssued),
        (status = 404, description = "No such tenant, or another tenant's (`not_found`)", body = ErrorBody),
        (status = 409, description = "The tenant holds `api.max_tokens_per_tenant` live tokens (`too_many_tokens`)", body = ErrorBody),
        AnyCaller, JsonBodyErrors,
    ))]
async fn issue(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    OptionalJsonBody(_): OptionalJsonBody<NoFields>,
) -> ApiResult<(StatusCode, Json<TokenIssued>)> {
    let tenant = reachable(&state, caller, id).await?;
    let (token, hash) = auth::new_tenant_token();
    let mut client = super::connection(&state).await?;
    let tx = super::caller_scope(&mut client, caller).await?;
    let max = state.config.api.max_tokens_per_tenant;
    let issued = store::tenants::insert_token(&tx, tenant, Uuid::now_v7(), &hash, max).await?;
    let TokenIssue::Issued(row) = issued else {
        crate::metrics::refused(crate::metrics::Limit::TokenCap);
        return Err(AppError::too_many_tokens(max));
    };
    let entry = Entry::new(super::actor(caller), Some(tenant), "token.issue").target(row.id);
    audit::record(&tx, &entry).await?;
    super::commit(tx).await?;
    tracing::info!(tenant_id = %tenant, token_id = %row.id, "api token issued");
    Ok((
        StatusCode::CREATED,
        Json(TokenIssued {
            id: row.id,
            token,
            created_at: row.created_at,
        }),
    ))
}

/// The tenant's tokens, oldest first, revoked ones included.
#[utoipa::path(get, path = "/v1/tenants/{id}/tokens", tag = "tenants",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The tenant")),
    responses(
        (status = 200, description = "The tokens (never the token strings)", body = TokenList),
        (status = 404, description = "No such tenant, or another tenant's (`not_found`)", body = ErrorBody),
        AnyCaller,
    ))]
async fn list(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<TokenList>> {
    let tenant = reachable(&state, caller, id).await?;
    let mut client = super::connection(&state).await?;
    let tx = super::caller_scope(&mut client, caller).await?;
    let rows = store::tenants::tokens(&tx, tenant).await?;
    super::commit(tx).await?;
    Ok(Json(TokenList {
        tokens: rows.into_iter().map(TokenView::from).collect(),
    }))
}

/// Revokes a token at once; revoking it again changes nothing.
#[utoipa::path(delete, path = "/v1/tenants/{id}/tokens/{token_id}", tag = "tenants",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The tenant"),
        ("token_id" = Uuid, Path, description = "The token's id"),
    ),
    responses(
        (status = 200, description = "The token, with `revoked_at`", body = TokenView),
        (status = 404, description = "No such tenant or token (`not_found`)", body = ErrorBody),
        AnyCaller,
    ))]
async fn revoke(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<(Uuid, Uuid)>, axum::extract::rejection::PathRejection>,
) -> ApiResult<Json<TokenView>> {
    let Ok(Path((id, token_id))) = path else {
        return Err(AppError::not_found("not found"));
    };
    let tenant = reachable(&state, caller, id).await?;
    let mut client = super::connection(&state).await?;
    let tx = super::caller_scope(&mut client, caller).await?;
    let row = store::tenants::revoke_token(&tx, tenant, token_id)
        .await
        .map_err(AppError::missing("no such token"))?;
    let entry = Entry::new(super::actor(caller), Some(tenant), "token.revoke").target(row.id);
    audit::record(&tx, &entry).await?;
    super::commit(tx).await?;
    tracing::info!(tenant_id = %tenant, token_id = %row.id, "api token revoked");
    Ok(Json(row.into()))
}
