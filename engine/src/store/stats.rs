//! Read-only statistics for the control API: a campaign's recent activity and
//! engagement (`GET /v1/campaigns/{id}`: `rates`, `eta`), and per-day rows for
//! a campaign, an IP and a tenant (`GET /v1/campaigns/{id}/stats`,
//! `GET /v1/ips/{id}/stats`, `GET /v1/stats`).
//!
//! Sources: the delivery outcomes per day come from the rollups the Analytics
//! actor and the complaint route write (`campaign_daily_stats`, UTC days;
//! `ip_daily_stats`, with `complaints`). Nothing rolls up opens, clicks,
//! unsubscribes or complaints per campaign, so those are counted from the
//! campaign's engagement events (an index-only range of the partial index
//! `delivery_events_engagement`, V7); the tenant-wide rows leave them out.
//! Replies (`POST /v1/replies`, at most one `replied` event per job) are summed
//! from the per-step rollup `campaign_step_stats` for a campaign's activity, and
//! counted from its `replied` events for the day rows (a separate range of the
//! same partial index, which V16 extended to `replied`).
//!
//! Guarantees: every query filters by `tenant_id`; a campaign or IP that is
//! absent or another tenant's is [`StoreError::NotFound`]; day rows cover every
//! day of the range, in order, days without rows as zeros.

use deadpool_postgres::GenericClient;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::db::StoreError;

/// A campaign's delivery events seen by the rates of `GET /v1/campaigns/{id}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// `sent` outcomes in the recent window.
    pub sent_recent: i64,
    /// Final outcomes (`sent`, `bounced`, `failed`, `suppressed`) in the recent
    /// window: jobs that left the queue for good.
    pub finished_recent: i64,
    /// `complaint` events (at most one per job).
    pub complaints: i64,
    /// `unsubscribed` events (one per address newly suppressed).
    pub unsubscribes: i64,
    /// Jobs with an `open` event (at most one per job).
    pub opened: i64,
    /// Jobs with at least one `click` event.
    pub clicked: i64,
    /// Jobs with a `replied` event (at most one per job).
    pub replied: i64,
}

/// The activity of `campaign` (of `tenant`): outcomes of the whole minutes in
/// `[since, until)` (`campaign_minute_stats`) and engagement (its events of the
/// partial index `delivery_events_engagement`, V7). Neither reads the
/// campaign's delivery events.
pub async fn campaign_activity(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
    since: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<Activity, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT (SELECT coalesce(sum(sent), 0)::int8 FROM campaign_minute_stats
                     WHERE tenant_id = $1 AND campaign_id = $2 AND minute >= $3 AND minute < $4),
                    (SELECT coalesce(sum(finished), 0)::int8 FROM campaign_minute_stats
                     WHERE tenant_id = $1 AND campaign_id = $2 AND minute >= $3 AND minute < $4),
                    count(*) FILTER (WHERE kind = 'complaint'),
                    count(*) FILTER (WHERE kind = 'unsubscribed'),
                    count(*) FILTER (WHERE kind = 'open'),
                    count(DISTINCT job_id) FILTER (WHERE kind = 'click'),
                    (SELECT coalesce(sum(replied), 0)::int8 FROM campaign_step_stats
                     WHERE tenant_id = $1 AND campaign_id = $2)
             FROM delivery_events
             WHERE tenant_id = $1 AND campaign_id = $2
               AND kind IN ('open', 'click', 'complaint', 'unsubscribed')",
        )
        .await?;
    let row = client
        .query_one(&stmt, &[&tenant, &campaign, &since, &until])
        .await?;
    Ok(Activity {
        sent_recent: row.get(0),
        finished_recent: row.get(1),
        complaints: row.get(2),
        unsubscribes: row.get(3),
        opened: row.get(4),
        clicked: row.get(5),
        replied: row.get(6),
    })
}

/// The counts of one day. Which fields a route fills is said where it is read:
/// engagement only for a campaign, `complaints` for a campaign and an IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCounts {
    pub day: Date,
    pub sent: i64,
    pub deferred: i64,
    pub bounced: i64,
    pub failed: i64,
    pub complaints: i64,
    pub unsubscribes: i64,
    pub opens: i64,
    pub clicks: i64,
    pub replies: i64,
}

fn day_counts(row: &tokio_postgres::Row) -> DayCounts {
    DayCounts {
        day: row.get(0),
        sent: row.get(1),
        deferred: row.get(2),
        bounced: row.get(3),
        failed: row.get(4),
        complaints: row.get(5),
        unsubscribes: row.get(6),
        opens: row.get(7),
        clicks: row.get(8),
        replies: row.get(9),
    }
}

