//! What a node's gauges read from Postgres (`penguin_backlog_jobs`, the per-IP
//! gauges): one indexed statement each, for the partitions (or IPs) the node
//! owns, run every `[queue] gauges_refresh_ms` by the Gauges actor — never on
//! the delivery path, never per tenant.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::partition::Partition;

/// Jobs waiting in Postgres (`pending` or `deferred`) of some partitions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// `run_at` at or before `now`: could be sent now (a paused campaign or IP,
    /// a full allowance or a closed window may still hold them).
    pub due: i64,
    /// `run_at` after `now` (scheduled steps, retries).
    pub waiting: i64,
}

/// The backlog of the tenants of `partitions` (of `count` in all). The
/// tenants are found first (the small `tenants` table), then their waiting
/// jobs are counted on the partial index `send_jobs_waiting`, so the cost
/// follows the backlog, not the jobs ever made. No partition: no query.
pub async fn count(
    pool: &Pool,
    count: u32,
    partitions: &[Partition],
    now: OffsetDateTime,
) -> Result<Backlog, StoreError> {
    if partitions.is_empty() {
        return Ok(Backlog::default());
    }
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT count(*) FILTER (WHERE j.run_at <= $3)::int8,
                    count(*) FILTER (WHERE j.run_at > $3)::int8
             FROM send_jobs j
             WHERE j.tenant_id IN (SELECT t.id FROM tenants t
                                   WHERE penguin_partition(t.id, $1) = ANY($2))
               AND j.status IN ('pending', 'deferred')",
        )
        .await?;
    let partitions: Vec<i32> = partitions.iter().map(|p| *p as i32).collect();
    let row = client
        .query_one(&stmt, &[&(count as i32), &partitions, &now])
        .await?;
    Ok(Backlog {
        due: row.get(0),
        waiting: row.get(1),
    })
}

/// Sends reserved on the IP-local day of `now` (`ip_hourly_usage`) by each of
/// `ips` (tenant, ip). IPs that reserved nothing today are absent.
pub async fn sent_today(
    pool: &Pool,
    ips: &[(Uuid, Uuid)],
    now: OffsetDateTime,
) -> Result<HashMap<Uuid, i64>, StoreError> {
    if ips.is_empty() {
        return Ok(HashMap::new());
    }
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT u.ip_id, sum(u.reserved)::int8
             FROM unnest($1::uuid[], $2::uuid[]) AS o(tenant_id, ip_id)
             JOIN smtp_ips i ON i.tenant_id = o.tenant_id AND i.id = o.ip_id
             JOIN ip_hourly_usage u ON u.tenant_id = i.tenant_id AND u.ip_id = i.id
                  AND u.day = ($3::timestamptz AT TIME ZONE i.timezone)::date
             GROUP BY u.ip_id",
        )
        .await?;
    let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = ips.iter().copied().unzip();
    let rows = client.query(&stmt, &[&tenants, &ids, &now]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
