//! The campaign gate of [`claim_sending`](super::claim_sending): which offered
//! jobs may start now under their campaign's `send_window` and `daily_cap`,
//! decided inside the claim's transaction.
//!
//! - The campaign rows are held `FOR SHARE` (a pause orders before or after the
//!   claim) and their window is read at the claim's `now` with the SQL
//!   functions of `V13__campaign_windows_caps.sql`, the same arithmetic the
//!   due scan, the Feeder's claim and the API use.
//! - A capped campaign's row of `campaign_day_usage` for its local day is
//!   locked (`INSERT … ON CONFLICT DO UPDATE`, which waits for and then sees
//!   the latest committed count) before its jobs are chosen, and raised by
//!   what was claimed before the transaction commits: two claims of the same
//!   campaign, on any nodes, serialize on that row, so the day's starts never
//!   exceed the cap. Rows are locked in campaign id order (no deadlock).
//! - Within the cap's remainder the offered jobs are taken in priority order
//!   (then `run_at`); suppressed addresses cost nothing (they never start).
//! - What the gate refuses goes back to `pending` with `run_at` at the
//!   campaign's next chance: its window's next opening, or, once its cap is
//!   used, the next local day's first opening.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::GenericClient;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::db::StoreError;

/// One running campaign of a claim, at the claim's `now`.
#[derive(Debug, Clone)]
pub(super) struct Gate {
    pub campaign: Uuid,
    /// Its window is open now (always, without a window).
    pub open: bool,
    /// Its window's next opening (`now` when open).
    pub next_open: OffsetDateTime,
    /// With a cap: the cap, its local day, the day's starts so far and the
    /// first opening of the next local day.
    pub cap: Option<Cap>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Cap {
    pub limit: i32,
    pub day: Date,
    pub started: i32,
    pub next_day_open: OffsetDateTime,
}

impl Gate {
    /// How many more messages the campaign may start now.
    fn left(&self) -> usize {
        match (&self.cap, self.open) {
            (_, false) => 0,
            (None, true) => usize::MAX,
            (Some(cap), true) => (cap.limit - cap.started).max(0) as usize,
        }
    }
}

/// Locks the running campaigns among `campaigns` `FOR SHARE` and returns their
/// gates; a capped campaign whose window is open also has its day's usage row
/// locked until the transaction ends.
pub(super) async fn lock_gates(
    tx: &impl GenericClient,
    tenant: Uuid,
    campaigns: &[Uuid],
    now: OffsetDateTime,
) -> Result<Vec<Gate>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT c.id, c.daily_cap,
                    penguin_window_open(c.send_window, $3),
                    penguin_campaign_day(c.send_window, $3),
                    penguin_window_next(c.send_window, $3),
                    penguin_window_next(c.send_window,
                                        penguin_campaign_next_day(c.send_window, $3))
             FROM campaigns c
             WHERE c.tenant_id = $1 AND c.id = ANY($2) AND c.status = 'running'
             ORDER BY c.id
             FOR SHARE",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tenant, &campaigns, &now]).await?;
    let lock_usage = tx
        .prepare_cached(
            "INSERT INTO campaign_day_usage AS u (tenant_id, campaign_id, day, started)
             VALUES ($1, $2, $3, 0)
             ON CONFLICT (tenant_id, campaign_id, day) DO UPDATE SET started = u.started
             RETURNING u.started",
        )
        .await?;
    let mut gates = Vec::with_capacity(rows.len());
    for row in rows {
        let campaign: Uuid = row.get(0);
        let limit: Option<i32> = row.get(1);
        let open: bool = row.get(2);
        let day: Date = row.get(3);
        let cap = match limit {
            Some(limit) if open => {
                let started: i32 = tx
                    .query_one(&lock_usage, &[&tenant, &campaign, &day])
                    .await?
                    .get(0);
                Some(Cap {
                    limit,
                    day,
                    started,
                    next_day_open: opening(row.get(5), now),
                })
            }
            Some(limit) => Some(Cap {
                limit,
                day,
                started: 0,
                next_day_open: opening(row.get(5), now),
            }),
            None => None,
        };
        gates.push(Gate {
            campaign,
            open,
            next_open: opening(row.get(4), now),
            cap,
        });
    }
    Ok(gates)
}

/// `penguin_window_next` finds an opening within a week of any window the API
/// accepts (`days` is never empty); a day later stands in for a window stored
/// by other means.
fn opening(found: Option<OffsetDateTime>, now: OffsetDateTime) -> OffsetDateTime {
    found.unwrap_or(now + time::Duration::days(1))
}

/// The offered jobs the gates refuse: every job of a closed window, and of a
/// capped campaign those beyond the cap's remainder in priority order (jobs
/// whose address is suppressed are never refused: they end `suppressed`).
pub(super) async fn refused_jobs(
    tx: &impl GenericClient,
    tenant: Uuid,
    jobs: &[Uuid],
    gates: &[Gate],
    now: OffsetDateTime,
) -> Result<HashSet<Uuid>, StoreError> {
    let mut left: HashMap<Uuid, usize> = gates
        .iter()
        .filter(|g| g.left() != usize::MAX)
        .map(|g| (g.campaign, g.left()))
        .collect();
    if left.is_empty() {
        return Ok(HashSet::new());
    }
    let limited: Vec<Uuid> = left.keys().copied().collect();
    let stmt = tx
        .prepare_cached(
            "SELECT j.id, j.campaign_id, s.why IS NOT NULL
             FROM send_jobs j
             JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             LEFT JOIN LATERAL penguin_suppression(l.tenant_id, l.email, $4) s ON true
             WHERE j.tenant_id = $1 AND j.id = ANY($2) AND j.campaign_id = ANY($3)
               AND (j.status = 'queued') IS TRUE
             ORDER BY j.priority, j.run_at, j.id",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tenant, &jobs, &limited, &now]).await?;
    let mut refused = HashSet::new();
    for row in rows {
        let (job, campaign, suppressed): (Uuid, Uuid, bool) = (row.get(0), row.get(1), row.get(2));
        if suppressed {
            continue;
        }
        match left.get_mut(&campaign) {
            Some(0) => {
                refused.insert(job);
            }
            Some(n) => *n -= 1,
            None => {}
        }
    }
    Ok(refused)
}

/// Adds what the claim started to each capped campaign's day (rows locked by
/// [`lock_gates`]) and returns, per campaign whose jobs must wait, until when:
/// a closed window's next opening; a used cap's next local day's opening.
pub(super) async fn record_starts(
    tx: &impl GenericClient,
    tenant: Uuid,
    gates: &mut [Gate],
    started: &HashMap<Uuid, i32>,
) -> Result<Vec<(Uuid, OffsetDateTime)>, StoreError> {
    let raise = tx
        .prepare_cached(
            "UPDATE campaign_day_usage SET started = started + $4
             WHERE tenant_id = $1 AND campaign_id = $2 AND day = $3",
        )
        .await?;
    let mut waits = Vec::new();
    for gate in gates.iter_mut() {
        if !gate.open {
            waits.push((gate.campaign, gate.next_open));
            continue;
        }
        let Some(cap) = gate.cap.as_mut() else {
            continue;
        };
        let n = started.get(&gate.campaign).copied().unwrap_or(0);
        if n > 0 {
            tx.execute(&raise, &[&tenant, &gate.campaign, &cap.day, &n])
                .await?;
            cap.started += n;
        }
        if cap.started >= cap.limit {
            waits.push((gate.campaign, cap.next_day_open));
        }
    }
    Ok(waits)
}
