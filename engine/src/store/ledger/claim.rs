//! Claim: the two steps that take a job from the backlog to SMTP.
//!
//! - [`claim_due`] (Feeder): `pending|deferred → queued`, due jobs of running
//!   campaigns, `FOR UPDATE SKIP LOCKED` so nodes never claim the same job;
//!   [`claim_due_urgent`] the same for the urgent lane only (priority ≤ 50).
//! - [`claim_sending`] (Ip actor, right before SMTP): `queued → sending`, only while
//!   the campaign row is `running` under `FOR SHARE` — a pause (row lock) therefore
//!   orders strictly before or after every claim. Jobs of campaigns that are not
//!   running go back to `pending`; suppressed addresses end `suppressed`.
//!   A campaign's `send_window` and `daily_cap` are checked, and the cap's
//!   day counted, in the same transaction (`gate.rs`): what they refuse goes
//!   back to `pending` until the campaign's next chance.
//!
//! The Feeder's claim takes only campaigns whose window is open and whose cap
//! is not used (`penguin_campaign_ready`, V13), so a closed campaign's jobs
//! stay in Postgres; the Ip's claim is the exact check (the cap may fill
//! between the two).
//!
//! Both hold the tenant's fence at the caller's epoch ([`hold`]).

use std::collections::HashMap;

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::payload::{JobPayload, JobV1};
use crate::store::fences::{Epoch, fenced_transaction, hold};

use super::gate;

/// Claims up to `limit` due jobs of `tenant` (`pending|deferred → queued`) in
/// priority order and returns them as payloads ready for Redis. Jobs of a
/// campaign outside its send window or over its daily cap, or whose IPs are
/// all paused, stay in Postgres: in Redis they would only
/// fill the tenant's window and starve its other IPs until the pause ends.
pub async fn claim_due(
    pool: &Pool,
    tenant: Uuid,
    epoch: Epoch,
    limit: usize,
    now: OffsetDateTime,
) -> Result<Vec<JobPayload>, StoreError> {
    claim_due_upto(pool, tenant, epoch, limit, i32::MAX, now).await
}

/// [`claim_due`] limited to the urgent lane (priority ≤
/// [`URGENT_MAX_PRIORITY`](crate::domain::URGENT_MAX_PRIORITY)): the Feeder
/// takes these even for a tenant whose Redis window is full, so an urgent job
/// never waits for bulk to drain the window. The same indexed scan
/// (`send_jobs_due` is ordered by priority), cut short at the lane's bound.
pub async fn claim_due_urgent(
    pool: &Pool,
    tenant: Uuid,
    epoch: Epoch,
    limit: usize,
    now: OffsetDateTime,
) -> Result<Vec<JobPayload>, StoreError> {
    let max_priority = crate::domain::URGENT_MAX_PRIORITY;
    claim_due_upto(pool, tenant, epoch, limit, max_priority, now).await
}

/// [`claim_due`] of the jobs whose priority is at most `max_priority`.
async fn claim_due_upto(
    pool: &Pool,
    tenant: Uuid,
    epoch: Epoch,
    limit: usize,
    max_priority: i32,
    now: OffsetDateTime,
) -> Result<Vec<JobPayload>, StoreError> {
    let mut client = pool.get().await?;
    let tx = fenced_transaction(&mut client).await?;
    if hold(&tx, &[tenant], &[epoch]).await?.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = tx
        .prepare_cached(
            "WITH ready AS MATERIALIZED (
                SELECT c.id FROM campaigns c
                WHERE c.tenant_id = $1 AND c.status = 'running'
                  AND EXISTS (SELECT 1 FROM smtp_ips i
                              WHERE i.tenant_id = c.tenant_id AND i.id = ANY(c.ip_ids)
                                AND i.status = 'active')
                  AND penguin_campaign_ready(c.tenant_id, c.id, c.send_window, c.daily_cap, $3)
                      <= $3
            ), due AS (
                SELECT j.tenant_id, j.id
                FROM send_jobs j
                WHERE j.tenant_id = $1
                  AND j.status IN ('pending', 'deferred')
                  AND j.run_at <= $3
                  AND j.priority <= $4
                  AND j.campaign_id IN (SELECT id FROM ready)
                ORDER BY j.priority, j.run_at
                LIMIT $2
                FOR UPDATE OF j SKIP LOCKED
            )
            UPDATE send_jobs j
            SET status = 'queued', queued_at = $3, updated_at = $3
            FROM due, leads l
            WHERE j.tenant_id = due.tenant_id AND j.id = due.id
              AND l.tenant_id = j.tenant_id AND l.id = j.lead_id
            RETURNING j.id, j.campaign_id, j.priority, j.attempts - j.retry_base, l.email, l.fields::text,
                      (extract(epoch FROM j.run_at) * 1000)::int8",
        )
        .await?;
    let rows = tx
        .query(&stmt, &[&tenant, &(limit as i64), &now, &max_priority])
        .await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|row| {
            JobPayload::V1(JobV1 {
                job_id: row.get(0),
                tenant_id: tenant,
                campaign_id: row.get(1),
                priority: row.get(2),
                attempts: row.get(3),
                recipient: row.get(4),
                fields_json: row.get(5),
                due_ms: row.get(6),
            })
        })
        .collect())
}

