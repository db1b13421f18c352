//! Warm-up schedules (`warmup_schedules`): ramps of messages per day for day
//! 1..N, the last value being the ceiling. Shared by every tenant; the built-in
//! `conservative`, `aggressive` and `transactional` come with the schema
//! (`builtin`), others are added through the control API
//! (`/v1/warmup-schedules`, operator only). A schedule is never changed once
//! created: IPs on it keep their ramp.

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::db::StoreError;

/// One schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub name: String,
    /// Messages per day for day 1..N (1..=365 values).
    pub daily_volumes: Vec<i32>,
    pub builtin: bool,
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "name, daily_volumes, builtin, created_at";

fn schedule(row: &Row) -> Schedule {
    Schedule {
        name: row.get(0),
        daily_volumes: row.get(1),
        builtin: row.get(2),
        created_at: row.get(3),
    }
}

/// Every schedule, the built-ins first, then by name.
pub async fn list(pool: &Pool) -> Result<Vec<Schedule>, StoreError> {
    let client = pool.get().await?;
    let sql = format!("SELECT {COLUMNS} FROM warmup_schedules ORDER BY builtin DESC, name");
    let stmt = client.prepare_cached(&sql).await?;
    Ok(client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(schedule)
        .collect())
}

/// One schedule by name; [`StoreError::NotFound`] when absent.
pub async fn get(pool: &Pool, name: &str) -> Result<Schedule, StoreError> {
    let client = pool.get().await?;
    let sql = format!("SELECT {COLUMNS} FROM warmup_schedules WHERE name = $1");
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&name])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(schedule(&row))
}

/// Adds a schedule (never built-in). A taken name is [`StoreError::Conflict`];
/// a name or volumes the schema refuses are [`StoreError::Invalid`] (callers
/// validate first).
pub async fn insert(
    pool: &Pool,
    name: &str,
    daily_volumes: &[i32],
) -> Result<Schedule, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "INSERT INTO warmup_schedules (name, daily_volumes) VALUES ($1, $2) RETURNING {COLUMNS}"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let row = client.query_one(&stmt, &[&name, &daily_volumes]).await?;
    Ok(schedule(&row))
}
