//! Per-IP usage against its allowance (`ip_hourly_usage`) and the IP-local calendar.
//! Postgres holds what was reserved per IP-local hour; it is written in the same
//! transaction that claims the jobs (see [`crate::store::ledger::claim_sending`]) and
//! read back to rebuild the Redis counters when they are missing.

use deadpool_postgres::Pool;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::db::StoreError;

/// The IP-local hour containing some instant, with its day's bounds (in UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalHour {
    pub day: Date,
    /// 0..=23
    pub hour: u8,
    pub hour_start: OffsetDateTime,
    pub hour_end: OffsetDateTime,
    pub day_start: OffsetDateTime,
    pub day_end: OffsetDateTime,
}

impl LocalHour {
    /// Whether `now` still falls in this hour.
    pub fn contains(&self, now: OffsetDateTime) -> bool {
        self.hour_start <= now && now < self.hour_end
    }

    /// The UTC instant local hour `hour` of this day starts (hours are taken as
    /// whole hours after the local midnight; a DST shift moves them by one hour).
    pub fn start_of_hour(&self, hour: u8) -> OffsetDateTime {
        self.day_start + time::Duration::hours(i64::from(hour))
    }
}

/// Postgres knows every IANA zone and its DST rules; the engine asks it once per
/// IP-local hour.
pub async fn local_hour(
    pool: &Pool,
    timezone: &str,
    at: OffsetDateTime,
) -> Result<LocalHour, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT l::date, extract(hour FROM l)::int,
                    date_trunc('hour', l) AT TIME ZONE $1,
                    (date_trunc('hour', l) + interval '1 hour') AT TIME ZONE $1,
                    l::date::timestamp AT TIME ZONE $1,
                    (l::date + 1)::timestamp AT TIME ZONE $1
             FROM (SELECT $2::timestamptz AT TIME ZONE $1 AS l) AS x",
        )
        .await?;
    let row = client.query_one(&stmt, &[&timezone, &at]).await?;
    let hour: i32 = row.get(1);
    Ok(LocalHour {
        day: row.get(0),
        hour: hour as u8,
        hour_start: row.get(2),
        hour_end: row.get(3),
        day_start: row.get(4),
        day_end: row.get(5),
    })
}

/// What an IP reserved on one local day: the day's total and the given hour's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayUsage {
    pub day_total: i64,
    pub hour_total: i64,
}

pub async fn usage(
    pool: &Pool,
    tenant: Uuid,
    ip: Uuid,
    day: Date,
    hour_start: OffsetDateTime,
) -> Result<DayUsage, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT coalesce(sum(reserved), 0)::int8,
                    coalesce(sum(reserved) FILTER (WHERE hour = $4), 0)::int8
             FROM ip_hourly_usage WHERE tenant_id = $1 AND ip_id = $2 AND day = $3",
        )
        .await?;
    let row = client
        .query_one(&stmt, &[&tenant, &ip, &day, &hour_start])
        .await?;
    Ok(DayUsage {
        day_total: row.get(0),
        hour_total: row.get(1),
    })
}

/// Per-hour usage of one IP-local day, `(hour start, reserved)` in order.
pub async fn hours_of_day(
    pool: &Pool,
    tenant: Uuid,
    ip: Uuid,
    day: Date,
) -> Result<Vec<(OffsetDateTime, i64)>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT hour, reserved::int8 FROM ip_hourly_usage
             WHERE tenant_id = $1 AND ip_id = $2 AND day = $3 ORDER BY hour",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenant, &ip, &day]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
