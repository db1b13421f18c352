//! `POST /v1/tenants` (admin): creates a tenant and its API token. The token is
//! in this one response only; the database keeps its sha256.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use penguin_engine::control::ControlEvent;
use penguin_engine::store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{self, AdminCaller};
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::openapi::{AdminOnly, JsonBodyErrors};
use crate::validate;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create))
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
