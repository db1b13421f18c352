//! What a Tenant actor asks of the world outside the actor tree: its Redis
//! lists (reliable pop, acknowledge), its campaigns' IP pools, and Postgres for
//! jobs whose whole pool must wait. [`EngineTenantPorts`] is the real adapter
//! over the node's context (the Redis queue, the campaign cache, the job
//! store); the actor tests put in-memory fakes behind the same trait, so the
//! credit scheme is tested on the real actor without Redis or Postgres.

use async_trait::async_trait;
use penguin_engine::db::StoreError;
use penguin_engine::queue::{Popped, QueueError};
use penguin_engine::store::fences::Epoch;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::context::Ctx;
use crate::db_timing::DbOp;

#[async_trait]
pub trait TenantPorts: Send + Sync + 'static {
    /// Moves up to `max` jobs of `tenant` into its in-flight set until
    /// `deadline_ms` (unix ms): the jobs, and how many were dropped as garbage.
    async fn pop(
        &self,
        tenant: Uuid,
        max: usize,
        deadline_ms: i64,
    ) -> Result<(Vec<Popped>, usize), QueueError>;

    /// Takes popped jobs out of the in-flight set.
    async fn ack(&self, tenant: Uuid, raws: &[&[u8]]) -> Result<(), QueueError>;

    /// Jobs of `tenant` in Redis: waiting in its lists or popped and in flight.
    async fn held(&self, tenant: Uuid) -> Result<usize, QueueError>;

    /// The IPs of the campaign's pool.
    async fn campaign_ips(&self, tenant: Uuid, campaign: Uuid) -> Result<Vec<Uuid>, StoreError>;

    /// Returns `queued` jobs to `pending` until `run_at`, under `epoch`: how
    /// many moved, or `None` when the tenant's epoch moved on (fenced).
    async fn postpone(
        &self,
        tenant: Uuid,
        epoch: Epoch,
        jobs: &[Uuid],
        run_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError>;
}

/// The real ports: Redis, the node's campaign cache, Postgres.
pub struct EngineTenantPorts(pub Ctx);

#[async_trait]
impl TenantPorts for EngineTenantPorts {
    async fn pop(
        &self,
        tenant: Uuid,
        max: usize,
        deadline_ms: i64,
    ) -> Result<(Vec<Popped>, usize), QueueError> {
        self.0.queue.pop(tenant, max, deadline_ms).await
    }

    async fn ack(&self, tenant: Uuid, raws: &[&[u8]]) -> Result<(), QueueError> {
        self.0.queue.ack(tenant, raws).await
    }

    async fn held(&self, tenant: Uuid) -> Result<usize, QueueError> {
        self.0.queue.held(tenant).await
    }

    async fn campaign_ips(&self, tenant: Uuid, campaign: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let ctx = &self.0;
        let campaign = ctx.campaigns.get(&ctx.pg, tenant, campaign).await?;
        Ok(campaign.spec.ip_ids.clone())
    }

    async fn postpone(
        &self,
        tenant: Uuid,
        epoch: Epoch,
        jobs: &[Uuid],
        run_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        let postpone = penguin_engine::store::ledger::postpone_queued(
            &self.0.pg, tenant, epoch, jobs, run_at, now,
        );
        self.0.metrics.timed(DbOp::Postpone, postpone).await
    }
}
