//! The verification side of sending domains: recording a verification (and
//! the key activations it brings), the daily re-check's claims, pruning of
//! rotated-out keys, and the counts behind the `penguin_sending_domains` gauge.
//! Called by the API's `verify` route and its re-check task
//! (`penguin_api::domain_verify`, `penguin_api::domain_recheck`).
//!
//! Guarantees: every write filters `tenant_id` explicitly; a verification's
//! status, checks and key activations commit together; the re-check claim
//! stamps what it claims in the same statement (`SKIP LOCKED`), so nodes never
//! check one domain twice in a period.

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// How a verification ended, to record with [`record_verification`].
#[derive(Debug, Clone)]
pub struct Verification<'a> {
    /// `verified`, `failed` or `pending`.
    pub status: &'a str,
    pub checks: serde_json::Value,
    /// `dns` or `trust`.
    pub method: &'a str,
    /// Who: `dns`, or the admin for a trust.
    pub by: &'a str,
    /// Pending keys to activate now (their record was seen, or trusted).
    pub activate: Vec<String>,
    /// How long replaced keys stay published.
    pub grace: time::Duration,
}

/// Records a verification: status and checks; `verified_at`/`by`/`method` when
/// verified; activates the named pending keys, turning the active keys of the
/// same algorithm they replace `retiring` until `now + grace`; deletes keys whose
/// retirement has passed.
pub async fn record_verification(
    pool: &Pool,
    tenant: Uuid,
    id: Uuid,
    verification: &Verification<'_>,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let updated = tx
        .execute(
            "UPDATE sending_domains
             SET status = $3, checks = $4, last_checked_at = $5, updated_at = $5,
                 verified_at = CASE WHEN $3 = 'verified' THEN $5 ELSE verified_at END,
                 verified_by = CASE WHEN $3 = 'verified' THEN $6 ELSE verified_by END,
                 verify_method = CASE WHEN $3 = 'verified' THEN $7 ELSE verify_method END
             WHERE tenant_id = $1 AND id = $2",
            &[
                &tenant,
                &id,
                &verification.status,
                &verification.checks,
                &now,
                &verification.by,
                &verification.method,
            ],
        )
        .await?;
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    if !verification.activate.is_empty() {
        let retire_after = now + verification.grace;
        tx.execute(
            "UPDATE dkim_keys old SET state = 'retiring', retire_after = $4
             WHERE old.tenant_id = $1 AND old.domain_id = $2 AND old.state = 'active'
               AND old.algorithm IN (SELECT algorithm FROM dkim_keys
                                     WHERE tenant_id = $1 AND domain_id = $2
                                       AND state = 'pending' AND selector = ANY($3))",
            &[&tenant, &id, &verification.activate, &retire_after],
        )
        .await?;
        tx.execute(
            "UPDATE dkim_keys SET state = 'active', activated_at = $4
             WHERE tenant_id = $1 AND domain_id = $2 AND state = 'pending' AND selector = ANY($3)",
            &[&tenant, &id, &verification.activate, &now],
        )
        .await?;
    }
    tx.execute(
        "DELETE FROM dkim_keys
         WHERE tenant_id = $1 AND domain_id = $2 AND state = 'retiring' AND retire_after <= $3",
        &[&tenant, &id, &now],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Claims up to `limit` domains verified by DNS whose last check is older than
/// `checked_before`, oldest first, stamping them checked `now` in the same
/// statement (`SKIP LOCKED`): several nodes running the re-check never check the
/// same domain twice. Trusted and never-verified domains are not re-checked.
pub async fn claim_for_recheck(
    pool: &Pool,
    checked_before: OffsetDateTime,
    limit: i64,
    now: OffsetDateTime,
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "UPDATE sending_domains d SET last_checked_at = $3
             FROM (SELECT tenant_id, id FROM sending_domains
                   WHERE status <> 'pending' AND verify_method = 'dns'
                     AND last_checked_at < $1
                   ORDER BY last_checked_at LIMIT $2
                   FOR UPDATE SKIP LOCKED) due
             WHERE d.tenant_id = due.tenant_id AND d.id = due.id
             RETURNING d.tenant_id, d.id",
            &[&checked_before, &limit, &now],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Deletes every rotated-out key whose grace ended by `now` (of any domain,
/// trusted ones included, which no DNS check visits); returns how many.
pub async fn prune_retired(pool: &Pool, now: OffsetDateTime) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            "DELETE FROM dkim_keys WHERE state = 'retiring' AND retire_after <= $1",
            &[&now],
        )
        .await?)
}

/// Counts of domains by status, for the metric.
pub async fn status_counts(pool: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT status, count(*) FROM sending_domains GROUP BY status",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}
