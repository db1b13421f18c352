//! `PATCH /v1/campaigns/{id}` `{ip_ids}`: moves a campaign to other IPs of the
//! tenant (see `store::campaign_ips`): on a draft, scheduled, running or
//! paused campaign; waiting jobs go out on the new pool, jobs already in SMTP
//! finish where they are.

use axum::Json;
use axum::extract::State;
use penguin_engine::control::ControlEvent;
use penguin_engine::store;
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::campaigns::{CampaignBody, campaign_error, check_ip_ids, check_owned_ips};
use super::{commit, connection, tenant_scope};
use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{IdPath, JsonBody};
use crate::openapi::{JsonBodyErrors, TenantOnly};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(patch))
}

/// What may change on an existing campaign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchCampaign {
    /// The caller's IPs to send from from now on (1 or more, no repeats, none
    /// retired).
    ip_ids: Vec<Uuid>,
}

/// Moves a campaign to other IPs.
///
/// On a `draft`, `scheduled`, `running` or `paused` campaign (409 otherwise).
/// Jobs that wait for the old IPs' allowance become due at once and go out on
/// the new IPs; jobs already handed to an old IP finish there, each sent once.
/// Answers the campaign.
#[utoipa::path(patch, path = "/v1/campaigns/{id}", tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The campaign")),
    request_body = PatchCampaign,
    responses(
        (status = 200, description = "The campaign with its new IPs", body = CampaignBody),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        (status = 409, description = "The campaign is completed or cancelled (`conflict`)", body = ErrorBody),
        (status = 422, description = "Invalid `ip_ids` (`invalid_request`)", body = ErrorBody),
        TenantOnly, JsonBodyErrors,
    ))]
async fn patch(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    JsonBody(request): JsonBody<PatchCampaign>,
) -> ApiResult<Json<CampaignBody>> {
    check_ip_ids(&request.ip_ids)?;
    let mut client = connection(&state).await?;
    let tx = tenant_scope(&mut client, tenant).await?;
    // The campaign first (404 before 422 for another tenant's id).
    store::campaigns::tenant_campaign(&tx, tenant, id)
        .await
        .map_err(campaign_error)?;
    check_owned_ips(&tx, tenant, &request.ip_ids).await?;
    let now = OffsetDateTime::now_utc();
    let campaign = store::campaign_ips::set_campaign_ips(&tx, tenant, id, &request.ip_ids, now)
        .await
        .map_err(campaign_error)?;
    commit(tx).await?;
    drop(client);
    let event = ControlEvent::CampaignChanged {
        tenant_id: tenant,
        campaign_id: id,
        status: campaign.status,
    };
    super::publish(&state, event).await;
    tracing::info!(tenant_id = %tenant, campaign_id = %id, ip_ids = ?request.ip_ids, "campaign moved to other IPs");
    Ok(Json(campaign.into()))
}
