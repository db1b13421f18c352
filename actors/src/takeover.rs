//! Taking a tenant on this node (Cluster's part of fencing, DESIGN.md §3):
//! [`take_over`] raises the tenant's epoch in Postgres, which returns the jobs
//! a previous holder left `sending`, and recovers its Redis state.

use penguin_engine::store::fences;
use uuid::Uuid;

use crate::context::Ctx;
use crate::metrics;

/// A tenant whose lease this process just took: whoever worked it before (a
/// dead node, a paused one, or this node before a restart) is fenced off by a
/// new epoch, and the jobs it left `sending` return to `pending` in the same
/// transaction; its Redis state may be stale. Runs before the Feeder and the
/// Ip actors see the tenant. Returns whether the tenant may be worked.
pub(crate) async fn take_over(ctx: &Ctx, tenant: Uuid) -> bool {
    let now = ctx.clock.now();
    let node = &ctx.config.node.id;
    let taken = match fences::take(&ctx.pg, tenant, node, now).await {
        Ok(taken) => taken,
        Err(err) => {
            tracing::warn!(%tenant, error = %err, "taking the tenant's epoch failed; retrying at the next heartbeat");
            return false;
        }
    };
    tracing::info!(%tenant, epoch = taken.epoch, "took the tenant over");
    if taken.released > 0 {
        tracing::warn!(%tenant, jobs = taken.released, "returned jobs a previous owner left `sending`");
        metrics::jobs_recovered("takeover", taken.released);
    }
    ctx.fences
        .write()
        .expect("fences lock")
        .insert(tenant, taken.epoch);
    crate::reaper::recover_redis_loss(ctx, tenant, true).await;
    true
}
