//! Opens and clicks, recorded as delivery events by the public tracking routes
//! (`/t/o/{token}`, `/t/c/{token}`) once a signed token names the job.
//!
//! Guarantees: the event carries the job's campaign and IP; a job that does not
//! exist (or another tenant's) records nothing. Events are deduplicated by
//! their key in `delivery_event_keys` (`V19__events_partitioned.sql`; the
//! partitioned event table cannot hold a unique index without `created_at`):
//! the key is inserted first and the event only when the key row was, in the
//! same statement. At most one `open` per job and one `click` per job and link
//! (key: the md5 of the link's target URL, which the event keeps in its
//! `reply` column), so a mail client that reloads images, a link scanner or a
//! bot replaying a link adds no rows — a public, unauthenticated route can
//! never grow the table beyond one row per link.
//!
//! The per-step rollup (`campaign_step_stats`, V16) counts each job once:
//! `opened` +1 in the same statement that inserts the job's one `open` event;
//! `clicked` +1 only with the job's first `click` event (any link). Clicks on
//! two links of one job can arrive at once, so a click runs in one transaction
//! under a per-job advisory lock: the second sees the first's event and adds
//! nothing to `clicked`.

use deadpool_postgres::Pool;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::StoreError;

/// Namespace of the per-job advisory lock of [`record_click`] (the first key of
/// `pg_advisory_xact_lock(int, int)`; no other lock uses it).
const FIRST_CLICK_LOCK: i32 = 0x636c_6b31; // "clk1"

/// Records the first open of `job` and, with it, +1 `opened` for the job's
/// step; `true` when this call recorded it. One statement.
pub async fn record_open(pool: &Pool, tenant: Uuid, job: Uuid) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "WITH job AS (
                 SELECT tenant_id, campaign_id, id, ip_id, step
                 FROM send_jobs WHERE tenant_id = $1 AND id = $2
             ), once AS (
                 INSERT INTO delivery_event_keys (tenant_id, job_id, kind)
                 SELECT tenant_id, id, 'open' FROM job
                 ON CONFLICT DO NOTHING
                 RETURNING job_id
             ), event AS (
                 INSERT INTO delivery_events (tenant_id, campaign_id, job_id, ip_id, kind)
                 SELECT tenant_id, campaign_id, id, ip_id, 'open' FROM job
                 WHERE EXISTS (SELECT 1 FROM once)
                 RETURNING job_id
             ), rollup AS (
                 INSERT INTO campaign_step_stats (tenant_id, campaign_id, step, opened)
                 SELECT tenant_id, campaign_id, step, 1 FROM job
                 WHERE EXISTS (SELECT 1 FROM event)
                 ON CONFLICT (tenant_id, campaign_id, step)
                 DO UPDATE SET opened = campaign_step_stats.opened + 1
             )
             SELECT count(*) FROM event",
        )
        .await?;
    Ok(recorded(&client.query_one(&stmt, &[&tenant, &job]).await?))
}

fn recorded(row: &Row) -> bool {
    row.get::<_, i64>(0) == 1
}

/// Records the first click of `job` on the link to `url` and, when it is the
/// job's first click on any link, +1 `clicked` for the job's step; `true` when
/// this call recorded the event.
pub async fn record_click(
    pool: &Pool,
    tenant: Uuid,
    job: Uuid,
    url: &str,
) -> Result<bool, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
        .await?;
    tx.execute(&lock, &[&FIRST_CLICK_LOCK, &job.to_string()])
        .await?;
    // Under the lock, this statement's snapshot holds every earlier click of
    // the job: `first` is true for exactly one click of it.
    let stmt = tx
        .prepare_cached(
            "WITH job AS (
                 SELECT tenant_id, campaign_id, id, ip_id, step,
                        NOT EXISTS (SELECT 1 FROM delivery_events
                                    WHERE tenant_id = $1 AND job_id = $2 AND kind = 'click')
                            AS first
                 FROM send_jobs WHERE tenant_id = $1 AND id = $2
             ), once AS (
                 INSERT INTO delivery_event_keys (tenant_id, job_id, kind, key)
                 SELECT tenant_id, id, 'click', md5($3) FROM job
                 ON CONFLICT DO NOTHING
                 RETURNING job_id
             ), event AS (
                 INSERT INTO delivery_events (tenant_id, campaign_id, job_id, ip_id, kind, reply)
                 SELECT tenant_id, campaign_id, id, ip_id, 'click', $3 FROM job
                 WHERE EXISTS (SELECT 1 FROM once)
                 RETURNING job_id
             ), rollup AS (
                 INSERT INTO campaign_step_stats (tenant_id, campaign_id, step, clicked)
                 SELECT tenant_id, campaign_id, step, 1 FROM job
                 WHERE first AND EXISTS (SELECT 1 FROM event)
                 ON CONFLICT (tenant_id, campaign_id, step)
                 DO UPDATE SET clicked = campaign_step_stats.clicked + 1
             )
             SELECT count(*) FROM event",
        )
        .await?;
    let row = tx.query_one(&stmt, &[&tenant, &job, &url]).await?;
    tx.commit().await?;
    Ok(recorded(&row))
}
