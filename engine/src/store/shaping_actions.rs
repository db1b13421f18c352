//! `ip_shaping_actions`: the suspensions and slow-downs in force on an IP's
//! shaping units, with the rule that took each one (issue 14, item 4).
//!
//! Written by the Ip actor when a reply rule or a health breaker acts
//! ([`record`]: a repeat while the row is in force updates it and keeps its
//! `started_at`), read back when an Ip actor starts ([`load_in_force`], which
//! first deletes the IP's rows past `until`), and read by the API for
//! `GET /v1/ips` and `GET /v1/ips/{id}` ([`in_force`]). The unit's `key` is
//! opaque here: whatever name the actor's shaping gives the unit.

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::StoreError;

/// One action in force on one shaping unit of one IP.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapingAction {
    pub tenant_id: Uuid,
    pub ip_id: Uuid,
    /// The shaping unit's name (today the provider; a site once units are sites).
    pub key: String,
    /// `suspend` or `slow_down`.
    pub action: String,
    pub provider: String,
    /// The reply rule's name, or `health:<trip>` for a health breaker.
    pub rule: String,
    /// The factor a slow-down multiplied the unit's rate by.
    pub factor: Option<f64>,
    /// Messages an hour the unit may send while the action holds (0: suspended).
    pub effective_per_hour: u32,
    /// How the rate was reached and what caused it, for operators.
    pub reason: String,
    pub started_at: OffsetDateTime,
    pub until: OffsetDateTime,
}

const COLUMNS: &str = "tenant_id, ip_id, key, action, provider, rule, factor, \
                       effective_per_hour, reason, started_at, until";

fn action(row: &Row) -> ShapingAction {
    let effective: i32 = row.get(7);
    ShapingAction {
        tenant_id: row.get(0),
        ip_id: row.get(1),
        key: row.get(2),
        action: row.get(3),
        provider: row.get(4),
        rule: row.get(5),
        factor: row.get(6),
        effective_per_hour: u32::try_from(effective).unwrap_or(0),
        reason: row.get(8),
        started_at: row.get(9),
        until: row.get(10),
    }
}

/// Records an action just taken. A row of the same (IP, unit, action) still in
/// force at `started_at` keeps its own `started_at` and ends at the later of
/// both `until`s; an expired one is replaced. Also deletes the IP's rows that
/// ended by `started_at`, which bounds the table to what is (nearly) in force.
pub async fn record(pool: &Pool, row: &ShapingAction) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let prune = client
        .prepare_cached(
            "DELETE FROM ip_shaping_actions WHERE tenant_id = $1 AND ip_id = $2 AND until <= $3",
        )
        .await?;
    client
        .execute(&prune, &[&row.tenant_id, &row.ip_id, &row.started_at])
        .await?;
    let upsert = client
        .prepare_cached(&format!(
            "INSERT INTO ip_shaping_actions ({COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (tenant_id, ip_id, key, action) DO UPDATE SET
                 provider = EXCLUDED.provider,
                 rule = EXCLUDED.rule,
                 factor = EXCLUDED.factor,
                 effective_per_hour = EXCLUDED.effective_per_hour,
                 reason = EXCLUDED.reason,
                 started_at = CASE WHEN ip_shaping_actions.until > EXCLUDED.started_at
                                   THEN least(ip_shaping_actions.started_at, EXCLUDED.started_at)
                                   ELSE EXCLUDED.started_at END,
                 until = CASE WHEN ip_shaping_actions.until > EXCLUDED.started_at
                              THEN greatest(ip_shaping_actions.until, EXCLUDED.until)
                              ELSE EXCLUDED.until END"
        ))
        .await?;
    let effective = i32::try_from(row.effective_per_hour).unwrap_or(i32::MAX);
    client
        .execute(
            &upsert,
            &[
                &row.tenant_id,
                &row.ip_id,
                &row.key,
                &row.action,
                &row.provider,
                &row.rule,
                &row.factor,
                &effective,
                &row.reason,
                &row.started_at,
                &row.until,
            ],
        )
        .await?;
    Ok(())
}

/// The IP's actions still in force at `now` (for an Ip actor that starts),
/// after deleting those that ended.
pub async fn load_in_force(
    pool: &Pool,
    tenant: Uuid,
    ip: Uuid,
    now: OffsetDateTime,
) -> Result<Vec<ShapingAction>, StoreError> {
    let client = pool.get().await?;
    let prune = client
        .prepare_cached(
            "DELETE FROM ip_shaping_actions WHERE tenant_id = $1 AND ip_id = $2 AND until <= $3",
        )
        .await?;
    client.execute(&prune, &[&tenant, &ip, &now]).await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM ip_shaping_actions
             WHERE tenant_id = $1 AND ip_id = $2 AND until > $3
             ORDER BY key, action"
        ))
        .await?;
    let rows = client.query(&stmt, &[&tenant, &ip, &now]).await?;
    Ok(rows.iter().map(action).collect())
}

/// The actions in force at `now` on these IPs, by IP, unit and action. Under a
/// tenant's scope (row-level security) only that tenant's rows are seen.
pub async fn in_force(
    client: &impl GenericClient,
    ips: &[Uuid],
    now: OffsetDateTime,
) -> Result<Vec<ShapingAction>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM ip_shaping_actions
             WHERE ip_id = ANY($1) AND until > $2
             ORDER BY ip_id, key, action"
        ))
        .await?;
    let rows = client.query(&stmt, &[&ips, &now]).await?;
    Ok(rows.iter().map(action).collect())
}

/// [`in_force`] on a connection of `pool` (the operator's view: every tenant).
pub async fn in_force_any(
    pool: &Pool,
    ips: &[Uuid],
    now: OffsetDateTime,
) -> Result<Vec<ShapingAction>, StoreError> {
    let client = pool.get().await?;
    in_force(&client, ips, now).await
}
