//! Tenant-owned SMTP IPs as the control API writes and shows them.
//!
//! Reads come in two forms: the operator's (any tenant: [`all_ips`], [`ip_by_id`])
//! and a tenant's (always filtered by `tenant_id`: [`tenant_ips`], [`tenant_ip`],
//! [`owned_ip_ids`]). Every [`IpView`] is one row of one query, whatever the
//! number of IPs: the IP, its schedule, and — for the IP-local hour and day of
//! the `now` the caller passes (the engine's clock, the API's wall clock) — what
//! it reserved (`ip_hourly_usage`), today's outcome rollup (`ip_daily_stats`) and
//! its latest warm-up decision (`warmup_history`). The local calendar is computed
//! in SQL exactly as [`crate::store::usage::local_hour`] does.
//! [`set_status`] pauses or resumes an IP by hand.

use std::net::IpAddr;

use deadpool_postgres::{GenericClient, Pool};
use time::{Date, OffsetDateTime};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::StoreError;
use crate::health::Rates;

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
    /// The local hours it sends in, `[start, end)`: 0..=23, 1..=24, start < end.
    pub active_hours_start: u8,
    pub active_hours_end: u8,
}

/// One IP with its limits' inputs at some instant `now`.
#[derive(Debug, Clone, PartialEq)]
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
    /// The schedule's messages per day for day 1..N; `None` without a schedule.
    pub schedule_volumes: Option<Vec<i32>>,
    pub timezone: String,
    pub active_hours_start: u8,
    pub active_hours_end: u8,
    /// The end of an automatic (health) pause; `None` = until resumed.
    pub paused_until: Option<OffsetDateTime>,
    /// The health factor on its allowance and rate, in (0, 1].
    pub rate_factor: f64,
    pub created_at: OffsetDateTime,
    /// The IP-local day and hour (0..=23) of `now`.
    pub local_day: Date,
    pub local_hour: u8,
    /// Sends reserved on the local day and in the local hour of `now`.
    pub sent_today: i64,
    pub sent_this_hour: i64,
    /// Outcomes of the local day so far (`ip_daily_stats`).
    pub today: Rates,
    pub last_warmup: Option<WarmupDecision>,
}

/// One judged day of `warmup_history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmupDecision {
    pub day: Date,
    /// `advance`, `hold`, `step_back` or `rewarm`.
    pub decision: String,
    pub from_day: i32,
    pub to_day: i32,
    pub sent: i64,
    pub allowance: Option<i64>,
    pub reason: String,
    pub decided_at: OffsetDateTime,
}

/// A status change by hand ([`set_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    /// `paused` with this reason, until resumed (`paused_until` cleared).
    Pause { reason: String },
    /// `active`, reason and `paused_until` cleared; `rate_factor` kept.
    Resume,
}

/// The columns of [`IpView`], read from a relation aliased `i` at `$1` (now).
const VIEW_COLUMNS: &str = "i.tenant_id, i.id, i.address, i.helo_name, i.status, i.status_reason,
        i.warmup_schedule, i.warmup_day, w.daily_volumes, i.timezone,
        i.active_hours_start, i.active_hours_end, i.paused_until, i.rate_factor::float8,
        i.created_at, l.day, l.hour,
        coalesce(u.day_total, 0)::int8, coalesce(u.hour_total, 0)::int8,
        coalesce(s.sent, 0)::int8, coalesce(s.bounced, 0)::int8,
        coalesce(s.deferred, 0)::int8, coalesce(s.complaints, 0)::int8,
        h.day, h.decision, h.from_day, h.to_day, h.sent, h.allowance, h.reason, h.decided_at";

/// The joins [`VIEW_COLUMNS`] needs: the local calendar of `$1` in the IP's
/// timezone (as `store::usage::local_hour`), then one index probe per table.
const VIEW_JOINS: &str = "LEFT JOIN warmup_schedules w ON w.name = i.warmup_schedule
        CROSS JOIN LATERAL (SELECT $1::timestamptz AT TIME ZONE i.timezone AS t) AS lt
        CROSS JOIN LATERAL (
            SELECT lt.t::date AS day, extract(hour FROM lt.t)::int AS hour,
                   date_trunc('hour', lt.t) AT TIME ZONE i.timezone AS hour_start
        ) AS l
        CROSS JOIN LATERAL (
            SELECT sum(x.reserved) AS day_total,
                   sum(x.reserved) FILTER (WHERE x.hour = l.hour_start) AS hour_total
            FROM ip_hourly_usage x
            WHERE x.tenant_id = i.tenant_id AND x.ip_id = i.id AND x.day = l.day
        ) AS u
        LEFT JOIN ip_daily_stats s
            ON s.tenant_id = i.tenant_id AND s.ip_id = i.id AND s.day = l.day
        LEFT JOIN LATERAL (
            SELECT y.day, y.decision, y.from_day, y.to_day, y.sent, y.allowance, y.reason,
                   y.decided_at
            FROM warmup_history y
            WHERE y.tenant_id = i.tenant_id AND y.ip_id = i.id
            ORDER BY y.day DESC LIMIT 1
        ) AS h ON true";

