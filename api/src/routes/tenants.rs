//! `POST /v1/tenants` (admin): creates a tenant and its API token. The token is
//! in this one response only; the database keeps its sha256.
//! `GET /v1/tenants?after=&limit=` (admin) → `{tenants: [{id, name,
//! created_at}], next_after}`: newest first, paged by id like every list
//! (`after` = the previous page's `next_after`; a bad `after` or `limit` is 422).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use penguin_engine::control::ControlEvent;
use penguin_engine::store;
use penguin_engine::store::audit::{Actor, Entry};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::Paging;
use crate::AppState;
use crate::auth::{self, AdminCaller};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::JsonBody;
use crate::openapi::{AdminOnly, JsonBodyErrors};
use crate::validate;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list_tenants))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    /// At most 200 characters, no control characters.
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct TenantCreated {
    id: Uuid,
    name: String,
    /// Shown once: store it now.
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// Creates a tenant and its API token (admin).
///
/// The token is in this answer only: the database keeps its sha256.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants",
    security(("bearer" = [])),
    request_body = CreateTenant,
    responses(
        (status = 201, description = "The tenant and its token", body = TenantCreated),
        AdminOnly, JsonBodyErrors,
    ))]
async fn create(
    _: AdminCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantCreated>)> {
    validate::header_text("name", &request.name, validate::MAX_NAME)?;
    let (token, token_hash) = auth::new_tenant_token();
    let tenant = store::tenants::insert_tenant(
        &state.pg,
        Uuid::now_v7(),
        &request.name,
        Uuid::now_v7(),
        &token_hash,
    )
    .await?;
    super::publish(
        &state,
        ControlEvent::TenantChanged {
            tenant_id: tenant.id,
        },
    )
    .await;
    let entry = Entry::new(Actor::Admin, Some(tenant.id), "tenant.create").target(tenant.id);
    super::audit_after(&state, entry).await;
    tracing::info!(tenant_id = %tenant.id, "tenant created");
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            id: tenant.id,
            name: tenant.name,
            token,
            created_at: tenant.created_at,
        }),
    ))
}

/// A tenant as the admin list shows it.
#[derive(Debug, Serialize, ToSchema)]
struct TenantBody {
    id: Uuid,
    name: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
struct TenantsBody {
    tenants: Vec<TenantBody>,
    /// The `after` of the next page; null on the last page.
    next_after: Option<Uuid>,
}

/// Every tenant, newest first (admin).
///
/// Paged by id: `after` = the previous page's `next_after`.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    security(("bearer" = [])),
    params(
        ("after" = Option<Uuid>, Query, description = "The previous page's `next_after`"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of tenants", body = TenantsBody),
        (status = 422, description = "An `after` that is not a tenant id, `limit` out of range, \
            or a repeated or unknown query parameter (`invalid_request`)", body = ErrorBody),
        AdminOnly,
    ))]
async fn list_tenants(
    _: AdminCaller,
    State(state): State<AppState>,
    paging: Paging<Uuid>,
) -> ApiResult<Json<TenantsBody>> {
    let client = super::connection(&state).await?;
    let rows = store::campaign_lists::tenants_page(&client, paging.after, paging.fetch()).await?;
    drop(client);
    let (rows, next_after) = paging.page(rows, |t| t.id);
    Ok(Json(TenantsBody {
        tenants: rows
            .into_iter()
            .map(|t| TenantBody {
                id: t.id,
                name: t.name,
                created_at: t.created_at,
            })
            .collect(),
        next_after,
    }))
}
