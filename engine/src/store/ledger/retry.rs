//! Retry: `failed → pending` for a campaign's failed jobs, asked for by the API
//! (`POST /v1/campaigns/{id}/retry`). Runs in the API's transaction, after it
//! locked the campaign row `FOR UPDATE` ([`crate::store::campaigns::retry_failed`]):
//! every claim holds that row `FOR SHARE`, so the retry orders strictly before
//! or after each claim and needs no epoch. A `failed` job is final for the
//! engine (no node writes it again), so nothing races the change.
//!
//! A requeued job is due at once (`run_at` = now), keeps its `attempts` (every
//! SMTP attempt ever made) and gets a fresh budget from the retry policy
//! (`[delivery.retry]`): `retry_base` = its attempts so far, which the claim
//! subtracts before `max_attempts` is applied, and `first_attempt_at` cleared,
//! so `max_age_secs` counts from its next attempt. A job whose address the
//! tenant has suppressed, or whose lead's sequence stopped, stays `failed`.

use deadpool_postgres::Transaction;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// Requeues the campaign's `failed` jobs whose address is not suppressed;
/// returns how many.
pub async fn requeue_failed(
    tx: &Transaction<'_>,
    tenant: Uuid,
    campaign: Uuid,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let requeue = tx
        .prepare_cached(
            "UPDATE send_jobs j
             SET status = 'pending', run_at = $3, retry_base = j.attempts,
                 first_attempt_at = NULL, updated_at = $3
             FROM leads l
             WHERE j.tenant_id = $1 AND j.campaign_id = $2 AND j.status = 'failed'
               AND l.tenant_id = j.tenant_id AND l.id = j.lead_id AND l.stopped_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM penguin_suppression(l.tenant_id, l.email, $3))",
        )
        .await?;
    Ok(tx.execute(&requeue, &[&tenant, &campaign, &now]).await?)
}
