//! Taking a tenant on this node (Cluster's part of fencing, DESIGN.md §3):
//! [`take_over`] raises the tenant's epoch in Postgres, which returns the jobs
//! a previous holder left `sending`, and recovers its Redis state;
//! [`return_abandoned`] returns the jobs this node's own workers left `sending`
//! while its leases were not surely held, once a renewal shows them still its own.

use std::collections::HashMap;

use penguin_engine::store::fences;
use uuid::Uuid;

use crate::context::Ctx;
use crate::feeder;

/// Jobs this node's workers left `sending` while its leases were not surely
/// held (an OS pause, Redis out of reach) go back to `pending` now that a
/// renewal shows the tenant still this node's under the same epoch: nobody
/// took it over in between, so nobody else would return them.
pub(crate) async fn return_abandoned(ctx: &Ctx) {
    let abandoned = std::mem::take(&mut *ctx.abandoned.lock().expect("abandoned lock"));
    let mut by_claim: HashMap<(Uuid, fences::Epoch), Vec<(Uuid, Uuid)>> = HashMap::new();
    for (tenant, job, epoch, claim) in abandoned {
        if ctx.fence(tenant) == Some(epoch) {
            by_claim
                .entry((tenant, epoch))
                .or_default()
                .push((job, claim));
        }
    }
    let now = ctx.clock.now();
    for ((tenant, epoch), jobs) in by_claim {
        match penguin_engine::store::ledger::release_sending(&ctx.pg, tenant, epoch, &jobs, now)
            .await
        {
            Ok(Some(n)) if n > 0 => {
                tracing::info!(%tenant, jobs = n, "returned jobs left while the lease was not surely held");
                ctx.metrics.jobs_recovered("lease_lapse", n);
                feeder::wake(ctx);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(%tenant, error = %err, "returning abandoned jobs failed; retrying");
                ctx.abandoned.lock().expect("abandoned lock").extend(
                    jobs.into_iter()
                        .map(|(job, claim)| (tenant, job, epoch, claim)),
                );
            }
        }
    }
}

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
        ctx.metrics.jobs_recovered("takeover", taken.released);
    }
    ctx.fences
        .write()
        .expect("fences lock")
        .insert(tenant, taken.epoch);
    crate::reaper::recover_redis_loss(ctx, tenant, true).await;
    true
}
