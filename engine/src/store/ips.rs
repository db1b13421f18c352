//! Tenant-owned SMTP IPs as the control API writes and shows them.
//!
//! Reads come in two forms: the operator's (any tenant: [`all_ips`], [`ip_by_id`])
//! and a tenant's (always filtered by `tenant_id`: [`tenant_ips`], [`tenant_ip`],
//! [`owned_ip_ids`]). Every [`IpView`] carries today's sent count from
//! `ip_daily_stats`, "today" being the date in the IP's own timezone.

use std::net::IpAddr;

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::StoreError;

/// A new IP, already validated by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIp {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub address: IpAddr,
    pub helo_name: String,
    /// `None`: the IP is already warm (no ramp).
    pub warmup_schedule: Option<String>,
    pub timezone: String,
}

/// One IP with its warm-up position and today's volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpView {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub address: IpAddr,
    pub helo_name: String,
    /// `active` or `paused`.
    pub status: String,
    pub status_reason: Option<String>,
    pub warmup_schedule: Option<String>,
    pub warmup_day: i32,
    /// The schedule's volume for the current warm-up day (the ceiling past its
    /// end); `None` when the IP has no schedule.
    pub warmup_daily_volume: Option<i64>,
    pub timezone: String,
    pub sent_today: i64,
    pub created_at: OffsetDateTime,
}

/// The columns of [`IpView`], read from a relation aliased `i`.
const VIEW_COLUMNS: &str = "i.tenant_id, i.id, i.address, i.helo_name, i.status, i.status_reason,
        i.warmup_schedule, i.warmup_day,
        w.daily_volumes[least(i.warmup_day, cardinality(w.daily_volumes))]::int8,
        i.timezone, coalesce(s.sent, 0)::int8, i.created_at";

/// The joins [`VIEW_COLUMNS`] needs.
const VIEW_JOINS: &str = "LEFT JOIN warmup_schedules w ON w.name = i.warmup_schedule
        LEFT JOIN ip_daily_stats s ON s.tenant_id = i.tenant_id AND s.ip_id = i.id
            AND s.day = (now() AT TIME ZONE i.timezone)::date";

fn view(row: &Row) -> IpView {
    IpView {
        tenant_id: row.get(0),
        id: row.get(1),
        address: row.get(2),
        helo_name: row.get(3),
        status: row.get(4),
        status_reason: row.get(5),
        warmup_schedule: row.get(6),
        warmup_day: row.get(7),
        warmup_daily_volume: row.get(8),
        timezone: row.get(9),
        sent_today: row.get(10),
        created_at: row.get(11),
    }
}

/// Inserts an IP. A duplicate address is [`StoreError::Conflict`]; an unknown
/// tenant or schedule (deleted meanwhile) is [`StoreError::Invalid`].
pub async fn insert_ip(pool: &Pool, ip: &NewIp) -> Result<IpView, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "WITH i AS (
            INSERT INTO smtp_ips (tenant_id, id, address, helo_name, warmup_schedule, timezone)
            VALUES ($1, $2, $3, $4, $5, $6)
            RETURNING *
        )
        SELECT {VIEW_COLUMNS} FROM i {VIEW_JOINS}"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &ip.tenant_id,
                &ip.id,
                &ip.address,
                &ip.helo_name,
                &ip.warmup_schedule,
                &ip.timezone,
            ],
        )
        .await?;
    Ok(view(&row))
}

/// Every IP of every tenant (operator view).
pub async fn all_ips(pool: &Pool) -> Result<Vec<IpView>, StoreError> {
    let client = pool.get().await?;
    let sql =
        format!("SELECT {VIEW_COLUMNS} FROM smtp_ips i {VIEW_JOINS} ORDER BY i.created_at, i.id");
    let stmt = client.prepare_cached(&sql).await?;
    Ok(client.query(&stmt, &[]).await?.iter().map(view).collect())
}

/// The IPs of one tenant.
pub async fn tenant_ips(pool: &Pool, tenant: Uuid) -> Result<Vec<IpView>, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM smtp_ips i {VIEW_JOINS}
         WHERE i.tenant_id = $1 ORDER BY i.created_at, i.id"
    );
    let stmt = client.prepare_cached(&sql).await?;
    Ok(client
        .query(&stmt, &[&tenant])
        .await?
        .iter()
        .map(view)
        .collect())
}

/// One IP of any tenant (operator view); [`StoreError::NotFound`] when absent.
pub async fn ip_by_id(pool: &Pool, id: Uuid) -> Result<IpView, StoreError> {
    let client = pool.get().await?;
    let sql = format!("SELECT {VIEW_COLUMNS} FROM smtp_ips i {VIEW_JOINS} WHERE i.id = $1");
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&id])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(view(&row))
}

/// One IP of one tenant; [`StoreError::NotFound`] when absent or foreign.
pub async fn tenant_ip(pool: &Pool, tenant: Uuid, id: Uuid) -> Result<IpView, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM smtp_ips i {VIEW_JOINS} WHERE i.tenant_id = $1 AND i.id = $2"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&tenant, &id])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(view(&row))
}

/// Which of `ids` are IPs of `tenant` (the others are unknown or foreign).
pub async fn owned_ip_ids(
    pool: &Pool,
    tenant: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT id FROM smtp_ips WHERE tenant_id = $1 AND id = ANY($2)")
        .await?;
    let rows = client.query(&stmt, &[&tenant, &ids]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Whether a warm-up schedule of this name exists.
pub async fn warmup_schedule_exists(pool: &Pool, name: &str) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM warmup_schedules WHERE name = $1)")
        .await?;
    Ok(client.query_one(&stmt, &[&name]).await?.get(0))
}

/// Whether Postgres knows this IANA timezone name (e.g. `Europe/Paris`).
pub async fn timezone_exists(pool: &Pool, name: &str) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)")
        .await?;
    Ok(client.query_one(&stmt, &[&name]).await?.get(0))
}