/// The id one [`claim_sending`] stamps on the jobs it claims; every write that
/// ends their attempt must carry it.
pub type ClaimId = Uuid;

/// A job [`claim_sending`] claimed, with what its attempt needs from Postgres.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClaimedJob {
    pub job: Uuid,
    /// When its first attempt began (this one, for a first attempt).
    pub first_attempt: OffsetDateTime,
    /// Its step in the campaign's sequence (1: the first email).
    pub step: i32,
    /// The Message-IDs of the lead's earlier steps, oldest first (empty for
    /// step 1): its `In-Reply-To` is the last, its `References` all of them.
    pub thread: Vec<String>,
}

/// What [`claim_sending`] did with the jobs it was offered.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SendingClaim {
    /// This claim's id, stamped on every job in `claimed` (`send_jobs.claim`).
    pub claim: ClaimId,
    /// Now `sending` on the given IP: deliver exactly these.
    pub claimed: Vec<ClaimedJob>,
    /// Their address is on the tenant's suppression list: now `suppressed`, never sent.
    pub suppressed: Vec<Uuid>,
    /// Their lead's sequence was stopped (a reply) after they were queued:
    /// now `cancelled`, never sent.
    pub stopped: usize,
    /// Their campaign was not running, its send window was closed or its daily
    /// cap used: returned to `pending` for a later feed (the latter two with
    /// `run_at` at the campaign's next chance).
    pub released: usize,
    /// The tenant's epoch moved on (another node took it over): nothing was
    /// claimed, released or counted.
    pub fenced: bool,
}

