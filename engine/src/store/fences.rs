//! Fencing tokens (DESIGN.md §3–§4): each partition's epoch in `partition_fences`.
//!
//! A node that takes a partition's lease raises its epoch ([`take`]) and, in the
//! same transaction, returns every job of the partition's tenants left
//! `sending` to `pending`: after the commit no job of the partition is `sending`
//! under an older token, so an older holder's status writes (which must match
//! the token the job was claimed under) find nothing to change. Claims and
//! recoveries of the node carry its token and lock the fence row `FOR SHARE`
//! ([`hold`], inside a [`fenced_transaction`]), so each orders strictly before
//! or after a takeover ([`crate::store::ledger`]).
//!
//! A token ([`Epoch`]) names its partition and that partition's epoch in one
//! number — `epoch << 16 | partition` — so every job write keeps carrying one
//! `(tenant, token)` pair and `send_jobs.fence` one column, and a takeover finds
//! a partition's jobs without a list of its tenants.

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::partition::Partition;

/// A fencing token: a partition's epoch as raised by one takeover, with the
/// partition in its low 16 bits ([`token`]).
pub type Epoch = i64;

/// The token of `partition` at `epoch`.
pub fn token(partition: Partition, epoch: i64) -> Epoch {
    (epoch << 16) | i64::from(partition & 0xffff)
}

/// The partition a token fences.
pub fn partition_of(token: Epoch) -> Partition {
    (token & 0xffff) as Partition
}

/// What a takeover found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// Each partition taken with its new token: this node's fencing token for
    /// every tenant of the partition until the next takeover.
    pub tokens: Vec<(Partition, Epoch)>,
    /// Jobs a previous holder left `sending`, now `pending` again.
    pub released: u64,
}

impl Takeover {
    /// The new token of `partition`, if it was taken.
    pub fn token_of(&self, partition: Partition) -> Option<Epoch> {
        self.tokens
            .iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, token)| *token)
    }
}

/// Records `partitions` as the cluster's partition count if none is recorded
/// yet, and fails when another count is: nodes that hash tenants differently
/// would each fence the other's jobs.
pub async fn check_partition_count(pool: &Pool, partitions: u32) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let wanted = partitions as i32;
    let row = client
        .query_one(
            "WITH ins AS (
                 INSERT INTO cluster_settings (partitions) VALUES ($1)
                 ON CONFLICT (only_row) DO NOTHING RETURNING partitions)
             SELECT partitions FROM ins UNION ALL SELECT partitions FROM cluster_settings",
            &[&wanted],
        )
        .await?;
    let recorded: i32 = row.get(0);
    if recorded != wanted {
        return Err(StoreError::Invalid(format!(
            "node.partitions is {partitions} but this cluster was started with {recorded} \
             (recorded in Postgres, table cluster_settings); every node must use {recorded}"
        )));
    }
    Ok(())
}

