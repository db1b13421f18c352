//! Paged lists for the control API: a tenant's campaigns (newest first), a
//! campaign's jobs, and every tenant (admin).
//!
//! Guarantees: each page is one range scan of an index in key order — campaigns
//! by `(tenant_id, id)` descending (ids are UUIDv7, so newest first), jobs by
//! `send_jobs_campaign_id (tenant_id, campaign_id, id)`, tenants by their
//! primary key descending — with the cursor `after` = the last key of the
//! previous page, so paging walks every row once and a row created meanwhile
//! never shifts a page. `tenant_id` is always filtered explicitly (tenant reads
//! also run under row-level security); a campaign that is absent or another
//! tenant's is [`StoreError::NotFound`], never an empty page.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::domain::{CampaignStatus, JobStatus};
use crate::store::campaigns::{COLUMNS, Campaign, campaign};
use crate::store::tenants::Tenant;

/// Up to `limit` campaigns of `tenant` (only those in `status`, if given) with
/// an id below `after` (all when `None`), newest first.
pub async fn campaigns_page(
    client: &impl GenericClient,
    tenant: Uuid,
    status: Option<CampaignStatus>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Campaign>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM campaigns
         WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC
         LIMIT $4"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let status = status.map(CampaignStatus::as_str);
    let rows = client
        .query(&stmt, &[&tenant, &status, &after, &limit])
        .await?;
    rows.iter().map(campaign).collect()
}

/// One job as `GET /v1/campaigns/{id}/jobs` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: Uuid,
    /// The lead's address.
    pub recipient: String,
    pub status: JobStatus,
    /// SMTP attempts made, every one since the job was created.
    pub attempts: i32,
    pub last_reply: Option<String>,
    /// When the job is due next: `run_at` of a waiting (`pending`, `deferred`)
    /// job, `None` otherwise.
    pub next_run_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
    /// Its step in the campaign's sequence (1: the first email).
    pub step: i32,
    /// The Message-ID it was sent with (without angle brackets), once attempted.
    pub message_id: Option<String>,
}

/// Up to `limit` jobs of `campaign` (of `tenant`; only those in `status`, if
/// given) with an id above `after`, by id.
pub async fn jobs_page(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
    status: Option<JobStatus>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<JobRow>, StoreError> {
    super::campaigns::ensure_exists(client, tenant, campaign).await?;
    let stmt = client
        .prepare_cached(
            "SELECT j.id, l.email, j.status, j.attempts, j.last_reply,
                    CASE WHEN j.status IN ('pending', 'deferred') THEN j.run_at END,
                    j.updated_at, j.step, j.message_id
             FROM send_jobs j
             JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             WHERE j.tenant_id = $1 AND j.campaign_id = $2
               AND ($3::text IS NULL OR j.status = $3)
               AND ($4::uuid IS NULL OR j.id > $4)
             ORDER BY j.id
             LIMIT $5",
        )
        .await?;
    let status = status.map(JobStatus::as_str);
    let rows = client
        .query(&stmt, &[&tenant, &campaign, &status, &after, &limit])
        .await?;
    rows.iter()
        .map(|row| {
            let status: &str = row.get(2);
            Ok(JobRow {
                id: row.get(0),
                recipient: row.get(1),
                status: status
                    .parse()
                    .map_err(|_| StoreError::Invalid(format!("job status {status}")))?,
                attempts: row.get(3),
                last_reply: row.get(4),
                next_run_at: row.get(5),
                updated_at: row.get(6),
                step: row.get(7),
                message_id: row.get(8),
            })
        })
        .collect()
}

/// Up to `limit` tenants with an id below `after` (all when `None`), newest
/// first (tenant ids are UUIDv7). For the admin: spans tenants.
pub async fn tenants_page(
    client: &impl GenericClient,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Tenant>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT id, name, created_at FROM tenants
             WHERE ($1::uuid IS NULL OR id < $1)
             ORDER BY id DESC
             LIMIT $2",
        )
        .await?;
    let rows = client.query(&stmt, &[&after, &limit]).await?;
    Ok(rows
        .iter()
        .map(|row| Tenant {
            id: row.get(0),
            name: row.get(1),
            created_at: row.get(2),
        })
        .collect())
}