/// Per UTC day from `from` to `to` (inclusive) of `campaign`: outcomes from
/// `campaign_daily_stats`; complaints, unsubscribes, opens, clicks (events;
/// a click is one per job and link) and replies from `delivery_events` by
/// `created_at`.
pub async fn campaign_days(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
    from: Date,
    to: Date,
) -> Result<Vec<DayCounts>, StoreError> {
    super::campaigns::ensure_exists(client, tenant, campaign).await?;
    let stmt = client
        .prepare_cached(
            "WITH days AS (
                 SELECT d::date AS day FROM generate_series($3::date, $4::date, interval '1 day') d
             ), engagement AS (
                 SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
                        count(*) FILTER (WHERE kind = 'complaint') AS complaints,
                        count(*) FILTER (WHERE kind = 'unsubscribed') AS unsubscribes,
                        count(*) FILTER (WHERE kind = 'open') AS opens,
                        count(*) FILTER (WHERE kind = 'click') AS clicks
                 FROM delivery_events
                 WHERE tenant_id = $1 AND campaign_id = $2
                   AND kind IN ('complaint', 'unsubscribed', 'open', 'click')
                   AND created_at >= ($3::date)::timestamp AT TIME ZONE 'UTC'
                   AND created_at < ($4::date + 1)::timestamp AT TIME ZONE 'UTC'
                 GROUP BY 1
             ), replies AS (
                 SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS replies
                 FROM delivery_events
                 WHERE tenant_id = $1 AND campaign_id = $2 AND kind = 'replied'
                   AND created_at >= ($3::date)::timestamp AT TIME ZONE 'UTC'
                   AND created_at < ($4::date + 1)::timestamp AT TIME ZONE 'UTC'
                 GROUP BY 1
             )
             SELECT days.day, coalesce(s.sent, 0), coalesce(s.deferred, 0),
                    coalesce(s.bounced, 0), coalesce(s.failed, 0),
                    coalesce(e.complaints, 0), coalesce(e.unsubscribes, 0),
                    coalesce(e.opens, 0), coalesce(e.clicks, 0), coalesce(r.replies, 0)
             FROM days
             LEFT JOIN campaign_daily_stats s
                    ON s.tenant_id = $1 AND s.campaign_id = $2 AND s.day = days.day
             LEFT JOIN engagement e ON e.day = days.day
             LEFT JOIN replies r ON r.day = days.day
             ORDER BY days.day",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&tenant, &campaign, &from, &to])
        .await?;
    Ok(rows.iter().map(day_counts).collect())
}

/// Per day from `from` to `to` (inclusive) of the IP `ip` from `ip_daily_stats`
/// (its `day` as recorded): outcomes and complaints. `owner` `None` is the
/// admin (any IP); `Some(tenant)` sees only that tenant's IPs.
pub async fn ip_days(
    client: &impl GenericClient,
    owner: Option<Uuid>,
    ip: Uuid,
    from: Date,
    to: Date,
) -> Result<Vec<DayCounts>, StoreError> {
    let find = client
        .prepare_cached(
            "SELECT tenant_id FROM smtp_ips WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)",
        )
        .await?;
    let Some(found) = client.query_opt(&find, &[&ip, &owner]).await? else {
        return Err(StoreError::NotFound);
    };
    let tenant: Uuid = found.get(0);
    let stmt = client
        .prepare_cached(
            "SELECT d::date, coalesce(s.sent, 0), coalesce(s.deferred, 0),
                    coalesce(s.bounced, 0), coalesce(s.failed, 0), coalesce(s.complaints, 0),
                    0::int8, 0::int8, 0::int8, 0::int8
             FROM generate_series($3::date, $4::date, interval '1 day') d
             LEFT JOIN ip_daily_stats s
                    ON s.tenant_id = $1 AND s.ip_id = $2 AND s.day = d::date
             ORDER BY 1",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenant, &ip, &from, &to]).await?;
    Ok(rows.iter().map(day_counts).collect())
}

/// Per UTC day from `from` to `to` (inclusive): the outcomes of every campaign
/// of `tenant` summed (`campaign_daily_stats`); no engagement.
pub async fn tenant_days(
    client: &impl GenericClient,
    tenant: Uuid,
    from: Date,
    to: Date,
) -> Result<Vec<DayCounts>, StoreError> {
    let stmt = client
        .prepare_cached(
            "WITH sums AS (
                 SELECT day, sum(sent)::int8 AS sent, sum(deferred)::int8 AS deferred,
                        sum(bounced)::int8 AS bounced, sum(failed)::int8 AS failed
                 FROM campaign_daily_stats
                 WHERE tenant_id = $1 AND day BETWEEN $2 AND $3
                 GROUP BY day
             )
             SELECT d::date, coalesce(s.sent, 0), coalesce(s.deferred, 0),
                    coalesce(s.bounced, 0), coalesce(s.failed, 0), 0::int8, 0::int8, 0::int8,
                    0::int8, 0::int8
             FROM generate_series($2::date, $3::date, interval '1 day') d
             LEFT JOIN sums s ON s.day = d::date
             ORDER BY 1",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenant, &from, &to]).await?;
    Ok(rows.iter().map(day_counts).collect())
}
