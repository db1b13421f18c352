//! Replies posted by the platform that reads the mailboxes (`POST /v1/replies`):
//! the lead answered one of a campaign's messages, so its sequence stops.
//!
//! [`record_reply`] runs in the caller's tenant transaction and first locks the
//! lead row `FOR UPDATE`: the write that creates a follow-up reads that row
//! `FOR SHARE` (`ledger::record_outcomes`), so a follow-up is either created
//! before the stop (and cancelled here) or never. Guarantees:
//!
//! - The first reply of a lead (`leads.replied_at` NULL) sets `replied_at`,
//!   stops the lead (`stopped_at`, `stop_reason = 'replied'`, unless already
//!   stopped), cancels its waiting jobs of the campaign through
//!   [`ledger::stop_lead_jobs`](super::ledger::stop_lead_jobs) (the ledger stays
//!   the only writer of job states), records one `replied` event on the job and
//!   +1 `replied` in `campaign_step_stats` for that job's step.
//! - A repeat changes nothing and records nothing; it answers the same
//!   `stopped_steps` (steps that will never be sent: the campaign's
//!   `step_count` minus the lead's jobs that reached SMTP).
//! - An auto-reply (RFC 3834) records at most one `auto_replied` event per job
//!   and stops nothing. Its key in `delivery_event_keys` (V19), inserted in
//!   the same statement before the event, backs "at most one of each per job".

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::db::StoreError;
use crate::store::ledger;

/// What a reply answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyTo {
    /// The Message-ID the engine sent (normalized: no angle brackets, lower case).
    MessageId(String),
    /// A lead of a campaign, by its normalized address.
    Lead { campaign: Uuid, email: String },
}

/// The result of [`record_reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyOutcome {
    pub campaign_id: Uuid,
    /// The job the event is (or would be) recorded on; `None` when the lead
    /// has no job at all.
    pub job_id: Option<Uuid>,
    /// Steps of the lead that will never be sent (0 for an auto-reply).
    pub stopped_steps: i64,
    /// This call recorded the event (false on a repeat).
    pub recorded: bool,
}

/// Records a reply (`auto`: an auto-reply) of `tenant`'s lead named by `to`;
/// [`StoreError::NotFound`] when no such message or lead of the tenant.
pub async fn record_reply(
    client: &impl GenericClient,
    tenant: Uuid,
    to: &ReplyTo,
    auto: bool,
) -> Result<ReplyOutcome, StoreError> {
    let (campaign, lead, named_job) = find(client, tenant, to).await?;
    let lock = client
        .prepare_cached(
            "SELECT l.replied_at IS NOT NULL, c.step_count
             FROM leads l JOIN campaigns c ON c.tenant_id = l.tenant_id AND c.id = l.campaign_id
             WHERE l.tenant_id = $1 AND l.id = $2
             FOR UPDATE OF l",
        )
        .await?;
    let row = client
        .query_opt(&lock, &[&tenant, &lead])
        .await?
        .ok_or(StoreError::NotFound)?;
    let (replied_before, step_count): (bool, i32) = (row.get(0), row.get(1));
    let job = match named_job {
        Some(job) => Some(job),
        None => reply_job(client, tenant, campaign, lead).await?,
    };
    if auto {
        let recorded = match job {
            Some(job) => insert_event(client, tenant, job, "auto_replied").await?,
            None => false,
        };
        return Ok(ReplyOutcome {
            campaign_id: campaign,
            job_id: job,
            stopped_steps: 0,
            recorded,
        });
    }
    let mut recorded = false;
    if !replied_before {
        let stop = client
            .prepare_cached(
                "UPDATE leads SET replied_at = now(),
                     stopped_at = coalesce(stopped_at, now()),
                     stop_reason = coalesce(stop_reason, 'replied')
                 WHERE tenant_id = $1 AND id = $2",
            )
            .await?;
        client.execute(&stop, &[&tenant, &lead]).await?;
        ledger::stop_lead_jobs(client, tenant, campaign, lead, "replied").await?;
        recorded = match job {
            Some(job) => insert_event(client, tenant, job, "replied").await?,
            None => true,
        };
    }
    let reached = client
        .prepare_cached(
            "SELECT count(*) FROM send_jobs
             WHERE tenant_id = $1 AND campaign_id = $2 AND lead_id = $3
               AND status IN ('sent', 'sending', 'bounced', 'failed', 'suppressed')",
        )
        .await?;
    let reached: i64 = client
        .query_one(&reached, &[&tenant, &campaign, &lead])
        .await?
        .get(0);
    Ok(ReplyOutcome {
        campaign_id: campaign,
        job_id: job,
        stopped_steps: (i64::from(step_count) - reached).max(0),
        recorded,
    })
}

