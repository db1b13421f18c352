//! Retention (`[retention]`, issue 23): one round deletes what is past its
//! time. Called by the Retention actor of every node every `interval_ms`;
//! [`run_round`] takes a cluster-wide advisory lock first, so one node at a
//! time does the work and the others skip their turn.
//!
//! A round, in order:
//! 1. event partitions ([`super::partitions`]): the month of `now` through
//!    `partitions_ahead` ahead are created (rows of those months moved out of
//!    the DEFAULT partition), months wholly older than `now - events_days` are
//!    dropped, and rows of the default partition that old are deleted;
//! 2. jobs of finished campaigns: a campaign `completed` (since
//!    `completed_at`) or `cancelled` (since `cancelled_at`) more than
//!    `jobs_days_after_campaign_end` days before `now` loses its jobs in a
//!    terminal state, with their once-only event keys (`delivery_event_keys`);
//! 3. leads of finished campaigns past `leads_days_after_campaign_end` that no
//!    job references any more (a lead therefore never goes before its jobs).
//!
//! Guarantees:
//! - Bounded, short writes: each statement deletes at most `batch_size` rows
//!   and commits on its own; rows another transaction holds are skipped
//!   (`SKIP LOCKED`) and taken by a later round. A batch holds a share lock on
//!   its campaign's row, which a lead import or a retry (`FOR UPDATE`) waits
//!   for, so a campaign re-opened by either is re-checked as not finished and
//!   keeps its rows. Nothing on the sending path waits for a round: running
//!   campaigns are never touched.
//! - Never touched: rollups (`campaign_daily_stats`, `ip_daily_stats`,
//!   `campaign_step_stats`, `campaign_minute_stats`), suppressions (they lapse
//!   only by their own `expires_at`), campaigns themselves, events (they go by
//!   month with their partition only).
//! - "Now" is the engine's clock, passed in, so tests move time.

use deadpool_postgres::Pool;
use penguin_config::RetentionConfig;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::db::StoreError;
use crate::store::partitions::{self, Month};

/// Arbitrary constant naming the retention lock ("retent" in ASCII).
pub const RETENTION_LOCK: i64 = 0x7265_7465_6e74;

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Partitions created, by name.
    pub partitions_created: Vec<String>,
    /// Partitions dropped, by name.
    pub partitions_dropped: Vec<String>,
    /// Rows moved out of the default partition into new ones.
    pub events_moved: u64,
    /// Rows deleted from the default partition (past `events_days`).
    pub events_deleted: u64,
    pub jobs_deleted: u64,
    pub event_keys_deleted: u64,
    pub leads_deleted: u64,
}

/// Runs one round at `now` if this caller gets the retention lock; `None`
/// when another node holds it (this node skips its turn).
pub async fn run_round(
    pool: &Pool,
    config: &RetentionConfig,
    now: OffsetDateTime,
) -> Result<Option<Round>, StoreError> {
    // The lock lives as long as this transaction on its own connection; it
    // takes no snapshot between statements, so it holds back no vacuum. A
    // dropped connection releases it.
    let mut lock_client = pool.get().await?;
    let lock = lock_client.transaction().await?;
    let got: bool = lock
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RETENTION_LOCK])
        .await?
        .get(0);
    if !got {
        return Ok(None);
    }
    let mut round = Round::default();
    let result = work(pool, config, now, &mut round).await;
    lock.commit().await?;
    result.map(|()| Some(round))
}

async fn work(
    pool: &Pool,
    config: &RetentionConfig,
    now: OffsetDateTime,
    round: &mut Round,
) -> Result<(), StoreError> {
    let batch = i64::from(config.batch_size);
    let existing = partitions::existing(&pool.get().await?).await?;
    let plan = partitions::plan(now, &existing, config.events_days, config.partitions_ahead);
    for month in &plan.create {
        round.events_moved += partitions::create_month(pool, *month).await?;
        round.partitions_created.push(month.table());
    }
    for month in &plan.drop {
        partitions::drop_month(pool, *month).await?;
        round.partitions_dropped.push(month.table());
    }
    round.events_deleted = repeat(batch, || {
        partitions::delete_default_before(pool, plan.keep_from, batch)
    })
    .await?;

    let jobs_before = now - Duration::days(i64::from(config.jobs_days_after_campaign_end));
    for (tenant, campaign) in finished(pool, jobs_before, Holding::Jobs).await? {
        loop {
            let (jobs, keys) = delete_jobs(pool, tenant, campaign, jobs_before, batch).await?;
            round.jobs_deleted += jobs;
            round.event_keys_deleted += keys;
            if jobs < batch as u64 {
                break;
            }
        }
    }
    let leads_before = now - Duration::days(i64::from(config.leads_days_after_campaign_end));
    for (tenant, campaign) in finished(pool, leads_before, Holding::Leads).await? {
        round.leads_deleted += repeat(batch, || {
            delete_leads(pool, tenant, campaign, leads_before, batch)
        })
        .await?;
    }
    Ok(())
}

