//! Taking partitions on this node (Cluster's part of fencing, DESIGN.md §3–§4):
//! [`take_over`] raises the partitions' epochs in Postgres, which returns the
//! jobs a previous holder left `sending`, and recovers the Redis state of their
//! tenants that hold `queued` jobs; [`return_abandoned`] returns the jobs this
//! node's own workers left `sending` while its leases were not surely held, once
//! a renewal shows them still its own.

use std::collections::HashMap;

use penguin_engine::partition::Partition;
use penguin_engine::store::{due, fences};
use uuid::Uuid;

use crate::context::Ctx;
use crate::feeder;

/// Partitions taken over in one transaction (a takeover waits at most 250 ms
/// for a claim's fence lock; smaller batches fail less often together).
const TAKE_BATCH: usize = 64;

/// Jobs this node's workers left `sending` while its leases were not surely
/// held (an OS pause, Redis out of reach) go back to `pending` now that a
/// renewal shows the partition still this node's under the same token: nobody
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
                feeder::activate(ctx, tenant);
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

/// Partitions whose lease this process just took: whoever worked them before
/// (a dead node, a paused one, or this node before a restart) is fenced off by
/// new epochs, and the jobs it left `sending` return to `pending` in the same
/// transaction; the Redis state of their tenants may be stale. Runs before the
/// Feeder and the Ip actors see the partitions. Returns the partitions that
/// may be worked (the others are retried at the next heartbeat) and the
/// tenants with `queued` jobs, to wake once the partitions are published.
pub(crate) async fn take_over(ctx: &Ctx, partitions: &[Partition]) -> (Vec<Partition>, Vec<Uuid>) {
    let now = ctx.clock.now();
    let node = &ctx.config.node.id;
    let count = ctx.config.node.partitions;
    let mut taken: Vec<Partition> = Vec::new();
    for batch in partitions.chunks(TAKE_BATCH) {
        let takeover = match fences::take(&ctx.pg, batch, count, node, now).await {
            Ok(takeover) => takeover,
            Err(err) => {
                tracing::warn!(partitions = batch.len(), error = %err, "taking partitions failed; retrying at the next heartbeat");
                continue;
            }
        };
        if takeover.released > 0 {
            tracing::warn!(
                jobs = takeover.released,
                "returned jobs a previous owner left `sending`"
            );
            ctx.metrics.jobs_recovered("takeover", takeover.released);
        }
        let mut fences = ctx.fences.write().expect("fences lock");
        for (partition, token) in &takeover.tokens {
            fences.insert(*partition, *token);
            taken.push(*partition);
        }
    }
    if taken.is_empty() {
        return (taken, Vec::new());
    }
    tracing::info!(partitions = taken.len(), "took partitions over");
    // Tenants with `queued` jobs: their Redis copies may be gone (or were
    // popped by the previous owner and sit in its in-flight set).
    match due::tenants_with_queued(&ctx.pg, count, &taken).await {
        Ok(tenants) => {
            for tenant in &tenants {
                crate::reaper::recover_redis_loss(ctx, *tenant, true).await;
            }
            (taken, tenants)
        }
        Err(err) => {
            // Their jobs wait until Redis state is checked again: the safety
            // net's scan does not see `queued` jobs. Retried at the next heartbeat.
            tracing::warn!(error = %err, "listing tenants with queued jobs failed; retrying the takeover");
            let mut fences = ctx.fences.write().expect("fences lock");
            for partition in &taken {
                fences.remove(partition);
            }
            (Vec::new(), Vec::new())
        }
    }
}
