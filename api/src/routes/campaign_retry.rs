//! `POST /v1/campaigns/{id}/retry` `{"status": "failed"}` → `{"requeued": n}`:
//! the campaign's `failed` jobs go back to `pending`, due at once, each with a
//! fresh attempt budget of the retry policy (`store::ledger::requeue_failed`);
//! jobs whose address the tenant suppressed stay `failed`. A `completed`
//! campaign with jobs requeued is `running` again; the engine is told at once
//! (a `CampaignChanged` control event), so the jobs go out without waiting for
//! a scan. Only `failed` may be asked for (422 otherwise); a cancelled campaign
//! is 409; asking again requeues only what failed since (0 if nothing did).

use axum::Json;
use axum::extract::State;
use penguin_engine::control::ControlEvent;
use penguin_engine::store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::campaigns::campaign_error;
use super::{commit, connection, tenant_scope};
use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{IdPath, JsonBody};
use crate::openapi::{JsonBodyErrors, TenantOnly};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(retry))
}

/// Which jobs to requeue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RetryRequest {
    /// Only `failed`.
    #[schema(example = "failed")]
    status: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct RetryAnswer {
    /// How many jobs went back to `pending`.
    requeued: u64,
}

/// Requeues the campaign's failed jobs, now, with a fresh attempt budget.
///
/// Jobs whose address the tenant suppressed stay `failed`. A `completed`
/// campaign with jobs requeued becomes `running` again.
#[utoipa::path(post, path = "/v1/campaigns/{id}/retry", tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The campaign")),
    request_body = RetryRequest,
    responses(
        (status = 200, description = "How many jobs were requeued", body = RetryAnswer),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        (status = 409, description = "The campaign is cancelled (`conflict`)", body = ErrorBody),
        (status = 422, description = "A `status` other than `failed` (`invalid_request`)",
            body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn retry(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    JsonBody(request): JsonBody<RetryRequest>,
) -> ApiResult<Json<RetryAnswer>> {
    if request.status != "failed" {
        return Err(AppError::invalid(
            "status must be \"failed\": only failed jobs can be retried",
        ));
    }
    let mut client = connection(&state).await?;
    let tx = tenant_scope(&mut client, tenant).await?;
    let (change, requeued) =
        store::campaigns::retry_failed(&tx, tenant, id, OffsetDateTime::now_utc())
            .await
            .map_err(campaign_error)?;
    commit(tx).await?;
    drop(client);
    if requeued > 0 {
        let event = ControlEvent::CampaignChanged {
            tenant_id: tenant,
            campaign_id: id,
            status: change.status,
        };
        super::publish(&state, event).await;
        tracing::info!(tenant_id = %tenant, campaign_id = %id, requeued, status = %change.status, "failed jobs requeued");
    }
    Ok(Json(RetryAnswer { requeued }))
}
