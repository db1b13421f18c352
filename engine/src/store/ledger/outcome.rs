//! Outcome: the end of one delivery attempt, `sending → sent|deferred|bounced|
//! failed|suppressed`, or `sending → pending` for an attempt abandoned before
//! SMTP started — `cancelled` instead of those two when the campaign was
//! cancelled meanwhile (see the ledger's module doc). The StatusWriter batches them; [`record_outcomes`] writes a
//! batch in one `UPDATE … FROM unnest()`. Each outcome carries the epoch and
//! the claim id its job was claimed under and changes nothing once either
//! moved on (no fence row lock needed: the job row itself is the fence).

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::domain::JobStatus;
use crate::store::fences::Epoch;
use crate::store::ledger::ClaimId;

/// The end of one delivery attempt (or its abandonment) for a `sending` job.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub tenant_id: Uuid,
    pub job_id: Uuid,
    /// `Sent`, `Deferred`, `Bounced`, `Failed`, `Suppressed`, or `Pending` for an
    /// attempt abandoned before SMTP started (the attempt is not counted).
    pub to: JobStatus,
    /// When a deferred job may be tried again.
    pub run_at: Option<OffsetDateTime>,
    pub message_id: Option<String>,
    pub reply: Option<String>,
    /// The epoch the job was claimed under: the write applies only while the job
    /// is still `sending` under that claim.
    pub fence: Epoch,
    /// The id of the claim this attempt ran under: a later claim of the same
    /// job (same epoch or not) makes this write change nothing.
    pub claim: ClaimId,
}

/// What [`record_outcomes`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Outcomes written.
    pub written: usize,
    /// The `(tenant_id, campaign_id)` of every job that changed (for completion checks).
    pub campaigns: Vec<(Uuid, Uuid)>,
}

/// Writes a batch of outcomes from `sending` in one statement. An outcome
/// whose job is no longer `sending` under the epoch and claim it carries (a
/// takeover or the Reaper returned it, a later claim took or finished it) is
/// refused: not written.
pub async fn record_outcomes(
    pool: &Pool,
    batch: &[Outcome],
    now: OffsetDateTime,
) -> Result<Applied, StoreError> {
    if batch.is_empty() {
        return Ok(Applied::default());
    }
    debug_assert!(
        batch
            .iter()
            .all(|t| t.to != JobStatus::Queued && t.to != JobStatus::Sending)
    );
    let tenants: Vec<Uuid> = batch.iter().map(|t| t.tenant_id).collect();
    let ids: Vec<Uuid> = batch.iter().map(|t| t.job_id).collect();
    let statuses: Vec<&str> = batch.iter().map(|t| t.to.as_str()).collect();
    let run_ats: Vec<Option<OffsetDateTime>> = batch.iter().map(|t| t.run_at).collect();
    let message_ids: Vec<Option<&str>> = batch.iter().map(|t| t.message_id.as_deref()).collect();
    let replies: Vec<Option<&str>> = batch.iter().map(|t| t.reply.as_deref()).collect();
    let fences: Vec<Epoch> = batch.iter().map(|t| t.fence).collect();
    let claims: Vec<ClaimId> = batch.iter().map(|t| t.claim).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "UPDATE send_jobs j
             SET status = CASE WHEN u.status IN ('pending', 'deferred')
                                    AND EXISTS (SELECT 1 FROM campaigns c
                                                WHERE c.tenant_id = j.tenant_id AND c.id = j.campaign_id
                                                  AND c.status = 'cancelled')
                               THEN 'cancelled' ELSE u.status END,
                 run_at = coalesce(u.run_at, j.run_at),
                 message_id = coalesce(u.message_id, j.message_id),
                 last_reply = coalesce(u.reply, j.last_reply),
                 attempts = CASE WHEN u.status = 'pending' THEN j.attempts - 1 ELSE j.attempts END,
                 updated_at = $7
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
                         $8::int8[], $9::uuid[])
                  AS u(tenant_id, id, status, run_at, message_id, reply, fence, claim)
             WHERE j.tenant_id = u.tenant_id AND j.id = u.id AND (j.status = 'sending') IS TRUE
               AND j.fence = u.fence AND j.claim = u.claim
             RETURNING j.tenant_id, j.campaign_id",
        )
        .await?;
    let rows = client
        .query(
            &stmt,
            &[
                &tenants,
                &ids,
                &statuses,
                &run_ats,
                &message_ids,
                &replies,
                &now,
                &fences,
                &claims,
            ],
        )
        .await?;
    let mut campaigns: Vec<(Uuid, Uuid)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    campaigns.sort_unstable();
    campaigns.dedup();
    Ok(Applied {
        written: rows.len(),
        campaigns,
    })
}
