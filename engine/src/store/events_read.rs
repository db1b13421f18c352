//! Reading delivery events back, a page at a time, for the control API
//! (`GET /v1/campaigns/{id}/events`, and the tenant's whole stream
//! `GET /v1/events`). The writes (batched, by the Analytics
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

/// How many events one stream page reads at most, whatever `kind` filters out:
/// a page costs a bounded range scan even when the kind asked for is rare.
pub const STREAM_SCAN: i64 = 5_000;

/// One page of a tenant's event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPage {
    /// The events, ordered by id.
    pub events: Vec<StreamEvent>,
    /// The id of the last event read (kept or filtered out); `None` when none.
    pub scanned_to: Option<i64>,
    /// Whether the scan stopped at [`STREAM_SCAN`] rows: more may follow even
    /// when `events` is short.
    pub scan_full: bool,
}

/// An event of the tenant stream: the event and its campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub campaign_id: Uuid,
    pub event: EventRow,
}

/// Up to `limit` events of `tenant` with an id above `after`, of the `kinds`
/// given (all when empty) and of `campaign` when given, ordered by id. One range
/// scan of the primary key `(tenant_id, id)` (or of `delivery_events_campaign`
/// with a campaign), cut at [`STREAM_SCAN`] rows.
pub async fn stream_page(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Option<Uuid>,
    after: i64,
    kinds: &[String],
    limit: i64,
) -> Result<StreamPage, StoreError> {
    let page = client
        .prepare_cached(
            "WITH scanned AS (
                 SELECT e.* FROM delivery_events e
                 WHERE e.tenant_id = $1 AND e.id > $2
                   AND ($3::uuid IS NULL OR e.campaign_id = $3)
                 ORDER BY e.id
                 LIMIT $6
             ), kept AS (
                 SELECT * FROM scanned
                 WHERE cardinality($4::text[]) = 0 OR kind = ANY($4)
                 ORDER BY id
                 LIMIT $5
             )
             SELECT e.id, e.job_id, e.ip_id, e.kind, e.smtp_code, e.enhanced_code, e.class,
                    e.provider, e.reply, e.created_at, l.email, e.campaign_id,
                    (SELECT max(id) FROM scanned), (SELECT count(*) FROM scanned)
             FROM (SELECT 1) AS one
             LEFT JOIN kept e ON true
             LEFT JOIN send_jobs j ON j.tenant_id = e.tenant_id AND j.id = e.job_id
             LEFT JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             ORDER BY e.id",
        )
        .await?;
    let rows = client
        .query(
            &page,
            &[&tenant, &after, &campaign, &kinds, &limit, &STREAM_SCAN],
        )
        .await?;
    let mut out = StreamPage {
        events: Vec::with_capacity(rows.len()),
        scanned_to: None,
        scan_full: false,
    };
    for row in &rows {
        out.scanned_to = row.get(12);
        out.scan_full = row.get::<_, i64>(13) >= STREAM_SCAN;
        let Some(id) = row.get::<_, Option<i64>>(0) else {
            continue;
        };
        out.events.push(StreamEvent {
            campaign_id: row.get(11),
            event: EventRow {
                id,
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
            },
        });
    }
    Ok(out)
}
