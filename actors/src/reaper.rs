//! Reaper: recovery for this node's partitions, every `queue.reaper_interval_ms`.
//! Steps 1–2 visit only the tenants with a Tenant actor (those with work: an
//! idle tenant has nothing in Redis to lose or re-queue); steps 3–4 are one
//! statement each for all of the node's partitions.
//!
//! 1. Redis lost the tenant's state (emptied or restarted: its `live` marker is
//!    gone) → every `queued` job returns to `pending`, then the marker is set again.
//!    Copies that survived are harmless: claiming them fails.
//! 2. Popped jobs whose in-flight deadline passed (their Tenant or Ip died before
//!    claiming) go back to the front of their list.
//! 3. Jobs `sending` under this node's tokens for longer than
//!    `queue.sending_timeout_ms` return to `pending`.
//! 4. Running campaigns with nothing left to do become `completed`.
//! 5. The safety net of steps 1–2: a tenant with a job `queued` for longer than
//!    the in-flight deadline and two reaper periods, but no Tenant actor, gets
//!    one (steps 1–2 then visit it). Nothing else would: the Feeder wakes a
//!    tenant for due jobs or a non-empty list, and a job popped into an
//!    in-flight set is neither. One indexed statement (the in-flight window
//!    only) for all of the node's partitions, at most once per
//!    `queue.inflight_deadline_ms`: nothing it finds is younger than that.

use std::time::Duration;

use penguin_engine::store::{due, jobs, ledger};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::context::Ctx;
use crate::feeder;
use crate::tenant::TenantMsg;

pub struct Reaper;

pub enum ReaperMsg {
    Tick,
}

pub struct ReaperState {
    ctx: Ctx,
    /// When step 5 last ran.
    net_ran: Option<std::time::Instant>,
}

impl Actor for Reaper {
    type Msg = ReaperMsg;
    type State = ReaperState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        let every = Duration::from_millis(ctx.config.queue.reaper_interval_ms);
        myself.send_interval(every, || ReaperMsg::Tick);
        Ok(ReaperState { ctx, net_ran: None })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ReaperMsg::Tick => state.tick().await,
        }
        Ok(())
    }
}

impl ReaperState {
    async fn tick(&mut self) {
        let owned = self.ctx.owned();
        if owned.partitions.is_empty() {
            return;
        }
        let tenants: Vec<uuid::Uuid> = self
            .ctx
            .directory
            .tenant_ids()
            .into_iter()
            .filter(|t| owned.has(self.ctx.partition(*t)))
            .collect();
        let mut returned = 0;
        for &tenant in &tenants {
            returned += recover_redis_loss(&self.ctx, tenant, false).await;
            match self
                .ctx
                .queue
                .requeue_expired(tenant, self.ctx.inflight_now_ms(), 1_000)
                .await
            {
                Ok(0) => {}
                Ok(moved) => {
                    self.ctx
                        .metrics
                        .jobs_recovered("inflight_expired", moved as u64);
                    if let Some(actor) = self.ctx.directory.tenant(tenant) {
                        let _ = actor.cast(TenantMsg::JobsAvailable);
                    }
                }
                Err(err) => {
                    tracing::warn!(%tenant, error = %err, "re-queueing expired jobs failed")
                }
            }
        }
        let now = self.ctx.clock.now();
        let stale = now - Duration::from_millis(self.ctx.config.queue.sending_timeout_ms);
        let tokens: Vec<_> = {
            let fences = self.ctx.fences.read().expect("fences lock");
            owned
                .partitions
                .iter()
                .filter_map(|p| fences.get(p).copied())
                .collect()
        };
        match ledger::release_stale_sending(&self.ctx.pg, &tokens, stale, now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(jobs = n, "returned jobs stuck in `sending`");
                self.ctx.metrics.jobs_recovered("sending_timeout", n);
                returned += n;
            }
            Err(err) => tracing::warn!(error = %err, "releasing stale sending jobs failed"),
        }
        if returned > 0 {
            feeder::wake(&self.ctx);
        }
        self.complete_campaigns(&owned.partitions).await;
        self.wake_stuck_tenants(&owned.partitions).await;
    }

    /// Step 5: tenants with long-`queued` jobs and no Tenant actor get one.
    async fn wake_stuck_tenants(&mut self, partitions: &[penguin_engine::partition::Partition]) {
        let queue = &self.ctx.config.queue;
        let every = Duration::from_millis(queue.inflight_deadline_ms);
        if self.net_ran.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.net_ran = Some(std::time::Instant::now());
        let stuck_after = queue.inflight_deadline_ms + 2 * queue.reaper_interval_ms;
        let before = self.ctx.clock.now() - Duration::from_millis(stuck_after);
        let count = self.ctx.config.node.partitions;
        let tenants =
            match due::tenants_queued_before(&self.ctx.pg, count, partitions, before).await {
                Ok(tenants) => tenants,
                Err(err) => {
                    tracing::warn!(error = %err, "listing tenants with stuck queued jobs failed");
                    return;
                }
            };
        for tenant in tenants {
            if self.ctx.directory.tenant(tenant).is_none() {
                tracing::warn!(%tenant, "jobs queued without a Tenant actor; waking the tenant");
                crate::tenant_supervisor::activate(&self.ctx, tenant, false);
            }
        }
    }

    async fn complete_campaigns(&self, partitions: &[penguin_engine::partition::Partition]) {
        let count = self.ctx.config.node.partitions;
        let result = async {
            let running = due::running_campaigns(&self.ctx.pg, count, partitions).await?;
            jobs::complete_finished_campaigns(&self.ctx.pg, &running, self.ctx.clock.now()).await
        }
        .await;
        match result {
            Ok(done) => {
                for (tenant, campaign) in done {
                    tracing::info!(%tenant, %campaign, "campaign completed");
                }
            }
            Err(err) => tracing::warn!(error = %err, "completion check failed"),
        }
    }
}

/// When Redis no longer holds `tenant`'s marker (emptied, restarted, or never set
/// for this tenant), returns the tenant's `queued` jobs to `pending` and sets the
/// marker. Cluster calls it when it takes a tenant's lease (`taking_over`), before
/// the Feeder sees the tenant; the Reaper calls it every round. Returns the jobs.
pub(crate) async fn recover_redis_loss(ctx: &Ctx, tenant: uuid::Uuid, taking_over: bool) -> u64 {
    match ctx.queue.is_live(tenant).await {
        Ok(true) => return 0,
        Ok(false) => {}
        Err(err) => {
            tracing::warn!(%tenant, error = %err, "checking redis state failed");
            return 0;
        }
    }
    let Some(epoch) = ctx.fence(tenant) else {
        return 0;
    };
    match ledger::release_queued(&ctx.pg, tenant, epoch, ctx.clock.now()).await {
        // Another node took the tenant over: the recovery is its own.
        Ok(None) => 0,
        Ok(Some(n)) => {
            if n > 0 && taking_over {
                tracing::info!(%tenant, jobs = n, "took over queued jobs without a redis copy");
                ctx.metrics.jobs_recovered("takeover", n);
            } else if n > 0 {
                tracing::warn!(%tenant, jobs = n, "redis lost this tenant's queue; re-feeding from postgres");
                ctx.metrics.jobs_recovered("redis_lost", n);
            }
            if let Err(err) = ctx.queue.mark_live(tenant).await {
                tracing::warn!(%tenant, error = %err, "marking redis state failed");
            }
            n
        }
        Err(err) => {
            tracing::warn!(%tenant, error = %err, "releasing queued jobs failed");
            0
        }
    }
}
