//! Reads of the send-job state machine (DESIGN.md §2) and campaign completion:
//! the Reaper's completion check and the API's counts per state (the Feeder's
//! due work is found per partition, [`crate::store::due`]). Every write of a job's status is a transition of the job ledger
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
