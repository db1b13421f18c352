//! Handing a partition to another node without a duplicate. Cluster calls
//! [`hand_off`] for a partition it still holds the lease of but should no
//! longer own (another node joined, or this one drains). By then the partition
//! is out of this node's ownership: its tenants' Tenant actors stop popping and
//! the Feeder stops feeding them. [`hand_off`] then
//!
//! 1. drains the Ip actors of the partition's tenants (`IpSupMsg::Release`):
//!    SMTP transactions under way finish, claimed jobs not started go back to
//!    `pending`;
//! 2. flushes the StatusWriter and Analytics, so every outcome is in Postgres;
//! 3. releases the lease, which the new owner takes at its next heartbeat.
//!
//! Cluster keeps renewing the lease until step 3, so nobody takes the partition
//! over while this node may still send for it. Jobs the stopped Tenant actors
//! had popped stay in Redis' in-flight sets; the new owner re-queues them when
//! it takes the lease (`takeover::take_over`).

use std::time::Duration;

use penguin_engine::lease::Leases;
use penguin_engine::partition::Partition;
use ractor::ActorRef;
use uuid::Uuid;

use crate::cluster::ClusterMsg;
use crate::context::Ctx;
use crate::ip_supervisor::IpSupMsg;
use crate::{analytics, status_writer};

/// The longest a drain may take (an SMTP transaction's worst case, with slack).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the hand-off of `partition` (whose tenants' IPs are `partition_ips`)
/// and tells Cluster `HandedOff(partition)` when the lease is released (or
/// could not be).
pub async fn hand_off(
    ctx: Ctx,
    ips: ActorRef<IpSupMsg>,
    cluster: ActorRef<ClusterMsg>,
    partition: Partition,
    partition_ips: Vec<Uuid>,
) {
    tracing::debug!(
        partition,
        ips = partition_ips.len(),
        "handing partition off"
    );
    if !partition_ips.is_empty() {
        let released = ips
            .call(
                |reply| IpSupMsg::Release(partition_ips, reply),
                Some(DRAIN_TIMEOUT),
            )
            .await;
        if !matches!(released, Ok(ractor::rpc::CallResult::Success(()))) {
            tracing::warn!(
                partition,
                "draining the partition's IPs did not finish; releasing anyway"
            );
        }
        status_writer::flush(&ctx).await;
        analytics::flush(&ctx).await;
    }
    let leases = Leases::new(ctx.queue.pool().clone());
    if let Err(err) = leases.release(&[partition], &ctx.config.node.id).await {
        tracing::warn!(partition, error = %err, "releasing the lease failed; it will expire");
    }
    tracing::debug!(partition, "partition handed off");
    let _ = cluster.cast(ClusterMsg::HandedOff(partition));
}
