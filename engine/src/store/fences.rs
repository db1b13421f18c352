//! Fencing tokens (DESIGN.md §3): each tenant's epoch in `tenant_fences`.
//!
//! A node that takes a tenant's lease raises the epoch ([`take`]) and, in the
//! same transaction, returns every job of the tenant left `sending` to
//! `pending`: after the commit no job of the tenant is `sending` under an older
//! epoch, so an older holder's status writes (which must match the epoch the
//! job was claimed under) find nothing to change. Claims and recoveries of the
//! node carry its epoch and lock the fence row `FOR SHARE` ([`hold`], inside a
//! [`fenced_transaction`]), so each orders strictly before or after a takeover
//! ([`crate::store::jobs`], [`crate::store::job_recovery`]).

use deadpool_postgres::{GenericClient, Pool};
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

/// Begins a transaction that will hold a fence ([`hold`]).
pub(crate) async fn fenced_transaction(
    client: &mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    Ok(client.transaction().await?)
}

/// Locks the fence rows of the `tenants` still at the paired `epochs` (`FOR
/// SHARE`, until `tx` ends) and returns those tenants: a takeover of any of them
/// waits for `tx`, and one that committed first leaves its tenant out.
///
/// In the same statement the transaction may from then on sit idle for at most
/// a second before Postgres ends it: a node the OS paused between two
/// statements must not keep the fence (and the campaign rows a claim holds
/// `FOR SHARE`) locked from the node that takes its tenants over, nor from the
/// API pausing a campaign. Far longer than the gap between two statements of a
/// live node; far shorter than a lease. (Every returned row joins the one row
/// that sets it, so no fence is held without it.)
pub async fn hold(
    tx: &impl GenericClient,
    tenants: &[Uuid],
    epochs: &[Epoch],
) -> Result<Vec<Uuid>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT f.tenant_id FROM tenant_fences f
             JOIN unnest($1::uuid[], $2::int8[]) AS u(tenant_id, epoch)
               ON f.tenant_id = u.tenant_id AND f.epoch = u.epoch
             CROSS JOIN (SELECT set_config('idle_in_transaction_session_timeout', '1s', true))
               AS idle(timeout)
             ORDER BY f.tenant_id
             FOR SHARE OF f",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tenants, &epochs]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Runs one statement on a tenant's jobs inside a transaction that holds the
/// tenant's fence at `epoch`: the rows changed, or `None` (nothing changed) once
/// the epoch moved on.
pub(crate) async fn fenced_execute(
    pool: &Pool,
    tenant: Uuid,
    epoch: Epoch,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<u64>, StoreError> {
    let mut client = pool.get().await?;
    let tx = fenced_transaction(&mut client).await?;
    if hold(&tx, &[tenant], &[epoch]).await?.is_empty() {
        return Ok(None);
    }
    let stmt = tx.prepare_cached(sql).await?;
    let changed = tx.execute(&stmt, params).await?;
    tx.commit().await?;
    Ok(Some(changed))
}
