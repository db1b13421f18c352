//! What the engine's actors read to route work: which tenants exist, their IPs, and
//! the delivery spec of a campaign. Read-only; the control API writes these rows.

use std::net::IpAddr;

use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::db::StoreError;
use crate::domain::CampaignStatus;

/// Every tenant id (the Cluster actor leases them).
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSpec {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub address: IpAddr,
    pub helo_name: String,
    pub active: bool,
}

/// The IPs of some tenants.
pub async fn ips_of(pool: &Pool, tenants: &[Uuid]) -> Result<Vec<IpSpec>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT tenant_id, id, host(address), helo_name, status = 'active'
             FROM smtp_ips WHERE tenant_id = ANY($1) ORDER BY tenant_id, id",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenants]).await?;
    rows.iter()
        .map(|row| {
            let address: String = row.get(2);
            Ok(IpSpec {
                tenant_id: row.get(0),
                id: row.get(1),
                address: address
                    .parse()
                    .map_err(|_| StoreError::Invalid(format!("ip address {address}")))?,
                helo_name: row.get(3),
                active: row.get(4),
            })
        })
        .collect()
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
}

pub async fn campaign_spec(
    pool: &Pool,
    tenant: Uuid,
    campaign: Uuid,
) -> Result<CampaignSpec, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT status, from_address, from_name, subject, text_body, html_body, ip_ids
             FROM campaigns WHERE tenant_id = $1 AND id = $2",
        )
        .await?;
    let row = client
        .query_opt(&stmt, &[&tenant, &campaign])
        .await?
        .ok_or(StoreError::NotFound)?;
    let status: &str = row.get(0);
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
    })
}
