//! Retiring an IP (`DELETE /v1/ips/{id}`, admin): the row becomes `retired`
//! rather than being deleted, so the IP's usage, rollups, events and warm-up
//! history stay. A retired IP is left out of every list and of routing (no Ip
//! actor runs for it), cannot be paused, resumed or named by a campaign, and
//! its address may be registered again.
//!
//! Refused while a campaign that can still send (`draft`, `scheduled`,
//! `running`, `paused`) lists the IP: move those campaigns first (`PATCH
//! /v1/campaigns/{id}` `{ip_ids}`). The IP row is locked `FOR UPDATE` before the
//! campaigns are read, and a campaign naming IPs locks them `FOR SHARE`
//! ([`crate::store::ips::owned_ip_ids`]), so a retirement and a campaign
//! taking the IP order one after the other.

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// What [`retire_ip`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retired {
    /// The IP is retired now (`already`: it was before this call).
    Done { tenant_id: Uuid, already: bool },
    /// Campaigns that can still send list it (at most 20 ids, oldest first).
    InUse(Vec<Uuid>),
}

/// Retires IP `id`. [`StoreError::NotFound`] when there is no such IP.
pub async fn retire_ip(pool: &Pool, id: Uuid, now: OffsetDateTime) -> Result<Retired, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT tenant_id, status FROM smtp_ips WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or(StoreError::NotFound)?;
    let (tenant_id, status): (Uuid, String) = (row.get(0), row.get(1));
    if status == "retired" {
        return Ok(Retired::Done {
            tenant_id,
            already: true,
        });
    }
    let users = tx
        .query(
            "SELECT id FROM campaigns
             WHERE tenant_id = $1 AND $2 = ANY(ip_ids)
               AND status NOT IN ('completed', 'cancelled')
             ORDER BY created_at, id LIMIT 20",
            &[&tenant_id, &id],
        )
        .await?;
    if !users.is_empty() {
        return Ok(Retired::InUse(users.iter().map(|r| r.get(0)).collect()));
    }
    tx.execute(
        "UPDATE smtp_ips
         SET status = 'retired', status_reason = 'retired through the API',
             paused_until = NULL, retired_at = $2
         WHERE id = $1",
        &[&id, &now],
    )
    .await?;
    tx.commit().await?;
    Ok(Retired::Done {
        tenant_id,
        already: false,
    })
}
