//! Reroute: a campaign's IP pool changed (`PATCH /v1/campaigns/{id}`), so jobs
//! that wait in Postgres for the old pool's allowance to reopen are due again
//! at once and go out on the new pool. Runs in the API's transaction under the
//! campaign row lock. Only `pending` jobs waiting for a later `run_at` move:
//! `deferred` ones wait for their retry time whatever the pool.

use deadpool_postgres::Transaction;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// Makes the campaign's `pending` jobs due at `now`; returns how many moved.
pub async fn reroute_waiting(
    tx: &Transaction<'_>,
    tenant: Uuid,
    campaign: Uuid,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE send_jobs SET run_at = $3, updated_at = $3
             WHERE tenant_id = $1 AND campaign_id = $2 AND status = 'pending' AND run_at > $3",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&tenant, &campaign, &now]).await?)
}
