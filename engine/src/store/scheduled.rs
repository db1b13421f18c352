//! Scheduled starts: `scheduled → running` when a campaign's `start_at` comes,
//! done by the Feeder of the node that owns the tenant's partition
//! (`actors::feeder`), on the engine's clock.
//!
//! Guarantees:
//! - Fenced like the Feeder's claims: [`start_due`] runs in one transaction
//!   that first holds the fence rows of the node's partition tokens `FOR SHARE`
//!   ([`crate::store::fences::hold_tokens`]) and starts only campaigns of the
//!   partitions still at those tokens, so a node that lost a partition starts
//!   nothing of it.
//! - Conditional: the update only takes rows still `scheduled` with `start_at`
//!   reached, under their row lock, so it orders before or after each API
//!   lifecycle call (which locks the row `FOR UPDATE`): a campaign paused or
//!   cancelled first is left alone, and a repeated call starts nothing twice.
//! - Cheap: the partial index `campaigns_scheduled` holds scheduled campaigns
//!   only; the same transaction returns the earliest later `start_at` of the
//!   partitions, the Feeder's next planned wake-up (no polling).

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::store::fences::{Epoch, fenced_transaction, hold_tokens, partition_of};

/// What [`start_due`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScheduledStarts {
    /// The campaigns turned `running`, as `(tenant, campaign)`.
    pub started: Vec<(Uuid, Uuid)>,
    /// The earliest `start_at` after `now` among the partitions' campaigns
    /// still scheduled.
    pub next: Option<OffsetDateTime>,
}

/// Starts every `scheduled` campaign of the partitions of `tokens` (of `count`
/// partitions in all) whose `start_at` is at or before `now`, stamping
/// `started_at` = `now`; returns them and the next later `start_at`.
pub async fn start_due(
    pool: &Pool,
    count: u32,
    tokens: &[Epoch],
    now: OffsetDateTime,
) -> Result<ScheduledStarts, StoreError> {
    if tokens.is_empty() {
        return Ok(ScheduledStarts::default());
    }
    let mut client = pool.get().await?;
    let tx = fenced_transaction(&mut client).await?;
    let held = hold_tokens(&tx, tokens).await?;
    if held.is_empty() {
        return Ok(ScheduledStarts::default());
    }
    let partitions: Vec<i32> = held.iter().map(|t| partition_of(*t) as i32).collect();
    let start = tx
        .prepare_cached(
            "UPDATE campaigns
             SET status = 'running', started_at = coalesce(started_at, $3)
             WHERE status = 'scheduled' AND start_at <= $3
               AND penguin_partition(tenant_id, $1) = ANY($2)
             RETURNING tenant_id, id",
        )
        .await?;
    let rows = tx
        .query(&start, &[&(count as i32), &partitions, &now])
        .await?;
    let next = tx
        .prepare_cached(
            "SELECT min(start_at) FROM campaigns
             WHERE status = 'scheduled' AND start_at > $3
               AND penguin_partition(tenant_id, $1) = ANY($2)",
        )
        .await?;
    let next: Option<OffsetDateTime> = tx
        .query_one(&next, &[&(count as i32), &partitions, &now])
        .await?
        .get(0);
    tx.commit().await?;
    Ok(ScheduledStarts {
        started: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        next,
    })
}
