//! Opens and clicks, recorded as delivery events by the public tracking routes
//! (`/t/o/{token}`, `/t/c/{token}`) once a signed token names the job.
//!
//! Guarantees: each call is one statement; the event carries the job's campaign
//! and IP; a job that does not exist (or another tenant's) records nothing.
//! Events are deduplicated by unique partial indexes (`V4__tracking.sql`): at
//! most one `open` per job and one `click` per job and link (the link's target
//! URL is kept in the event's `reply` column), so a mail client that reloads
//! images, a link scanner or a bot replaying a link adds no rows — a public,
//! unauthenticated route can never grow the table beyond one row per link.

use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::db::StoreError;

/// Records the first open of `job`; `true` when this call recorded it.
pub async fn record_open(pool: &Pool, tenant: Uuid, job: Uuid) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, ip_id, kind)
             SELECT tenant_id, campaign_id, id, ip_id, 'open'
             FROM send_jobs WHERE tenant_id = $1 AND id = $2
             ON CONFLICT (tenant_id, job_id) WHERE kind = 'open' DO NOTHING",
        )
        .await?;
    Ok(client.execute(&stmt, &[&tenant, &job]).await? == 1)
}

/// Records the first click of `job` on the link to `url`; `true` when this call
/// recorded it.
pub async fn record_click(
    pool: &Pool,
    tenant: Uuid,
    job: Uuid,
    url: &str,
) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, ip_id, kind, reply)
             SELECT tenant_id, campaign_id, id, ip_id, 'click', $3
             FROM send_jobs WHERE tenant_id = $1 AND id = $2
             ON CONFLICT (tenant_id, job_id, (md5(reply))) WHERE kind = 'click' DO NOTHING",
        )
        .await?;
    Ok(client.execute(&stmt, &[&tenant, &job, &url]).await? == 1)
}
