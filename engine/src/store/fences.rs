//! Fencing tokens (DESIGN.md §3): each tenant's epoch in `tenant_fences`.
//!
//! A node that takes a tenant's lease raises the epoch ([`take`]) and, in the
//! same transaction, returns every job of the tenant left `sending` to
//! `pending`: after the commit no job of the tenant is `sending` under an older
//! epoch, so an older holder's status writes (which must match the epoch the
//! job was claimed under) find nothing to change. Claims and recoveries of the
//! node carry its epoch and lock the fence row `FOR SHARE`, so each orders
//! strictly before or after a takeover ([`crate::store::jobs`]).

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// A tenant's epoch as raised by one takeover.
pub type Epoch = i64;

/// What a takeover found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    /// The tenant's new epoch: this node's fencing token until the next takeover.
    pub epoch: Epoch,
    /// Jobs a previous holder left `sending`, now `pending` again.
    pub released: u64,
}

/// Raises `tenant`'s epoch for `node` and returns its `sending` jobs to `pending`,
/// in one transaction. Fails (to be retried) when a claim holds the fence for
/// more than a moment.
pub async fn take(
    pool: &Pool,
    tenant: Uuid,
    node: &str,
    now: OffsetDateTime,
) -> Result<Takeover, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // A claim holds the fence row for a few milliseconds; a node stalled inside
    // one holds it until Postgres ends its idle transaction. Rather than block
    // the caller (whose other leases are due), fail and let it retry.
    tx.batch_execute("SET LOCAL lock_timeout = '250ms'").await?;
    let raise = tx
        .prepare_cached(
            "INSERT INTO tenant_fences AS f (tenant_id, epoch, node_id, taken_at)
             VALUES ($1, 1, $2, $3)
             ON CONFLICT (tenant_id)
             DO UPDATE SET epoch = f.epoch + 1, node_id = $2, taken_at = $3
             RETURNING epoch",
        )
        .await?;
    let epoch: Epoch = tx.query_one(&raise, &[&tenant, &node, &now]).await?.get(0);
    let release = tx
        .prepare_cached(
            "UPDATE send_jobs SET status = 'pending', updated_at = $2
             WHERE tenant_id = $1 AND status = 'sending'",
        )
        .await?;
    let released = tx.execute(&release, &[&tenant, &now]).await?;
    tx.commit().await?;
    Ok(Takeover { epoch, released })
}

/// The current epoch of `tenant` and the node that raised it (`None` before its
/// first takeover).
pub async fn current(pool: &Pool, tenant: Uuid) -> Result<Option<(Epoch, String)>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT epoch, node_id FROM tenant_fences WHERE tenant_id = $1")
        .await?;
    Ok(client
        .query_opt(&stmt, &[&tenant])
        .await?
        .map(|row| (row.get(0), row.get(1))))
}