fn view(row: &Row) -> IpView {
    let hours = |index: usize| row.get::<_, i16>(index).clamp(0, 24) as u8;
    let count = |index: usize| row.get::<_, i64>(index).max(0) as u64;
    let local_hour: i32 = row.get(16);
    let last_warmup = row.get::<_, Option<Date>>(23).map(|day| WarmupDecision {
        day,
        decision: row.get(24),
        from_day: row.get(25),
        to_day: row.get(26),
        sent: row.get(27),
        allowance: row.get(28),
        reason: row.get(29),
        decided_at: row.get(30),
    });
    IpView {
        tenant_id: row.get(0),
        id: row.get(1),
        address: row.get(2),
        helo_name: row.get(3),
        status: row.get(4),
        status_reason: row.get(5),
        warmup_schedule: row.get(6),
        warmup_day: row.get(7),
        schedule_volumes: row.get(8),
        timezone: row.get(9),
        active_hours_start: hours(10),
        active_hours_end: hours(11),
        paused_until: row.get(12),
        rate_factor: row.get(13),
        created_at: row.get(14),
        local_day: row.get(15),
        local_hour: local_hour.clamp(0, 23) as u8,
        sent_today: row.get(17),
        sent_this_hour: row.get(18),
        today: Rates {
            sent: count(19),
            bounced: count(20),
            deferred: count(21),
            complaints: count(22),
        },
        last_warmup,
    }
}

/// Inserts an IP and returns its view at `now`. A duplicate address is
/// [`StoreError::Conflict`]; an unknown tenant or schedule (deleted meanwhile) is
/// [`StoreError::Invalid`].
pub async fn insert_ip(pool: &Pool, ip: &NewIp, now: OffsetDateTime) -> Result<IpView, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "WITH i AS (
            INSERT INTO smtp_ips (tenant_id, id, address, helo_name, warmup_schedule, timezone,
                                  active_hours_start, active_hours_end)
            VALUES ($2, $3, $4, $5, $6, $7, $8, $9)
            RETURNING *
        )
        SELECT {VIEW_COLUMNS} FROM i {VIEW_JOINS}"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let (start, end) = (
        i16::from(ip.active_hours_start),
        i16::from(ip.active_hours_end),
    );
    let row = client
        .query_one(
            &stmt,
            &[
                &now,
                &ip.tenant_id,
                &ip.id,
                &ip.address,
                &ip.helo_name,
                &ip.warmup_schedule,
                &ip.timezone,
                &start,
                &end,
            ],
        )
        .await?;
    Ok(view(&row))
}

/// Every IP of every tenant (operator view) at `now`.
pub async fn all_ips(pool: &Pool, now: OffsetDateTime) -> Result<Vec<IpView>, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM smtp_ips i {VIEW_JOINS} WHERE i.status <> 'retired' ORDER BY i.created_at, i.id"
    );
    let stmt = client.prepare_cached(&sql).await?;
    Ok(client
        .query(&stmt, &[&now])
        .await?
        .iter()
        .map(view)
        .collect())
}

/// The IPs of one tenant at `now`.
pub async fn tenant_ips(
    client: &impl GenericClient,
    tenant: Uuid,
    now: OffsetDateTime,
) -> Result<Vec<IpView>, StoreError> {
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM smtp_ips i {VIEW_JOINS}
         WHERE i.tenant_id = $2 AND i.status <> 'retired' ORDER BY i.created_at, i.id"
    );
    let stmt = client.prepare_cached(&sql).await?;
    Ok(client
        .query(&stmt, &[&now, &tenant])
        .await?
        .iter()
        .map(view)
        .collect())
}

/// One IP of any tenant (operator view); [`StoreError::NotFound`] when absent.
pub async fn ip_by_id(pool: &Pool, id: Uuid, now: OffsetDateTime) -> Result<IpView, StoreError> {
    let client = pool.get().await?;
    let sql = format!("SELECT {VIEW_COLUMNS} FROM smtp_ips i {VIEW_JOINS} WHERE i.id = $2");
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&now, &id])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(view(&row))
}

/// One IP of one tenant; [`StoreError::NotFound`] when absent or foreign.
pub async fn tenant_ip(
    client: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<IpView, StoreError> {
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM smtp_ips i {VIEW_JOINS} WHERE i.tenant_id = $2 AND i.id = $3"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&now, &tenant, &id])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(view(&row))
}

/// Pauses or resumes IP `id` — of `owner` only, when given — and returns its view
/// at `now`. Idempotent. [`StoreError::NotFound`] when absent or foreign.
pub async fn set_status(
    client: &impl GenericClient,
    owner: Option<Uuid>,
    id: Uuid,
    change: &StatusChange,
    now: OffsetDateTime,
) -> Result<IpView, StoreError> {
    let (status, reason) = match change {
        StatusChange::Pause { reason } => ("paused", Some(reason.as_str())),
        StatusChange::Resume => ("active", None),
    };
    let sql = format!(
        "WITH i AS (
            UPDATE smtp_ips SET status = $4, status_reason = $5, paused_until = NULL
            WHERE id = $2 AND ($3::uuid IS NULL OR tenant_id = $3) AND status <> 'retired'
            RETURNING *
        )
        SELECT {VIEW_COLUMNS} FROM i {VIEW_JOINS}"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&now, &id, &owner, &status, &reason])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(view(&row))
}

/// Which of `ids` are IPs of `tenant` that are not retired (the others are
/// unknown, foreign or retired). The rows stay locked `FOR SHARE` until the
/// caller's transaction ends, so a campaign that names them and an IP's
/// retirement ([`crate::store::ip_retire`]) order one after the other.
pub async fn owned_ip_ids(
    client: &impl GenericClient,
    tenant: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT id FROM smtp_ips WHERE tenant_id = $1 AND id = ANY($2) AND status <> 'retired'
             FOR SHARE",
        )
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
