//! Stop: `pending|deferred|queued → cancelled` for one lead whose sequence
//! stopped (a reply, `POST /v1/replies`). Runs in the caller's transaction
//! after it set the lead's `stopped_at` (row locked `FOR UPDATE`): the write
//! that creates a follow-up reads that row `FOR SHARE`
//! ([`record_outcomes`](super::record_outcomes)), so a follow-up is either
//! created before the stop (and cancelled here) or never. Jobs already
//! `sending` finish their attempt. A suppression stops sequences the same way
//! inside Postgres (the `suppressions_stop_sequences` trigger of
//! `V16__sequences.sql`), for every path that adds one.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::db::StoreError;

/// Cancels the lead's jobs of `campaign` not yet handed to SMTP, every step,
/// with `last_reply = "sequence stopped: <reason>"`; returns how many.
pub async fn stop_lead_jobs(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
    lead: Uuid,
    reason: &str,
) -> Result<u64, StoreError> {
    let stmt = client
        .prepare_cached(
            "UPDATE send_jobs SET status = 'cancelled', updated_at = now(),
                 last_reply = 'sequence stopped: ' || $4
             WHERE tenant_id = $1 AND campaign_id = $2 AND lead_id = $3
               AND status IN ('pending', 'deferred', 'queued')",
        )
        .await?;
    Ok(client
        .execute(&stmt, &[&tenant, &campaign, &lead, &reason])
        .await?)
}
