//! Complaints (feedback loops): finding the job a recipient complained about and
//! recording the complaint, for the control API's `POST /v1/complaints`.
//!
//! [`find_job`] looks a job up by the Message-ID the engine sent or by its id;
//! a tenant's lookup filters `tenant_id`, the operator's walks the tenants with
//! one index probe each (`send_jobs_message_id`, the primary key), so no query
//! scans across tenants. [`record`] writes, in the caller's transaction (a
//! tenant's: `db::tenant_transaction`; the operator's: on the owner's role): a `complaint`
//! delivery event (with the provider of the job's `sent` event), one more
//! complaint in the IP's daily rollup for the IP-local day of `now`, and the
//! recipient on the tenant's suppression list for good (reason `complaint`; an
//! earlier entry keeps its reason unless lapsed). A job has at most one complaint (its key in
//! `delivery_event_keys`, V19, inserted first in the same statement): a repeat
//! changes nothing and says so.

use deadpool_postgres::{GenericClient, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::store::suppressions::SuppressionReason;

/// How a complaint names its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRef<'a> {
    /// As stored in `send_jobs.message_id` (no angle brackets).
    MessageId(&'a str),
    JobId(Uuid),
}

/// The job a complaint is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplainedJob {
    pub tenant_id: Uuid,
    pub job_id: Uuid,
    pub campaign_id: Uuid,
    /// The IP that sent it; `None` when it never left.
    pub ip_id: Option<Uuid>,
    /// The lead's address.
    pub email: String,
}

/// What [`record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The job already had a complaint: nothing was written.
    pub duplicate: bool,
    /// The provider of the job's `sent` event, when known.
    pub provider: Option<String>,
}

/// The job `by` names — among `owner`'s jobs only, when given; `None` when
/// there is none (or it is another tenant's).
pub async fn find_job(
    client: &impl GenericClient,
    owner: Option<Uuid>,
    by: JobRef<'_>,
) -> Result<Option<ComplainedJob>, StoreError> {
    let (condition, key): (&str, &(dyn tokio_postgres::types::ToSql + Sync)) = match &by {
        JobRef::MessageId(id) => ("j.message_id = $2::text", id),
        JobRef::JobId(id) => ("j.id = $2::uuid", id),
    };
    let sql = format!(
        "SELECT j.tenant_id, j.id, j.campaign_id, j.ip_id, l.email
         FROM tenants t
         CROSS JOIN LATERAL (
             SELECT * FROM send_jobs j WHERE j.tenant_id = t.id AND {condition} LIMIT 1
         ) AS j
         JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
         WHERE ($1::uuid IS NULL OR t.id = $1)
         LIMIT 1"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let row = client.query_opt(&stmt, &[&owner, key]).await?;
    Ok(row.map(|row| ComplainedJob {
        tenant_id: row.get(0),
        job_id: row.get(1),
        campaign_id: row.get(2),
        ip_id: row.get(3),
        email: row.get(4),
    }))
}

/// Records a complaint about `job` (which must have an IP) of `feedback_type`
/// (`abuse`, `fraud`, …; stored as the event's `class`) at `now`, in `tx` (the
/// caller commits). A repeat for the same job writes nothing and is `duplicate`.
pub async fn record(
    tx: &Transaction<'_>,
    job: &ComplainedJob,
    ip_id: Uuid,
    feedback_type: &str,
    now: OffsetDateTime,
) -> Result<Recorded, StoreError> {
    let event = tx
        .prepare_cached(
            "WITH once AS (
                 INSERT INTO delivery_event_keys (tenant_id, job_id, kind)
                 VALUES ($1, $3, 'complaint')
                 ON CONFLICT DO NOTHING
                 RETURNING job_id
             )
             INSERT INTO delivery_events
                 (tenant_id, campaign_id, job_id, ip_id, kind, class, provider, created_at)
             SELECT $1, $2, $3, $4, 'complaint', $5,
                    (SELECT e.provider FROM delivery_events e
                     WHERE e.tenant_id = $1 AND e.job_id = $3 AND e.kind = 'sent'
                     ORDER BY e.id DESC LIMIT 1),
                    $6
             FROM once
             RETURNING provider",
        )
        .await?;
    let inserted = tx
        .query_opt(
            &event,
            &[
                &job.tenant_id,
                &job.campaign_id,
                &job.job_id,
                &ip_id,
                &feedback_type,
                &now,
            ],
        )
        .await?;
    let Some(inserted) = inserted else {
        return Ok(Recorded {
            duplicate: true,
            provider: None,
        });
    };
    let rollup = tx
        .prepare_cached(
            "INSERT INTO ip_daily_stats AS s (tenant_id, ip_id, day, complaints)
             VALUES ($1, $2, ($3::timestamptz AT TIME ZONE coalesce(
                         (SELECT timezone FROM smtp_ips WHERE tenant_id = $1 AND id = $2),
                         'UTC'))::date,
                     1)
             ON CONFLICT (tenant_id, ip_id, day) DO UPDATE SET complaints = s.complaints + 1",
        )
        .await?;
    tx.execute(&rollup, &[&job.tenant_id, &ip_id, &now]).await?;
    super::suppressions::add_permanent(tx, job.tenant_id, &job.email, SuppressionReason::Complaint)
        .await?;
    Ok(Recorded {
        duplicate: false,
        provider: inserted.get(0),
    })
}
