//! What an Ip actor asks of the world outside the actor tree to admit jobs:
//! the IP-local calendar and past usage (Postgres), its allowance counters
//! (Redis), the day-end warm-up verdicts and its fresh row, the claim
//! `queued → sending`, the acknowledgement of claimed jobs in Redis, the
//! release of jobs a previous incarnation left `sending`, and the shaping
//! actions it takes and takes over (`ip_shaping_actions`).
//! [`EngineIpPorts`] is the real adapter over the node's context; the actor
//! tests (`ip_tests.rs`) put in-memory fakes behind the same trait, so
//! admission is tested on the real actor and the real allowance arithmetic.

use async_trait::async_trait;
use penguin_engine::db::StoreError;
use penguin_engine::queue::QueueError;
use penguin_engine::queue::counters::{IpCounters, Reserved, Slot};
use penguin_engine::store::fences::Epoch;
use penguin_engine::store::ledger::{self, SendingClaim, UsageMark};
use penguin_engine::store::routing::{self, IpSpec};
use penguin_engine::store::shaping_actions::{self, ShapingAction};
use penguin_engine::store::usage::{self, DayUsage, LocalHour};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::context::Ctx;
use crate::db_timing::DbOp;

#[async_trait]
pub trait IpPorts: Send + Sync + 'static {
    /// The hour and day of `at` in `timezone`.
    async fn local_hour(&self, timezone: &str, at: OffsetDateTime)
    -> Result<LocalHour, StoreError>;

    /// What the IP sent on `day` and in the hour starting at `hour_start`, as
    /// recorded with the claims (rebuilds missing counters).
    async fn usage(
        &self,
        tenant: Uuid,
        ip: Uuid,
        day: Date,
        hour_start: OffsetDateTime,
    ) -> Result<DayUsage, StoreError>;

    /// Reserves up to `wanted` sends of `slot` within the limits (see
    /// [`IpCounters::reserve`]).
    async fn reserve(
        &self,
        slot: &Slot,
        wanted: u32,
        day_limit: Option<u32>,
        hour_limit: Option<u32>,
    ) -> Result<Reserved, QueueError>;

    /// Writes the counters (missing or not) with Postgres' totals under a new
    /// epoch (see [`IpCounters::reset`]).
    async fn reset(&self, slot: &Slot, day_total: i64, hour_total: i64) -> Result<(), QueueError>;

    /// Returns `n` reserved sends, of `epoch` when they were never claimed (see
    /// [`IpCounters::give_back`]).
    async fn give_back(&self, slot: &Slot, n: u32, epoch: Option<i64>) -> Result<(), QueueError>;

    /// Gives the IP's finished days their warm-up verdict.
    async fn catch_up(&self, ip: &IpSpec, now: OffsetDateTime) -> anyhow::Result<()>;

    /// The tenant's IPs as Postgres has them now.
    async fn ips_of(&self, tenant: Uuid) -> Result<Vec<IpSpec>, StoreError>;

    /// Claims `(job, ip)` pairs `queued → sending` under `epoch` (see
    /// [`ledger::claim_sending`]).
    async fn claim_sending(
        &self,
        tenant: Uuid,
        epoch: Epoch,
        pairs: &[(Uuid, Uuid)],
        campaigns: &[Uuid],
        now: OffsetDateTime,
        mark: Option<UsageMark>,
    ) -> Result<SendingClaim, StoreError>;

    /// Takes claimed jobs out of the tenant's Redis in-flight set.
    async fn ack(&self, tenant: Uuid, raws: &[&[u8]]) -> Result<(), QueueError>;

    /// Returns jobs left `sending` on the IP to `pending` under `epoch` (a
    /// previous incarnation's): how many, or `None` when fenced.
    async fn release_sending_on_ip(
        &self,
        tenant: Uuid,
        epoch: Epoch,
        ip: Uuid,
        now: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError>;

    /// Records a shaping action just taken (see [`shaping_actions::record`]).
    async fn record_shaping(&self, action: &ShapingAction) -> Result<(), StoreError>;

    /// The IP's shaping actions still in force at `now`.
    async fn shaping_in_force(
        &self,
        tenant: Uuid,
        ip: Uuid,
        now: OffsetDateTime,
    ) -> Result<Vec<ShapingAction>, StoreError>;
}

/// The real ports: Postgres, Redis, and the warm-up verdicts.
pub struct EngineIpPorts {
    ctx: Ctx,
    counters: IpCounters,
}

impl EngineIpPorts {
    pub fn new(ctx: Ctx) -> Self {
        let counters = IpCounters::new(ctx.queue.pool().clone());
        Self { ctx, counters }
    }
}

#[async_trait]
impl IpPorts for EngineIpPorts {
    async fn local_hour(
        &self,
        timezone: &str,
        at: OffsetDateTime,
    ) -> Result<LocalHour, StoreError> {
        usage::local_hour(&self.ctx.pg, timezone, at).await
    }

    async fn usage(
        &self,
        tenant: Uuid,
        ip: Uuid,
        day: Date,
        hour_start: OffsetDateTime,
    ) -> Result<DayUsage, StoreError> {
        usage::usage(&self.ctx.pg, tenant, ip, day, hour_start).await
    }

    async fn reserve(
        &self,
        slot: &Slot,
        wanted: u32,
        day_limit: Option<u32>,
        hour_limit: Option<u32>,
    ) -> Result<Reserved, QueueError> {
        self.counters
            .reserve(slot, wanted, day_limit, hour_limit)
            .await
    }

    async fn reset(&self, slot: &Slot, day_total: i64, hour_total: i64) -> Result<(), QueueError> {
        self.counters.reset(slot, day_total, hour_total).await
    }

    async fn give_back(&self, slot: &Slot, n: u32, epoch: Option<i64>) -> Result<(), QueueError> {
        self.counters.give_back(slot, n, epoch).await
    }

    async fn catch_up(&self, ip: &IpSpec, now: OffsetDateTime) -> anyhow::Result<()> {
        crate::warmup::catch_up(&self.ctx, ip, now)
            .await
            .map(|_| ())
    }

    async fn ips_of(&self, tenant: Uuid) -> Result<Vec<IpSpec>, StoreError> {
        routing::ips_of(&self.ctx.pg, &[tenant]).await
    }

    async fn claim_sending(
        &self,
        tenant: Uuid,
        epoch: Epoch,
        pairs: &[(Uuid, Uuid)],
        campaigns: &[Uuid],
        now: OffsetDateTime,
        mark: Option<UsageMark>,
    ) -> Result<SendingClaim, StoreError> {
        let claim = ledger::claim_sending(&self.ctx.pg, tenant, epoch, pairs, campaigns, now, mark);
        self.ctx.metrics.timed(DbOp::ClaimSending, claim).await
    }

    async fn ack(&self, tenant: Uuid, raws: &[&[u8]]) -> Result<(), QueueError> {
        self.ctx.queue.ack(tenant, raws).await
    }

    async fn release_sending_on_ip(
        &self,
        tenant: Uuid,
        epoch: Epoch,
        ip: Uuid,
        now: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        ledger::release_sending_on_ip(&self.ctx.pg, tenant, epoch, ip, now).await
    }

    async fn record_shaping(&self, action: &ShapingAction) -> Result<(), StoreError> {
        shaping_actions::record(&self.ctx.pg, action).await
    }

    async fn shaping_in_force(
        &self,
        tenant: Uuid,
        ip: Uuid,
        now: OffsetDateTime,
    ) -> Result<Vec<ShapingAction>, StoreError> {
        shaping_actions::load_in_force(&self.ctx.pg, tenant, ip, now).await
    }
}
