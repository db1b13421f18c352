//! Outcome: the end of one delivery attempt, `sending → sent|deferred|bounced|
//! failed|suppressed`, or `sending → pending` for an attempt abandoned before
//! SMTP started — `cancelled` instead of those two when the campaign was
//! cancelled or the lead's sequence stopped meanwhile (see the ledger's module
//! doc). The StatusWriter batches them; [`record_outcomes`] writes a
//! batch in one `UPDATE … FROM unnest()`. Each outcome carries the epoch and
//! the claim id its job was claimed under and changes nothing once either
//! moved on (no fence row lock needed: the job row itself is the fence).
//! A step of a sequence that was `sent` creates its lead's next step here
//! (see [`record_outcomes`]).

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
    /// When the first follow-up step this batch created is due (`None`: none created).
    pub follow_up_due: Option<OffsetDateTime>,
}

/// Writes a batch of outcomes from `sending` in one statement. An outcome
/// whose job is no longer `sending` under the epoch and claim it carries (a
/// takeover or the Reaper returned it, a later claim took or finished it) is
/// refused: not written.
///
/// A `sent` outcome of a sequence step that has a next step creates that
/// step's job in the same statement (so a crash can neither lose nor double
/// it; the unique key `(tenant_id, campaign_id, lead_id, step)` makes a
/// repeat change nothing): `pending`, due `delay_secs` after `now`, with the
/// lead's thread of Message-IDs extended by this one. Not when the lead is
/// stopped or suppressed or the campaign cancelled; the lead row is read `FOR
/// SHARE`, so a stop (which updates it, [`super::stop_lead_jobs`], the
/// suppression trigger) orders strictly before this write (no follow-up) or
/// after it (the follow-up is there to cancel).
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
            "WITH done AS (
                 UPDATE send_jobs j
                 SET status = CASE WHEN u.status IN ('pending', 'deferred')
                                        AND (EXISTS (SELECT 1 FROM campaigns c
                                                     WHERE c.tenant_id = j.tenant_id AND c.id = j.campaign_id
                                                       AND c.status = 'cancelled')
                                             OR EXISTS (SELECT 1 FROM leads l
                                                        WHERE l.tenant_id = j.tenant_id AND l.id = j.lead_id
                                                          AND l.stopped_at IS NOT NULL))
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
                 RETURNING j.tenant_id, j.campaign_id, j.lead_id, j.step, j.status, j.priority,
                           j.message_id, j.thread
             ), next AS (
                 SELECT d.tenant_id, d.campaign_id, d.lead_id, s.step, d.priority,
                        $7 + make_interval(secs => s.delay_secs) AS run_at,
                        array_remove(coalesce(d.thread, '{}') || d.message_id, NULL) AS thread
                 FROM done d
                 JOIN campaign_steps s ON s.tenant_id = d.tenant_id AND s.campaign_id = d.campaign_id
                                      AND s.step = d.step + 1
                 JOIN campaigns c ON c.tenant_id = d.tenant_id AND c.id = d.campaign_id
                 WHERE d.status = 'sent' AND c.status <> 'cancelled'
             ), alive AS (
                 SELECT n.* FROM next n
                 JOIN leads l ON l.tenant_id = n.tenant_id AND l.id = n.lead_id
                 WHERE l.stopped_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM penguin_suppression(l.tenant_id, l.email, $7))
                 FOR SHARE OF l
             ), followed AS (
                 INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority, step, run_at, thread)
                 SELECT tenant_id, gen_random_uuid(), campaign_id, lead_id, priority, step, run_at, thread
                 FROM alive
                 ON CONFLICT (tenant_id, campaign_id, lead_id, step) DO NOTHING
                 RETURNING run_at
             )
             SELECT d.tenant_id, d.campaign_id, NULL::timestamptz FROM done d
             UNION ALL
             SELECT NULL, NULL, min(run_at) FROM followed HAVING count(*) > 0",
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
    let mut applied = Applied::default();
    for row in &rows {
        match row.get::<_, Option<Uuid>>(0) {
            Some(tenant) => {
                applied.written += 1;
                applied.campaigns.push((tenant, row.get(1)));
            }
            None => applied.follow_up_due = row.get(2),
        }
    }
    applied.campaigns.sort_unstable();
    applied.campaigns.dedup();
    Ok(applied)
}
