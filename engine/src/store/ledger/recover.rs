//! Postpone, Release and Recover: the transitions that return jobs to
//! `pending` (a `sending` job of a cancelled campaign: `cancelled`), after
//! crashes, Redis loss, lease lapses, hand-offs and used allowances (Reaper, Cluster, Feeder, Ip and Tenant actors, takeovers). Each
//! runs under the fence of the tenant's partition at the caller's token
//! ([`crate::store::fences`]) and changes nothing once another node took the
//! partition over; [`recover_on_takeover`] runs inside the takeover that raises it.

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::store::fences::{Epoch, fenced_execute, fenced_transaction, hold_tokens};

/// Returns `sending` jobs claimed under `tokens` (a node's partitions) whose
/// partitions are still at those tokens, untouched since `older_than`, to
/// `pending`: their node or Ip actor died mid-attempt. (The attempt may have
/// reached the recipient; this is the "at most in-flight" duplicate window
/// after a crash.)
pub async fn release_stale_sending(
    pool: &Pool,
    tokens: &[Epoch],
    older_than: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    if tokens.is_empty() {
        return Ok(0);
    }
    let mut client = pool.get().await?;
    let tx = fenced_transaction(&mut client).await?;
    let held = hold_tokens(&tx, tokens).await?;
    if held.is_empty() {
        return Ok(0);
    }
    let stmt = tx
        .prepare_cached(concat!(
            "UPDATE send_jobs j SET status = ",
            pending_unless_cancelled!(),
            ", updated_at = $3
             WHERE j.status = 'sending' AND j.fence = ANY($1) AND j.updated_at < $2"
        ))
        .await?;
    let released = tx.execute(&stmt, &[&held, &older_than, &now]).await?;
    tx.commit().await?;
    Ok(released)
}

/// Returns every `sending` job on one IP to `pending`: used when that IP's actor
/// restarts, because this node owns the IP and the old actor's attempts are gone.
/// `None`: the epoch moved on, nothing changed (as for the other fenced writes).
pub async fn release_sending_on_ip(
    pool: &Pool,
    tenant: Uuid,
    epoch: Epoch,
    ip: Uuid,
    now: OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    fenced_execute(
        pool,
        tenant,
        epoch,
        concat!(
            "UPDATE send_jobs j SET status = ",
            pending_unless_cancelled!(),
            ", updated_at = $3
             WHERE j.tenant_id = $1 AND j.ip_id = $2 AND j.status = 'sending'"
        ),
        &[&tenant, &ip, &now],
    )
    .await
}

/// Returns jobs left `sending` under `epoch` by the claims given with them
/// (`(job, claim id)`; claimed, never attempted: the attempt is not counted) to
/// `pending`. A job claimed again since is left alone. `None`: the epoch moved
/// on, nothing changed.
pub async fn release_sending(
    pool: &Pool,
    tenant: Uuid,
    epoch: Epoch,
    jobs: &[(Uuid, Uuid)],
    now: OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    let (ids, claims): (Vec<Uuid>, Vec<Uuid>) = jobs.iter().copied().unzip();
    fenced_execute(
        pool,
        tenant,
        epoch,
        concat!(
            "UPDATE send_jobs j
         SET status = ",
            pending_unless_cancelled!(),
            ", attempts = greatest(j.attempts - 1, 0), updated_at = $4
         FROM unnest($2::uuid[], $5::uuid[]) AS u(id, claim)
         WHERE j.tenant_id = $1 AND j.id = u.id AND (j.status = 'sending') IS TRUE
           AND j.fence = $3
           AND j.claim = u.claim"
        ),
        &[&tenant, &ids, &epoch, &now, &claims],
    )
    .await
}

/// Returns every `queued` job of a tenant to `pending`: Redis lost its copies
/// (emptied or restarted). Copies that survived are harmless — claiming them fails.
pub async fn release_queued(
    pool: &Pool,
    tenant: Uuid,
    epoch: Epoch,
    now: OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    fenced_execute(
        pool,
        tenant,
        epoch,
        "UPDATE send_jobs SET status = 'pending', updated_at = $2
         WHERE tenant_id = $1 AND status = 'queued'",
        &[&tenant, &now],
    )
    .await
}

/// Sends popped `queued` jobs back to Postgres' backlog until `run_at`: every IP
/// of their pool has used its allowance until then. Returns how many moved.
pub async fn postpone_queued(
    pool: &Pool,
    tenant: Uuid,
    epoch: Epoch,
    jobs: &[Uuid],
    run_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    fenced_execute(
        pool,
        tenant,
        epoch,
        "UPDATE send_jobs SET status = 'pending', run_at = greatest(run_at, $3), updated_at = $4
         WHERE tenant_id = $1 AND id = ANY($2) AND (status = 'queued') IS TRUE",
        &[&tenant, &jobs, &run_at, &now],
    )
    .await
}

/// Returns every `sending` job of the tenants of `partitions` (of `count` in
/// all) to `pending`, inside the transaction of a takeover that has just raised
/// the partitions' epochs ([`crate::store::fences::take`]): after its commit no
/// job of theirs is `sending` under an older token, so an older holder's
/// outcomes find nothing to change. `sending` jobs are few (the in-flight
/// window, `send_jobs_in_flight`).
pub async fn recover_on_takeover(
    tx: &impl GenericClient,
    partitions: &[i32],
    count: u32,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let release = tx
        .prepare_cached(concat!(
            "UPDATE send_jobs j SET status = ",
            pending_unless_cancelled!(),
            ", updated_at = $3
             WHERE j.status = 'sending' AND penguin_partition(j.tenant_id, $2) = ANY($1)"
        ))
        .await?;
    Ok(tx
        .execute(&release, &[&partitions, &(count as i32), &now])
        .await?)
}