/// Raises the epochs of `partitions` for `node` and returns the `sending` jobs
/// of their tenants (`count` partitions in all) to `pending`, in one
/// transaction. Fails (to be retried) when a claim holds a fence for more than
/// a moment.
pub async fn take(
    pool: &Pool,
    partitions: &[Partition],
    count: u32,
    node: &str,
    now: OffsetDateTime,
) -> Result<Takeover, StoreError> {
    if partitions.is_empty() {
        return Ok(Takeover {
            tokens: Vec::new(),
            released: 0,
        });
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // A claim holds the fence row for a few milliseconds; a node stalled inside
    // one holds it until Postgres ends its idle transaction. Rather than block
    // the caller (whose other leases are due), fail and let it retry.
    tx.batch_execute("SET LOCAL lock_timeout = '250ms'").await?;
    let raise = tx
        .prepare_cached(
            "INSERT INTO partition_fences AS f (partition, epoch, node_id, taken_at)
             SELECT p, 1, $2, $3 FROM unnest($1::int4[]) AS p ORDER BY p
             ON CONFLICT (partition)
             DO UPDATE SET epoch = f.epoch + 1, node_id = $2, taken_at = $3
             RETURNING partition, epoch",
        )
        .await?;
    let numbers: Vec<i32> = partitions.iter().map(|p| *p as i32).collect();
    let rows = tx.query(&raise, &[&numbers, &node, &now]).await?;
    let mut tokens: Vec<(Partition, Epoch)> = rows
        .iter()
        .map(|row| {
            let partition = row.get::<_, i32>(0) as Partition;
            (partition, token(partition, row.get(1)))
        })
        .collect();
    tokens.sort_unstable();
    let released = crate::store::ledger::recover_on_takeover(&tx, &numbers, count, now).await?;
    tx.commit().await?;
    Ok(Takeover { tokens, released })
}

/// The current token of `partition` and the node that raised it (`None` before
/// its first takeover).
pub async fn current(
    pool: &Pool,
    partition: Partition,
) -> Result<Option<(Epoch, String)>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT epoch, node_id FROM partition_fences WHERE partition = $1")
        .await?;
    let number = partition as i32;
    Ok(client
        .query_opt(&stmt, &[&number])
        .await?
        .map(|row| (token(partition, row.get(0)), row.get(1))))
}

/// Begins a transaction that will hold a fence ([`hold`]).
pub(crate) async fn fenced_transaction(
    client: &mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    Ok(client.transaction().await?)
}

/// Locks the fence rows of the partitions whose tokens are given with the
/// `tenants` (paired by position), where the partition is still at that token's
/// epoch (`FOR SHARE`, until `tx` ends), and returns those tenants: a takeover
/// of their partition waits for `tx`, and one that committed first leaves them out.
///
/// In the same statement the transaction may from then on sit idle for at most
/// a second before Postgres ends it: a node the OS paused between two
/// statements must not keep the fence (and the campaign rows a claim holds
/// `FOR SHARE`) locked from the node that takes its partitions over, nor from
/// the API pausing a campaign. Far longer than the gap between two statements
/// of a live node; far shorter than a lease. (Every returned row joins the one
/// row that sets it, so no fence is held without it.)
pub async fn hold(
    tx: &impl GenericClient,
    tenants: &[Uuid],
    epochs: &[Epoch],
) -> Result<Vec<Uuid>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT u.tenant_id FROM partition_fences f
             JOIN unnest($1::uuid[], $2::int8[]) AS u(tenant_id, token)
               ON f.partition = (u.token & 65535)::int4 AND f.epoch = u.token >> 16
             CROSS JOIN (SELECT set_config('idle_in_transaction_session_timeout', '1s', true))
               AS idle(timeout)
             ORDER BY f.partition, u.tenant_id
             FOR SHARE OF f",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tenants, &epochs]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Locks the fence rows of the partitions whose `tokens` are still current
/// (`FOR SHARE`, until `tx` ends, with the same one-second idle limit as
/// [`hold`]) and returns those tokens: for writes that span a node's partitions.
pub async fn hold_tokens(
    tx: &impl GenericClient,
    tokens: &[Epoch],
) -> Result<Vec<Epoch>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT u.token FROM partition_fences f
             JOIN unnest($1::int8[]) AS u(token)
               ON f.partition = (u.token & 65535)::int4 AND f.epoch = u.token >> 16
             CROSS JOIN (SELECT set_config('idle_in_transaction_session_timeout', '1s', true))
               AS idle(timeout)
             ORDER BY f.partition
             FOR SHARE OF f",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tokens]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Runs one statement on a tenant's jobs inside a transaction that holds the
/// fence of the tenant's partition at `epoch`: the rows changed, or `None` (nothing changed) once
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_keeps_its_partition_and_epoch() {
        let t = token(4_095, 7);
        assert_eq!(partition_of(t), 4_095);
        assert_eq!(t >> 16, 7);
        assert!(
            token(3, 2) > token(4_000, 1),
            "a later epoch is a larger token"
        );
    }
}
