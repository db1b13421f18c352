//! Reads of the send-job state machine (DESIGN.md §2) and campaign completion:
//! the Feeder's next due time, the Reaper's running campaigns, the API's counts
//! per state. Every write of a job's status is a transition of the job ledger
//! ([`crate::store::ledger`]).

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::domain::JobStatus;

/// Marks `running` campaigns `completed` when none of their jobs can change any more.
/// Returns the campaigns that completed.
///
/// The campaign rows are locked first (`FOR UPDATE`, which waits for a lead import
/// holding them `FOR SHARE`); the emptiness check then runs as a separate statement,
/// so its snapshot includes every job such an import created.
pub async fn complete_finished_campaigns(
    pool: &Pool,
    campaigns: &[(Uuid, Uuid)],
    now: OffsetDateTime,
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    if campaigns.is_empty() {
        return Ok(Vec::new());
    }
    let tenants: Vec<Uuid> = campaigns.iter().map(|c| c.0).collect();
    let ids: Vec<Uuid> = campaigns.iter().map(|c| c.1).collect();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let lock = tx
        .prepare_cached(
            "SELECT c.tenant_id, c.id FROM campaigns c
             JOIN unnest($1::uuid[], $2::uuid[]) AS u(tenant_id, id)
               ON c.tenant_id = u.tenant_id AND c.id = u.id
             WHERE c.status = 'running'
             ORDER BY c.tenant_id, c.id
             FOR UPDATE OF c",
        )
        .await?;
    let locked = tx.query(&lock, &[&tenants, &ids]).await?;
    if locked.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let tenants: Vec<Uuid> = locked.iter().map(|r| r.get(0)).collect();
    let ids: Vec<Uuid> = locked.iter().map(|r| r.get(1)).collect();
    let complete = tx
        .prepare_cached(
            "UPDATE campaigns c SET status = 'completed', completed_at = $3
             FROM unnest($1::uuid[], $2::uuid[]) AS u(tenant_id, id)
             WHERE c.tenant_id = u.tenant_id AND c.id = u.id AND c.status = 'running'
               AND NOT EXISTS (
                   SELECT 1 FROM send_jobs j
                   WHERE j.tenant_id = c.tenant_id AND j.campaign_id = c.id
                     AND j.status IN ('pending', 'queued', 'sending', 'deferred'))
             RETURNING c.tenant_id, c.id",
        )
        .await?;
    let rows = tx.query(&complete, &[&tenants, &ids, &now]).await?;
    tx.commit().await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The running campaigns of some tenants (for periodic completion checks).
pub async fn running_campaigns(
    pool: &Pool,
    tenants: &[Uuid],
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT tenant_id, id FROM campaigns WHERE tenant_id = ANY($1) AND status = 'running'",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenants]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The earliest `run_at` of a job waiting in the backlog of these tenants (only
/// running campaigns with an active IP, as [`claim_due`] takes), for the feeder
/// to sleep until.
pub async fn next_due(pool: &Pool, tenants: &[Uuid]) -> Result<Option<OffsetDateTime>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT min(j.run_at) FROM send_jobs j
             JOIN campaigns c ON c.tenant_id = j.tenant_id AND c.id = j.campaign_id
             WHERE j.tenant_id = ANY($1) AND j.status IN ('pending', 'deferred')
               AND c.status = 'running'
               AND EXISTS (SELECT 1 FROM smtp_ips i
                           WHERE i.tenant_id = c.tenant_id AND i.id = ANY(c.ip_ids)
                             AND i.status = 'active')",
        )
        .await?;
    Ok(client.query_one(&stmt, &[&tenants]).await?.get(0))
}

/// Jobs of a campaign per state (states without jobs are absent).
pub async fn counts_by_status(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
) -> Result<Vec<(JobStatus, i64)>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT status, count(*) FROM send_jobs
             WHERE tenant_id = $1 AND campaign_id = $2 GROUP BY status",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenant, &campaign]).await?;
    rows.iter()
        .map(|row| {
            let status: &str = row.get(0);
            let status = status
                .parse()
                .map_err(|_| StoreError::Invalid(format!("job status {status}")))?;
            Ok((status, row.get(1)))
        })
        .collect()
}
