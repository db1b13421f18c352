//! `GET /v1/nodes` (admin): the engine nodes alive now — each heartbeats its
//! membership record into Redis (`engine::membership`) — with the partitions
//! whose lease each holds, the tenants hashed into them, and its send rate. A node that stopped cleanly is gone at
//! once; one that died is gone when its record expires (`node.lease_ttl_ms`).
//!
//! `POST /v1/nodes/{id}/drain` (admin) asks a live node to go away gracefully:
//! at its next heartbeat it stops taking tenants, the other nodes share its
//! tenants among themselves, it hands each off (SMTP under way finishes first,
//! then the lease is released) and its process exits. Repeating it changes
//! nothing; an id that is not a live node is 404.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use std::collections::HashMap;

use penguin_engine::membership::{Membership, NodeRecord};
use penguin_engine::partition;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::AdminCaller;
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{NoFields, OptionalJsonBody};
use crate::openapi::{AdminOnly, JsonBodyErrors};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(drain))
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
    /// The tenants of the partitions whose lease it held at that heartbeat, sorted.
    tenants: Vec<Uuid>,
    /// Tenants it is handing off to another node (SMTP under way finishing).
    handing_off: Vec<Uuid>,
    /// The partitions whose lease it held at that heartbeat (`node.partitions`
    /// in all; a tenant's partition is a hash of its id), sorted.
    partitions: Vec<u32>,
    /// Partitions it is handing off.
    handing_off_partitions: Vec<u32>,
    /// Messages it handed to a receiving server since it started.
    sent_total: u64,
    /// Its rate over its last heartbeat interval.
    sent_per_minute: f64,
    /// Handing its tenants off to exit (`POST /v1/nodes/{id}/drain`).
    draining: bool,
}

fn at_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The tenants of each partition (of `partitions` in all).
struct TenantsByPartition(HashMap<u32, Vec<Uuid>>);

impl TenantsByPartition {
    async fn load(state: &AppState) -> ApiResult<Self> {
        let tenants = penguin_engine::store::routing::tenant_ids(&state.pg).await?;
        let partitions = state.config.node.partitions;
        let mut by: HashMap<u32, Vec<Uuid>> = HashMap::new();
        for tenant in tenants {
            by.entry(partition::of(tenant, partitions))
                .or_default()
                .push(tenant);
        }
        Ok(TenantsByPartition(by))
    }

    fn of(&self, partitions: &[u32]) -> Vec<Uuid> {
        let mut tenants: Vec<Uuid> = partitions
            .iter()
            .flat_map(|p| self.0.get(p).into_iter().flatten().copied())
            .collect();
        tenants.sort_unstable();
        tenants
    }
}

impl NodeView {
    fn new(record: NodeRecord, tenants: &TenantsByPartition) -> Self {
        NodeView {
            id: record.id,
            started_at: at_ms(record.started_at_ms),
            last_heartbeat: at_ms(record.heartbeat_at_ms),
            tenants: tenants.of(&record.partitions),
            handing_off: tenants.of(&record.handing_off),
            partitions: record.partitions,
            handing_off_partitions: record.handing_off,
            sent_total: record.sent_total,
            sent_per_minute: record.sent_per_minute,
            draining: record.draining,
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
    let records = live(&state).await?;
    let tenants = TenantsByPartition::load(&state).await?;
    Ok(Json(Nodes {
        nodes: records
            .into_iter()
            .map(|record| NodeView::new(record, &tenants))
            .collect(),
    }))
}

async fn live(state: &AppState) -> ApiResult<Vec<NodeRecord>> {
    Membership::new(state.redis.clone())
        .live(penguin_engine::clock::unix_ms())
        .await
        .map_err(|e| AppError::unavailable("redis", e.to_string()))
}

/// Drains a node: it hands every tenant off, then exits (admin).
///
/// Answers at once (202) with the node as it is now; `draining` turns true at
/// its next heartbeat and the node leaves the list when it has exited. The body
/// is optional: empty or `{}`.
#[utoipa::path(post, path = "/v1/nodes/{id}/drain", tag = "nodes",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The node's `node.id`")),
    request_body = Option<NoFields>,
    responses(
        (status = 202, description = "Drain requested", body = NodeView),
        (status = 404, description = "No live node of that id (`not_found`)", body = ErrorBody),
        AdminOnly, JsonBodyErrors,
    ))]
async fn drain(
    _: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJsonBody(_): OptionalJsonBody<NoFields>,
) -> ApiResult<(StatusCode, Json<NodeView>)> {
    let Some(node) = live(&state).await?.into_iter().find(|n| n.id == id) else {
        return Err(AppError::not_found("no such live node"));
    };
    Membership::new(state.redis.clone())
        .request_drain(&node.id, state.config.node.lease_ttl_ms)
        .await
        .map_err(|e| AppError::unavailable("redis", e.to_string()))?;
    tracing::info!(node = %node.id, "drain requested");
    let tenants = TenantsByPartition::load(&state).await?;
    Ok((StatusCode::ACCEPTED, Json(NodeView::new(node, &tenants))))
}
