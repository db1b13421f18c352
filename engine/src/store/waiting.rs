//! What a campaign's jobs wait for, as facts for `GET /v1/campaigns/{id}`
//! (`waiting_reason`, `next_send_at`): its send window and daily cap at a
//! given time (with the SQL functions of `V13__campaign_windows_caps.sql`, the
//! very arithmetic the engine's due scan and claims use), its IPs' pauses, and
//! its first waiting job. One statement, every part an indexed lookup: the
//! campaign by key, its day's `campaign_day_usage` row by key, its IPs by key,
//! its first waiting job on `send_jobs_waiting`, one in-flight job on
//! `send_jobs_campaign_status`.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// A campaign's waiting state at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitFacts {
    /// Its send window is open (always, without one).
    pub window_open: bool,
    /// The window's next opening (the instant itself when open).
    pub window_next: Option<OffsetDateTime>,
    /// It has a daily cap and today's starts (campaign-local day) reached it.
    pub cap_used: bool,
    /// The next local day's first opening of the window.
    pub next_day_open: Option<OffsetDateTime>,
    /// Every IP of its pool is paused.
    pub ips_paused: bool,
    /// The earliest end of an automatic IP pause among its pool.
    pub ips_resume: Option<OffsetDateTime>,
    /// Its first waiting (`pending`/`deferred`) job by `run_at`: when, and
    /// whether it is `pending` (a `deferred` one waits for its retry).
    pub first_waiting: Option<(OffsetDateTime, bool)>,
    /// Some job is `queued` or `sending`.
    pub in_flight: bool,
}

/// The [`WaitFacts`] of `campaign` at `at` (`None`: no such campaign of `tenant`).
pub async fn wait_facts(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
    at: OffsetDateTime,
) -> Result<Option<WaitFacts>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT penguin_window_open(c.send_window, $3),
                    penguin_window_next(c.send_window, $3),
                    c.daily_cap IS NOT NULL AND coalesce(u.started, 0) >= c.daily_cap,
                    penguin_window_next(c.send_window,
                                        penguin_campaign_next_day(c.send_window, $3)),
                    ips.all_paused,
                    ips.resume,
                    first.run_at,
                    first.status = 'pending',
                    EXISTS (SELECT 1 FROM send_jobs f
                            WHERE f.tenant_id = c.tenant_id AND f.campaign_id = c.id
                              AND f.status IN ('queued', 'sending'))
             FROM campaigns c
             LEFT JOIN campaign_day_usage u
                    ON u.tenant_id = c.tenant_id AND u.campaign_id = c.id
                   AND u.day = penguin_campaign_day(c.send_window, $3)
             CROSS JOIN LATERAL (
                 SELECT coalesce(bool_and(i.status <> 'active'), false) AS all_paused,
                        min(i.paused_until) FILTER (WHERE i.status <> 'active'
                                                      AND i.paused_until > $3) AS resume
                 FROM smtp_ips i
                 WHERE i.tenant_id = c.tenant_id AND i.id = ANY(c.ip_ids)) AS ips
             LEFT JOIN LATERAL (
                 SELECT j.run_at, j.status FROM send_jobs j
                 WHERE j.tenant_id = c.tenant_id AND j.campaign_id = c.id
                   AND j.status IN ('pending', 'deferred')
                 ORDER BY j.run_at LIMIT 1) AS first ON true
             WHERE c.tenant_id = $1 AND c.id = $2",
        )
        .await?;
    let Some(row) = client.query_opt(&stmt, &[&tenant, &campaign, &at]).await? else {
        return Ok(None);
    };
    let first_at: Option<OffsetDateTime> = row.get(6);
    let first_pending: Option<bool> = row.get(7);
    Ok(Some(WaitFacts {
        window_open: row.get(0),
        window_next: row.get(1),
        cap_used: row.get(2),
        next_day_open: row.get(3),
        ips_paused: row.get(4),
        ips_resume: row.get(5),
        first_waiting: first_at.map(|at| (at, first_pending.unwrap_or(false))),
        in_flight: row.get(8),
    }))
}
