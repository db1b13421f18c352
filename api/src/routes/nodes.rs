//! `GET /v1/nodes` (admin): the engine nodes alive now — each heartbeats its
//! membership record into Redis (`engine::membership`) — with the tenants whose
//! lease each holds and its send rate. A node that stopped cleanly is gone at
//! once; one that died is gone when its record expires (`node.lease_ttl_ms`).

use axum::Json;
use axum::extract::State;
use penguin_engine::membership::{Membership, NodeRecord};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::AdminCaller;
use crate::error::{ApiResult, AppError};
use crate::openapi::AdminOnly;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Serialize, ToSchema)]
struct Nodes {
    /// Live nodes, by id.
    nodes: Vec<NodeView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct NodeView {
    /// The node's `node.id`.
    id: String,
    #[serde(with = "time::serde::rfc3339")]
    started_at: OffsetDateTime,
    /// Its last membership record (every `node.heartbeat_ms`).
    #[serde(with = "time::serde::rfc3339")]
    last_heartbeat: OffsetDateTime,
    /// The tenants whose lease it held at that heartbeat, sorted.
    tenants: Vec<Uuid>,
    /// Messages it handed to a receiving server since it started.
    sent_total: u64,
    /// Its rate over its last heartbeat interval.
    sent_per_minute: f64,
}

fn at_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl From<NodeRecord> for NodeView {
    fn from(record: NodeRecord) -> Self {
        NodeView {
            id: record.id,
            started_at: at_ms(record.started_at_ms),
            last_heartbeat: at_ms(record.heartbeat_at_ms),
            tenants: record.tenants,
            sent_total: record.sent_total,
            sent_per_minute: record.sent_per_minute,
        }
    }
}

/// The live engine nodes, their tenants and send rates (admin).
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every live node", body = Nodes),
        AdminOnly,
    ))]
async fn list(_: AdminCaller, State(state): State<AppState>) -> ApiResult<Json<Nodes>> {
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let records = Membership::new(state.redis.clone())
        .live(now_ms)
        .await
        .map_err(|e| AppError::unavailable("redis", e.to_string()))?;
    Ok(Json(Nodes {
        nodes: records.into_iter().map(NodeView::from).collect(),
    }))
}
