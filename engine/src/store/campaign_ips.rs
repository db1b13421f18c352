//! Moving a campaign to other IPs (`PATCH /v1/campaigns/{id}` `{ip_ids}`): an
//! operator's emergency migration off a burnt IP, or a rebalancing. Allowed
//! while the campaign can still send (`draft`, `scheduled`, `running`,
//! `paused`). Jobs waiting in Postgres for the old pool's allowance become due
//! at once ([`crate::store::ledger::reroute_waiting`]); jobs in Redis are routed
//! to the new pool when their Tenant actor next routes them (it reads the pool
//! afresh after the `CampaignChanged` notification); jobs already claimed on an
//! old IP finish there, each exactly once.

use deadpool_postgres::Transaction;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::domain::CampaignStatus;
use crate::store::campaigns::{Campaign, lock_campaign, tenant_campaign};

/// Sets the campaign's IP pool to `ip_ids` (the caller checked they are the
/// tenant's and not retired, in this transaction) and returns the campaign.
/// [`StoreError::Conflict`] for a campaign that cannot send any more.
pub async fn set_campaign_ips(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
    ip_ids: &[Uuid],
    now: OffsetDateTime,
) -> Result<Campaign, StoreError> {
    let status = lock_campaign(tx, tenant, id).await?.status;
    if matches!(
        status,
        CampaignStatus::Completed | CampaignStatus::Cancelled
    ) {
        return Err(StoreError::Conflict(format!(
            "cannot change the IPs of a campaign that is {status}"
        )));
    }
    let stmt = tx
        .prepare_cached("UPDATE campaigns SET ip_ids = $3 WHERE tenant_id = $1 AND id = $2")
        .await?;
    tx.execute(&stmt, &[&tenant, &id, &ip_ids]).await?;
    crate::store::ledger::reroute_waiting(tx, tenant, id, now).await?;
    tenant_campaign(tx, tenant, id).await
}
