//! Late bounce: `sent → bounced` for one job whose receiver accepted it and
//! later reported a permanent failure (a DSN, `POST /v1/bounces`). Runs in the
//! caller's transaction (`store::bounces::record`, which writes the event, the
//! rollups and the suppression with it). Conditional on `sent`, so a repeated
//! report, or one about a job that bounced, failed or never left, changes
//! nothing.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// The job [`bounce_sent`] turned `bounced`, and its `sent` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncedLate {
    pub step: i32,
    pub lead: Uuid,
    /// The provider and time of the job's `sent` event, when recorded.
    pub provider: Option<String>,
    pub sent_at: Option<OffsetDateTime>,
}

/// Turns `job` of `tenant` from `sent` to `bounced` with `last_reply` =
/// `reply`; `None` (and nothing written) when it is not `sent`.
pub async fn bounce_sent(
    client: &impl GenericClient,
    tenant: Uuid,
    job: Uuid,
    reply: &str,
    now: OffsetDateTime,
) -> Result<Option<BouncedLate>, StoreError> {
    let stmt = client
        .prepare_cached(
            "WITH flipped AS (
                 UPDATE send_jobs SET status = 'bounced', last_reply = $3, updated_at = $4
                 WHERE tenant_id = $1 AND id = $2 AND (status = 'sent') IS TRUE
                 RETURNING tenant_id, id, step, lead_id
             )
             SELECT f.step, f.lead_id, e.provider, e.created_at
             FROM flipped f
             LEFT JOIN LATERAL (
                 SELECT provider, created_at FROM delivery_events
                 WHERE tenant_id = f.tenant_id AND job_id = f.id AND kind = 'sent'
                 ORDER BY id DESC LIMIT 1
             ) e ON true",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&tenant, &job, &reply, &now])
        .await?
        .map(|row| BouncedLate {
            step: row.get(0),
            lead: row.get(1),
            provider: row.get(2),
            sent_at: row.get(3),
        }))
}