/// The campaign, lead and (for a Message-ID) job `to` names.
async fn find(
    client: &impl GenericClient,
    tenant: Uuid,
    to: &ReplyTo,
) -> Result<(Uuid, Uuid, Option<Uuid>), StoreError> {
    let row = match to {
        ReplyTo::MessageId(message_id) => {
            let stmt = client
                .prepare_cached(
                    "SELECT campaign_id, lead_id, id FROM send_jobs
                     WHERE tenant_id = $1 AND message_id = $2
                     ORDER BY step LIMIT 1",
                )
                .await?;
            client.query_opt(&stmt, &[&tenant, message_id]).await?
        }
        ReplyTo::Lead { campaign, email } => {
            let stmt = client
                .prepare_cached(
                    "SELECT campaign_id, id, NULL::uuid FROM leads
                     WHERE tenant_id = $1 AND campaign_id = $2 AND email = $3",
                )
                .await?;
            client.query_opt(&stmt, &[&tenant, campaign, email]).await?
        }
    };
    let row = row.ok_or(StoreError::NotFound)?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// The job a reply by address is recorded on: the lead's latest step that has
/// a Message-ID (it was sent or attempted), else its first step.
async fn reply_job(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
    lead: Uuid,
) -> Result<Option<Uuid>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT id FROM send_jobs
             WHERE tenant_id = $1 AND campaign_id = $2 AND lead_id = $3
             ORDER BY message_id IS NULL, CASE WHEN message_id IS NULL THEN -step ELSE step END DESC
             LIMIT 1",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&tenant, &campaign, &lead])
        .await?
        .map(|row| row.get(0)))
}

/// One `kind` event on `job` (at most one per job and kind), with +1 `replied`
/// for the job's step when it is a `replied` one; `true` when inserted.
async fn insert_event(
    client: &impl GenericClient,
    tenant: Uuid,
    job: Uuid,
    kind: &str,
) -> Result<bool, StoreError> {
    let stmt = client
        .prepare_cached(
            "WITH job AS (
                 SELECT tenant_id, campaign_id, id, ip_id, step
                 FROM send_jobs WHERE tenant_id = $1 AND id = $2
             ), once AS (
                 INSERT INTO delivery_event_keys (tenant_id, job_id, kind)
                 SELECT tenant_id, id, $3 FROM job
                 ON CONFLICT DO NOTHING
                 RETURNING job_id
             ), event AS (
                 INSERT INTO delivery_events (tenant_id, campaign_id, job_id, ip_id, kind)
                 SELECT tenant_id, campaign_id, id, ip_id, $3 FROM job
                 WHERE EXISTS (SELECT 1 FROM once)
                 RETURNING job_id
             ), rollup AS (
                 INSERT INTO campaign_step_stats (tenant_id, campaign_id, step, replied)
                 SELECT tenant_id, campaign_id, step, 1 FROM job
                 WHERE $3 = 'replied' AND EXISTS (SELECT 1 FROM event)
                 ON CONFLICT (tenant_id, campaign_id, step)
                 DO UPDATE SET replied = campaign_step_stats.replied + 1
             )
             SELECT count(*) FROM event",
        )
        .await?;
    let inserted: i64 = client
        .query_one(&stmt, &[&tenant, &job, &kind])
        .await?
        .get(0);
    Ok(inserted == 1)
}
