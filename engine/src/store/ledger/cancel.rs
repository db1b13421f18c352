//! Cancel: `pending|deferred|queued → cancelled` for a campaign the API cancels.
//! Runs in the API's transaction, after it locked the campaign row `FOR UPDATE`
//! ([`crate::store::campaigns::cancel_campaign`]): every claim holds that row
//! `FOR SHARE`, so the cancel orders strictly before or after each claim and
//! needs no epoch. Jobs already `sending` finish their attempt.

use deadpool_postgres::Transaction;
use uuid::Uuid;

use crate::db::StoreError;

/// Cancels every job of the campaign not yet handed to SMTP; returns how many.
pub async fn cancel_unsent(
    tx: &Transaction<'_>,
    tenant: Uuid,
    campaign: Uuid,
) -> Result<u64, StoreError> {
    let cancel_jobs = tx
        .prepare_cached(
            "UPDATE send_jobs SET status = 'cancelled', updated_at = now()
             WHERE tenant_id = $1 AND campaign_id = $2
               AND status IN ('pending', 'deferred', 'queued')",
        )
        .await?;
    Ok(tx.execute(&cancel_jobs, &[&tenant, &campaign]).await?)
}
