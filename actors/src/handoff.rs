//! Handing a tenant to another node without a duplicate. Cluster calls
//! [`hand_off`] for a tenant it still holds the lease of but should no longer
//! own (another node joined, or this one drains). By then the tenant is out of
//! this node's ownership: its Tenant actor stops popping and the Feeder stops
//! feeding it. [`hand_off`] then
//!
//! 1. drains the tenant's Ip actors (`IpSupMsg::Release`): SMTP transactions
//!    under way finish, claimed jobs not started go back to `pending`;
//! 2. flushes the StatusWriter and Analytics, so every outcome is in Postgres;
//! 3. releases the lease, which the new owner takes at its next heartbeat.
//!
//! Cluster keeps renewing the lease until step 3, so nobody takes the tenant
//! over while this node may still send for it. Jobs the stopped Tenant actor
//! had popped stay in Redis' in-flight set; the new owner re-queues them when
//! it takes the lease (`Cluster::take_over`).

use std::time::Duration;

use penguin_engine::lease::Leases;
use ractor::ActorRef;
use uuid::Uuid;

use crate::cluster::ClusterMsg;
use crate::context::Ctx;
use crate::ip_supervisor::IpSupMsg;
use crate::{analytics, status_writer};

/// The longest a drain may take (an SMTP transaction's worst case, with slack).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the hand-off of `tenant` (whose IPs are `ips`) and tells Cluster
/// `HandedOff(tenant)` when the lease is released (or could not be).
pub async fn hand_off(
    ctx: Ctx,
    ips: ActorRef<IpSupMsg>,
    cluster: ActorRef<ClusterMsg>,
    tenant: Uuid,
    tenant_ips: Vec<Uuid>,
) {
    tracing::info!(%tenant, ips = tenant_ips.len(), "handing tenant off");
    let released = ips
        .call(
            |reply| IpSupMsg::Release(tenant_ips, reply),
            Some(DRAIN_TIMEOUT),
        )
        .await;
    if !matches!(released, Ok(ractor::rpc::CallResult::Success(()))) {
        tracing::warn!(%tenant, "draining the tenant's IPs did not finish; releasing anyway");
    }
    status_writer::flush(&ctx).await;
    analytics::flush(&ctx).await;
    let leases = Leases::new(ctx.queue.pool().clone());
    if let Err(err) = leases.release(tenant, &ctx.config.node.id).await {
        tracing::warn!(%tenant, error = %err, "releasing the lease failed; it will expire");
    }
    tracing::info!(%tenant, "tenant handed off");
    let _ = cluster.cast(ClusterMsg::HandedOff(tenant));
}
