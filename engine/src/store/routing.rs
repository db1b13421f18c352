//! What the engine's actors read to route work: which tenants exist, their IPs, and
//! the delivery spec of a campaign. Read-only; the control API writes these rows.

use std::net::IpAddr;

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::domain::CampaignStatus;
use crate::partition::Partition;
use crate::store::sequences::{NewStep, campaign_steps};

/// Every tenant id (`GET /v1/nodes` maps them to their partitions' nodes).
pub async fn tenant_ids(pool: &Pool) -> Result<Vec<Uuid>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT id FROM tenants ORDER BY id")
        .await?;
    Ok(client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// One sending IP as the engine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct IpSpec {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub address: IpAddr,
    pub helo_name: String,
    pub active: bool,
    /// Why it is paused (operator or health breaker).
    pub status_reason: Option<String>,
    /// An automatic pause ends here.
    pub paused_until: Option<OffsetDateTime>,
    pub warmup_schedule: Option<String>,
    /// The schedule's ramp (`None` without a schedule: the IP is warm).
    pub daily_volumes: Option<Vec<i32>>,
    pub warmup_day: i32,
    /// IANA zone of the IP's day.
    pub timezone: String,
    pub active_hours_start: u8,
    pub active_hours_end: u8,
    /// Multiplies allowance and rate after a health pause (1 = full).
    pub rate_factor: f64,
    pub created_at: OffsetDateTime,
}

impl IpSpec {
    /// Whether `other` is the same IP with the same address and HELO name (only
    /// limits, warm-up position or status differ): the Ip actor updates in place.
    pub fn same_identity(&self, other: &IpSpec) -> bool {
        self.tenant_id == other.tenant_id
            && self.id == other.id
            && self.address == other.address
            && self.helo_name == other.helo_name
    }
}

/// The IPs of the tenants of some partitions (of `count` in all).
pub async fn ips_of_partitions(
    pool: &Pool,
    count: u32,
    partitions: &[Partition],
) -> Result<Vec<IpSpec>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "{IP_COLUMNS} WHERE penguin_partition(i.tenant_id, $1) = ANY($2)
               AND i.status <> 'retired'
             ORDER BY i.tenant_id, i.id"
        ))
        .await?;
    let partitions: Vec<i32> = partitions.iter().map(|p| *p as i32).collect();
    let rows = client.query(&stmt, &[&(count as i32), &partitions]).await?;
    rows.iter().map(ip_spec).collect()
}

const IP_COLUMNS: &str =
    "SELECT i.tenant_id, i.id, host(i.address), i.helo_name, i.status = 'active',
        i.status_reason, i.paused_until, i.warmup_schedule, w.daily_volumes,
        i.warmup_day, i.timezone, i.active_hours_start, i.active_hours_end,
        i.rate_factor::float8, i.created_at
 FROM smtp_ips i LEFT JOIN warmup_schedules w ON w.name = i.warmup_schedule";

fn ip_spec(row: &tokio_postgres::Row) -> Result<IpSpec, StoreError> {
    let address: String = row.get(2);
    Ok(IpSpec {
        tenant_id: row.get(0),
        id: row.get(1),
        address: address
            .parse()
            .map_err(|_| StoreError::Invalid(format!("ip address {address}")))?,
        helo_name: row.get(3),
        active: row.get(4),
        status_reason: row.get(5),
        paused_until: row.get(6),
        warmup_schedule: row.get(7),
        daily_volumes: row.get(8),
        warmup_day: row.get(9),
        timezone: row.get(10),
        active_hours_start: row.get::<_, i16>(11) as u8,
        active_hours_end: row.get::<_, i16>(12) as u8,
        rate_factor: row.get(13),
        created_at: row.get(14),
    })
}

/// The IPs of some tenants.
pub async fn ips_of(pool: &Pool, tenants: &[Uuid]) -> Result<Vec<IpSpec>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "{IP_COLUMNS} WHERE i.tenant_id = ANY($1) AND i.status <> 'retired'
             ORDER BY i.tenant_id, i.id"
        ))
        .await?;
    let rows = client.query(&stmt, &[&tenants]).await?;
    rows.iter().map(ip_spec).collect()
}

/// Everything needed to render and route the jobs of one campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignSpec {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub status: CampaignStatus,
    pub from_address: String,
    pub from_name: Option<String>,
    pub subject: String,
    pub text_body: String,
    pub html_body: Option<String>,
    pub ip_ids: Vec<Uuid>,
    /// The follow-up steps (2, 3, …) of a sequence, in order; empty for a
    /// one-step campaign.
    pub steps: Vec<NewStep>,
}

pub async fn campaign_spec(
    pool: &Pool,
    tenant: Uuid,
    campaign: Uuid,
) -> Result<CampaignSpec, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT status, from_address, from_name, subject, text_body, html_body, ip_ids,
                    step_count
             FROM campaigns WHERE tenant_id = $1 AND id = $2",
        )
        .await?;
    let row = client
        .query_opt(&stmt, &[&tenant, &campaign])
        .await?
        .ok_or(StoreError::NotFound)?;
    let status: &str = row.get(0);
    let step_count: i32 = row.get(7);
    let steps = if step_count > 1 {
        campaign_steps(&client, tenant, campaign).await?
    } else {
        Vec::new()
    };
    Ok(CampaignSpec {
        tenant_id: tenant,
        id: campaign,
        status: status
            .parse()
            .map_err(|_| StoreError::Invalid(format!("campaign status {status}")))?,
        from_address: row.get(1),
        from_name: row.get(2),
        subject: row.get(3),
        text_body: row.get(4),
        html_body: row.get(5),
        ip_ids: row.get(6),
        steps,
    })
}
