//! Finding work per partition, not per tenant (DESIGN.md §4): which tenants of a
//! node's partitions have jobs due, and which hold `queued` jobs (their Redis
//! copies may be gone). One indexed query for all of a node's partitions; a
//! tenant with nothing to send costs nothing here.

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::partition::Partition;

/// What [`scan`] found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DueScan {
    /// Tenants with a job due now in a running campaign with an active IP.
    pub due: Vec<Uuid>,
    /// The earliest later due time among the other such campaigns (a job's
    /// `run_at`, a send window's opening, a capped day's end), with its tenant.
    pub next: Option<(OffsetDateTime, Uuid)>,
}

/// The tenants of `partitions` (of `count` in all), leaving out `skip` (already
/// worked), with jobs due by `now` — only running campaigns with an active IP,
/// as the Feeder's claim takes them — and the earliest later due time.
///
/// Per running campaign (`campaigns_running`), the first waiting job by `run_at`
/// (`send_jobs_waiting`): the cost follows the running campaigns of the
/// partitions, not their tenants or jobs. A campaign is due at that job's
/// `run_at` (or `now`) moved to when the campaign may send
/// (`penguin_campaign_ready`, V13): outside its send window, its next
/// opening; with its daily cap used, the next local day's first opening (one
/// primary-key lookup of `campaign_day_usage`, capped campaigns only). So the
/// Feeder sleeps until a window opens or a day turns, without polling.
pub async fn scan(
    pool: &Pool,
    count: u32,
    partitions: &[Partition],
    skip: &[Uuid],
    now: OffsetDateTime,
) -> Result<DueScan, StoreError> {
    if partitions.is_empty() {
        return Ok(DueScan::default());
    }
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT c.tenant_id,
                    min(penguin_campaign_ready(c.tenant_id, c.id, c.send_window, c.daily_cap,
                                               greatest(first.run_at, $4)))
             FROM campaigns c
             CROSS JOIN LATERAL (
                 SELECT j.run_at FROM send_jobs j
                 WHERE j.tenant_id = c.tenant_id AND j.campaign_id = c.id
                   AND j.status IN ('pending', 'deferred')
                 ORDER BY j.run_at LIMIT 1) AS first
             WHERE c.status = 'running'
               AND penguin_partition(c.tenant_id, $1) = ANY($2)
               AND NOT (c.tenant_id = ANY($3))
               AND EXISTS (SELECT 1 FROM smtp_ips i
                           WHERE i.tenant_id = c.tenant_id AND i.id = ANY(c.ip_ids)
                             AND i.status = 'active')
             GROUP BY c.tenant_id",
        )
        .await?;
    let numbers: Vec<i32> = partitions.iter().map(|p| *p as i32).collect();
    let rows = client
        .query(&stmt, &[&(count as i32), &numbers, &skip, &now])
        .await?;
    let mut found = DueScan::default();
    for row in rows {
        let tenant: Uuid = row.get(0);
        let Some(at): Option<OffsetDateTime> = row.get(1) else {
            continue;
        };
        if at <= now {
            found.due.push(tenant);
        } else if found.next.is_none_or(|(next, _)| at < next) {
            found.next = Some((at, tenant));
        }
    }
    found.due.sort_unstable();
    Ok(found)
}

/// The tenants of `partitions` (of `count` in all) with `queued` jobs: at a
/// takeover their Redis copies may be stale or gone.
pub async fn tenants_with_queued(
    pool: &Pool,
    count: u32,
    partitions: &[Partition],
) -> Result<Vec<Uuid>, StoreError> {
    tenants_queued(pool, count, partitions, None).await
}

/// The tenants of `partitions` (of `count` in all) with a job `queued` since
/// before `before`: for the Reaper's safety net, jobs that should have been
/// claimed or re-queued long ago.
pub async fn tenants_queued_before(
    pool: &Pool,
    count: u32,
    partitions: &[Partition],
    before: OffsetDateTime,
) -> Result<Vec<Uuid>, StoreError> {
    tenants_queued(pool, count, partitions, Some(before)).await
}

/// The tenants of `partitions` with a `queued` job (updated before `before`).
async fn tenants_queued(
    pool: &Pool,
    count: u32,
    partitions: &[Partition],
    before: Option<OffsetDateTime>,
) -> Result<Vec<Uuid>, StoreError> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let client = pool.get().await?;
    // `send_jobs_in_flight` holds only `queued` and `sending` jobs: the window.
    let stmt = client
        .prepare_cached(
            "SELECT DISTINCT tenant_id FROM send_jobs
             WHERE status = 'queued' AND penguin_partition(tenant_id, $1) = ANY($2)
               AND ($3::timestamptz IS NULL OR updated_at < $3)",
        )
        .await?;
    let numbers: Vec<i32> = partitions.iter().map(|p| *p as i32).collect();
    let rows = client
        .query(&stmt, &[&(count as i32), &numbers, &before])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The running campaigns of the tenants of `partitions` (of `count` in all),
/// for the Reaper's completion check (`campaigns_running`).
pub async fn running_campaigns(
    pool: &Pool,
    count: u32,
    partitions: &[Partition],
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT tenant_id, id FROM campaigns
             WHERE status = 'running' AND penguin_partition(tenant_id, $1) = ANY($2)",
        )
        .await?;
    let numbers: Vec<i32> = partitions.iter().map(|p| *p as i32).collect();
    let rows = client.query(&stmt, &[&(count as i32), &numbers]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