/// Runs `step` until it deletes fewer than `batch` rows; the total.
async fn repeat<F, Fut>(batch: i64, mut step: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = step().await?;
        total += n;
        if n < batch as u64 {
            return Ok(total);
        }
    }
}

/// Which rows a finished campaign still holds.
#[derive(Clone, Copy)]
enum Holding {
    Jobs,
    Leads,
}

/// The SQL condition "this campaign `c` finished before `$n`".
macro_rules! finished_before {
    ($n:literal) => {
        concat!(
            "((c.status = 'completed' AND c.completed_at < $",
            $n,
            ") OR (c.status = 'cancelled' AND c.cancelled_at < $",
            $n,
            "))"
        )
    };
}

/// Campaigns that finished before `before` and still hold jobs (or leads).
/// Campaign rows are few (one per campaign ever run) and stay: this is one
/// scan of them with a probe per finished campaign.
async fn finished(
    pool: &Pool,
    before: OffsetDateTime,
    holding: Holding,
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    let client = pool.get().await?;
    let sql = match holding {
        Holding::Jobs => concat!(
            "SELECT c.tenant_id, c.id FROM campaigns c WHERE ",
            finished_before!("1"),
            " AND EXISTS (SELECT 1 FROM send_jobs j
                          WHERE j.tenant_id = c.tenant_id AND j.campaign_id = c.id)
             ORDER BY 1, 2"
        ),
        Holding::Leads => concat!(
            "SELECT c.tenant_id, c.id FROM campaigns c WHERE ",
            finished_before!("1"),
            " AND EXISTS (SELECT 1 FROM leads l
                          WHERE l.tenant_id = c.tenant_id AND l.campaign_id = c.id)
             ORDER BY 1, 2"
        ),
    };
    let stmt = client.prepare_cached(sql).await?;
    Ok(client
        .query(&stmt, &[&before])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// One batch of a finished campaign's terminal jobs, with their event keys;
/// `(jobs, keys)` deleted. Nothing when the campaign is no longer finished
/// before `before` (re-opened meanwhile).
async fn delete_jobs(
    pool: &Pool,
    tenant: Uuid,
    campaign: Uuid,
    before: OffsetDateTime,
    batch: i64,
) -> Result<(u64, u64), StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(concat!(
            "WITH c AS (
                 SELECT c.tenant_id, c.id FROM campaigns c
                 WHERE c.tenant_id = $1 AND c.id = $2 AND ",
            finished_before!("3"),
            " FOR SHARE
             ), doomed AS (
                 SELECT j.tenant_id, j.id FROM send_jobs j
                 WHERE (j.tenant_id, j.campaign_id) IN (SELECT tenant_id, id FROM c)
                   AND j.status IN ('sent', 'bounced', 'failed', 'suppressed', 'cancelled')
                 LIMIT $4
                 FOR UPDATE OF j SKIP LOCKED
             ), keys AS (
                 DELETE FROM delivery_event_keys k USING doomed d
                 WHERE k.tenant_id = d.tenant_id AND k.job_id = d.id
                 RETURNING 1
             ), jobs AS (
                 DELETE FROM send_jobs j USING doomed d
                 WHERE j.tenant_id = d.tenant_id AND j.id = d.id
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM keys)"
        ))
        .await?;
    let row = client
        .query_one(&stmt, &[&tenant, &campaign, &before, &batch])
        .await?;
    Ok((
        row.get::<_, i64>(0).unsigned_abs(),
        row.get::<_, i64>(1).unsigned_abs(),
    ))
}

/// One batch of a finished campaign's leads that no job references; how many.
async fn delete_leads(
    pool: &Pool,
    tenant: Uuid,
    campaign: Uuid,
    before: OffsetDateTime,
    batch: i64,
) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(concat!(
            "WITH c AS (
                 SELECT c.tenant_id, c.id FROM campaigns c
                 WHERE c.tenant_id = $1 AND c.id = $2 AND ",
            finished_before!("3"),
            " FOR SHARE
             ), doomed AS (
                 SELECT l.tenant_id, l.id FROM leads l
                 WHERE (l.tenant_id, l.campaign_id) IN (SELECT tenant_id, id FROM c)
                   AND NOT EXISTS (SELECT 1 FROM send_jobs j
                                   WHERE j.tenant_id = l.tenant_id
                                     AND j.campaign_id = l.campaign_id AND j.lead_id = l.id)
                 LIMIT $4
                 FOR UPDATE OF l SKIP LOCKED
             )
             DELETE FROM leads l USING doomed d
             WHERE l.tenant_id = d.tenant_id AND l.id = d.id"
        ))
        .await?;
    Ok(client
        .execute(&stmt, &[&tenant, &campaign, &before, &batch])
        .await?)
}

/// The month partition names of `delivery_events` (for reports and tests).
pub async fn partition_names(pool: &Pool) -> Result<Vec<String>, StoreError> {
    let client = pool.get().await?;
    Ok(partitions::existing(&client)
        .await?
        .into_iter()
        .map(Month::table)
        .collect())
}
