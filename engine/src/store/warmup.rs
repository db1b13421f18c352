//! Warm-up bookkeeping (`warmup_history`, `smtp_ips.warmup_day/rate_factor`) and
//! the automatic end of health pauses. Called by the Warmup actor only.
//!
//! Guarantee: a day is judged at most once per IP, whatever the number of nodes or
//! restarts. [`apply`] inserts the day's `warmup_history` row (its primary key is
//! the IP and the day) and moves the IP in the same transaction, only if that row
//! was new and the IP still stands where the verdict saw it.

use deadpool_postgres::Pool;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::db::StoreError;
use crate::health::Rates;
use crate::warmup::{DayInputs, Decision};

/// The first IP-local day of `ip` not judged yet: the day after its latest
/// `warmup_history` row, or its creation day when it has none.
pub async fn next_day(pool: &Pool, tenant: Uuid, ip: Uuid) -> Result<Date, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT coalesce(
                 (SELECT max(h.day) + 1 FROM warmup_history h
                   WHERE h.tenant_id = i.tenant_id AND h.ip_id = i.id),
                 (i.created_at AT TIME ZONE i.timezone)::date)
             FROM smtp_ips i WHERE i.tenant_id = $1 AND i.id = $2",
        )
        .await?;
    let row = client
        .query_opt(&stmt, &[&tenant, &ip])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(row.get(0))
}

/// What the verdict on `day` of `ip` needs, read as the IP stands now.
pub async fn day_inputs(
    pool: &Pool,
    tenant: Uuid,
    ip: Uuid,
    day: Date,
) -> Result<DayInputs, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(include_str!("warmup_inputs.sql"))
        .await?;
    let row = client
        .query_opt(&stmt, &[&tenant, &ip, &day])
        .await?
        .ok_or(StoreError::NotFound)?;
    let count = |index: usize| row.get::<_, i64>(index).max(0) as u64;
    Ok(DayInputs {
        day,
        warmup_day: row.get(0),
        rate_factor: row.get(1),
        volumes: row.get(2),
        created_day: row.get(3),
        reserved: row.get(4),
        outcome: Rates {
            sent: count(5),
            bounced: count(6),
            deferred: count(7),
            complaints: count(8),
        },
        last_send_day: row.get(9),
    })
}

/// What became of a verdict handed to [`apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Recorded, and the IP moved to the verdict's day and factor.
    Applied,
    /// The day had been judged already (by this node before a restart, or another
    /// node); nothing changed.
    AlreadyJudged,
    /// The IP's day or factor changed since its inputs were read (or it is gone):
    /// nothing changed; read the inputs again.
    Stale,
}

/// Records the verdict on `day` of `ip` and moves the IP, in one transaction:
/// the history row is inserted `ON CONFLICT DO NOTHING`, and only when it was new
/// is the IP updated, conditionally on still being at the verdict's starting day
/// and factor. `decided_at` is the engine clock's time.
pub async fn apply(
    pool: &Pool,
    tenant: Uuid,
    ip: Uuid,
    day: Date,
    decision: &Decision,
    decided_at: OffsetDateTime,
) -> Result<Applied, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO warmup_history
                 (tenant_id, ip_id, day, decision, from_day, to_day, sent, allowance,
                  reason, decided_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let allowance = decision.allowance.map(i64::from);
    let inserted = tx
        .execute(
            &insert,
            &[
                &tenant,
                &ip,
                &day,
                &decision.verdict.as_str(),
                &decision.from_day,
                &decision.to_day,
                &decision.sent,
                &allowance,
                &decision.reason,
                &decided_at,
            ],
        )
        .await?;
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(Applied::AlreadyJudged);
    }
    let update = tx
        .prepare_cached(
            "UPDATE smtp_ips SET warmup_day = $5, rate_factor = $6
             WHERE tenant_id = $1 AND id = $2 AND warmup_day = $3 AND rate_factor = $4",
        )
        .await?;
    let moved = tx
        .execute(
            &update,
            &[
                &tenant,
                &ip,
                &decision.from_day,
                &decision.from_factor,
                &decision.to_day,
                &decision.to_factor,
            ],
        )
        .await?;
    if moved == 0 {
        tx.rollback().await?;
        return Ok(Applied::Stale);
    }
    tx.commit().await?;
    Ok(Applied::Applied)
}

/// Ends the automatic pause of `ip` that was seen ending at `paused_until`, if
/// that time has come (`now`): the IP becomes active again, its reason and end
/// cleared. Conditional on the pause being the one seen, so an operator's newer
/// pause or resume is never overridden. Returns whether it resumed the IP.
pub async fn resume_if_due(
    pool: &Pool,
    tenant: Uuid,
    ip: Uuid,
    paused_until: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "UPDATE smtp_ips SET status = 'active', status_reason = NULL, paused_until = NULL
             WHERE tenant_id = $1 AND id = $2 AND status = 'paused'
               AND paused_until = $3 AND paused_until <= $4",
        )
        .await?;
    let resumed = client
        .execute(&stmt, &[&tenant, &ip, &paused_until, &now])
        .await?;
    Ok(resumed == 1)
}