/// Claims `queued → sending` for `(job, ip)` pairs of one tenant under `epoch`
/// (recorded as the jobs' `fence`, with a fresh [`ClaimId`] as their `claim`;
/// nothing happens if the epoch moved on), only for jobs whose
/// campaign is `running` (row held `FOR SHARE` for the statement's transaction).
/// A job whose address is suppressed ends `suppressed` instead, in the same
/// statement: the tenant's list and the global one, for the address and its
/// domain, entries in force at `now` (`penguin_suppression`, inlined: two
/// primary-key probes per job, no extra round trip) are checked right before
/// every send;
/// one whose lead's sequence was stopped (a reply that raced its queueing) ends
/// `cancelled`.
/// Jobs in any other state (already handled, duplicated in Redis) are ignored.
///
/// A campaign outside its `send_window` starts nothing; one with a `daily_cap`
/// starts at most what is left of its local day's cap (its
/// `campaign_day_usage` row locked and raised here), most urgent first. Their
/// other jobs go back to `pending` with `run_at` at the window's next opening,
/// or once the cap is used at the next local day's first opening.
///
/// With `usage`, the number of jobs claimed `sending` (minus `usage.given_back`,
/// earlier reservations of the same hour that never reached SMTP) is added to
/// the IP's `ip_hourly_usage` row in the same transaction: the durable copy of
/// the Redis counters never lags behind what was handed to SMTP.
pub async fn claim_sending(
    pool: &Pool,
    tenant: Uuid,
    epoch: Epoch,
    jobs: &[(Uuid, Uuid)],
    campaigns: &[Uuid],
    now: OffsetDateTime,
    usage: Option<UsageMark>,
) -> Result<SendingClaim, StoreError> {
    if jobs.is_empty() && usage.is_none_or(|u| u.given_back == 0) {
        return Ok(SendingClaim::default());
    }
    let job_ids: Vec<Uuid> = jobs.iter().map(|(job, _)| *job).collect();
    let mut client = pool.get().await?;
    let tx = fenced_transaction(&mut client).await?;
    if hold(&tx, &[tenant], &[epoch]).await?.is_empty() {
        return Ok(SendingClaim {
            fenced: true,
            ..SendingClaim::default()
        });
    }
    // The campaign gate: running campaigns only, inside their send window and
    // under their daily cap (`gate.rs`).
    let mut gates = gate::lock_gates(&tx, tenant, campaigns, now).await?;
    let refused = gate::refused_jobs(&tx, tenant, &job_ids, &gates, now).await?;
    let open: Vec<Uuid> = gates
        .iter()
        .filter(|g| g.open)
        .map(|g| g.campaign)
        .collect();
    let (job_ids_gated, ip_ids_gated): (Vec<Uuid>, Vec<Uuid>) = jobs
        .iter()
        .filter(|(job, _)| !refused.contains(job))
        .copied()
        .unzip();
    let claim = tx
        .prepare_cached(
            "UPDATE send_jobs j
            SET status = CASE WHEN s.why IS NOT NULL THEN 'suppressed'
                              WHEN l.stopped_at IS NOT NULL THEN 'cancelled'
                              ELSE 'sending' END,
                ip_id = u.ip_id,
                fence = $6,
                claim = $7,
                attempts = j.attempts
                           + CASE WHEN s.why IS NULL AND l.stopped_at IS NULL THEN 1 ELSE 0 END,
                first_attempt_at = coalesce(j.first_attempt_at, $5),
                last_reply = CASE WHEN s.why IS NOT NULL THEN 'suppressed: ' || s.why
                                  WHEN l.stopped_at IS NOT NULL
                                  THEN 'sequence stopped: ' || l.stop_reason
                                  ELSE j.last_reply END,
                updated_at = $5
            FROM unnest($2::uuid[], $3::uuid[]) AS u(id, ip_id),
                 leads l LEFT JOIN LATERAL penguin_suppression(l.tenant_id, l.email, $5) s ON true
            WHERE j.tenant_id = $1 AND j.id = u.id AND (j.status = 'queued') IS TRUE
              AND l.tenant_id = j.tenant_id AND l.id = j.lead_id
              AND j.campaign_id = ANY($4)
            RETURNING j.id, j.first_attempt_at, j.status, j.campaign_id, j.step, j.thread",
        )
        .await?;
    let claim_id: ClaimId = Uuid::now_v7();
    let rows = tx
        .query(
            &claim,
            &[
                &tenant,
                &job_ids_gated,
                &ip_ids_gated,
                &open,
                &now,
                &epoch,
                &claim_id,
            ],
        )
        .await?;
    let mut claim = SendingClaim {
        claim: claim_id,
        ..SendingClaim::default()
    };
    let mut started: HashMap<Uuid, i32> = HashMap::new();
    for row in &rows {
        let status: &str = row.get(2);
        if status == "suppressed" {
            claim.suppressed.push(row.get(0));
        } else if status == "cancelled" {
            claim.stopped += 1;
        } else {
            claim.claimed.push(ClaimedJob {
                job: row.get(0),
                first_attempt: row.get(1),
                step: row.get(4),
                thread: row.get::<_, Option<Vec<String>>>(5).unwrap_or_default(),
            });
            *started.entry(row.get(3)).or_default() += 1;
        }
    }
    let (waiting, until): (Vec<Uuid>, Vec<OffsetDateTime>) =
        gate::record_starts(&tx, tenant, &mut gates, &started)
            .await?
            .into_iter()
            .unzip();
    // Whatever is still `queued` among the offered jobs belongs to a campaign that
    // is paused or finished (back to Postgres' backlog as it was), or was refused
    // by its window or cap (back until the campaign's next chance).
    let release = tx
        .prepare_cached(
            "UPDATE send_jobs j SET status = 'pending', updated_at = $3,
                 run_at = coalesce((SELECT w.until
                                    FROM unnest($4::uuid[], $5::timestamptz[]) AS w(id, until)
                                    WHERE w.id = j.campaign_id), j.run_at)
             WHERE j.tenant_id = $1 AND j.id = ANY($2) AND (j.status = 'queued') IS TRUE",
        )
        .await?;
    claim.released = tx
        .execute(&release, &[&tenant, &job_ids, &now, &waiting, &until])
        .await? as usize;
    if let Some(usage) = usage {
        let delta = claim.claimed.len() as i32 - usage.given_back as i32;
        if delta != 0 {
            let record = tx
                .prepare_cached(
                    "INSERT INTO ip_hourly_usage AS u (tenant_id, ip_id, hour, day, reserved)
                     VALUES ($1, $2, $3, $4, greatest($5, 0))
                     ON CONFLICT (tenant_id, ip_id, hour)
                     DO UPDATE SET reserved = greatest(u.reserved + $5, 0)",
                )
                .await?;
            tx.execute(
                &record,
                &[&tenant, &usage.ip, &usage.hour_start, &usage.day, &delta],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(claim)
}

/// Where a claim's sends count: one IP's local hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageMark {
    pub ip: Uuid,
    pub hour_start: OffsetDateTime,
    pub day: time::Date,
    /// Reservations of this hour released before SMTP, returned now.
    pub given_back: u32,
}
