//! Reading delivery events back, a page at a time, for the control API
//! (`GET /v1/campaigns/{id}/events`). The writes (batched, by the Analytics
//! actor) live in `store::events`.
//!
//! Guarantees: a page is one range scan of `delivery_events_campaign
//! (tenant_id, campaign_id, id)`, ordered by id; `tenant_id` is always filtered
//! explicitly, and a campaign that is absent or another tenant's is
//! [`StoreError::NotFound`], never an empty page.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// One delivery event as the API shows it, with the lead's address.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: i64,
    pub job_id: Uuid,
    pub ip_id: Option<Uuid>,
    pub kind: String,
    pub smtp_code: Option<i32>,
    pub enhanced_code: Option<String>,
    pub class: Option<String>,
    pub provider: Option<String>,
    pub reply: Option<String>,
    pub created_at: OffsetDateTime,
    /// The address of the job's lead (`None` only if the job or lead is gone).
    pub recipient: Option<String>,
}

/// Up to `limit` events of `campaign` (of `tenant`) with an id above `after`,
/// ordered by id.
pub async fn events_page(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, StoreError> {
    super::campaigns::ensure_exists(client, tenant, campaign).await?;
    let page = client
        .prepare_cached(
            "SELECT e.id, e.job_id, e.ip_id, e.kind, e.smtp_code, e.enhanced_code, e.class,
                    e.provider, e.reply, e.created_at, l.email
             FROM delivery_events e
             LEFT JOIN send_jobs j ON j.tenant_id = e.tenant_id AND j.id = e.job_id
             LEFT JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             WHERE e.tenant_id = $1 AND e.campaign_id = $2 AND e.id > $3
             ORDER BY e.id
             LIMIT $4",
        )
        .await?;
    let rows = client
        .query(&page, &[&tenant, &campaign, &after, &limit])
        .await?;
    Ok(rows
        .iter()
        .map(|row| EventRow {
            id: row.get(0),
            job_id: row.get(1),
            ip_id: row.get(2),
            kind: row.get(3),
            smtp_code: row.get(4),
            enhanced_code: row.get(5),
            class: row.get(6),
            provider: row.get(7),
            reply: row.get(8),
            created_at: row.get(9),
            recipient: row.get(10),
        })
        .collect())
}
