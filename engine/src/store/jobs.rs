//! The send-job state machine in Postgres (DESIGN.md §2). Every transition is a
//! conditional, batched statement (`WHERE status = …`), so a stale or duplicated
//! request changes nothing:
//!
//! - [`claim_due`] (Feeder): `pending|deferred → queued`, due jobs of running
//!   campaigns, `FOR UPDATE SKIP LOCKED` so nodes never claim the same job;
//!   [`claim_due_urgent`] the same for the urgent lane only (priority ≤ 50).
//! - [`claim_sending`] (Ip actor, right before SMTP): `queued → sending`, only while
//!   the campaign row is `running` under `FOR SHARE` — a pause (row lock) therefore
//!   orders strictly before or after every claim. Jobs of campaigns that are not
//!   running go back to `pending`.
//! - [`apply_transitions`] (StatusWriter): `sending → sent|deferred|bounced|failed|
//!   suppressed|pending`, one `UPDATE … FROM unnest()` per batch.
//! - [`release_stale_sending`], [`release_queued`] (Reaper): recovery after crashes
//!   and Redis loss.
//!
//! Every write of a node carries the tenant's epoch it holds (its fencing token,
//! [`crate::store::fences`]). Claims and recoveries first lock the tenant's fence
//! row `FOR SHARE` with that epoch ([`hold`]) and change nothing when it moved on;
//! a status write must match the epoch its job was claimed under (`fence`) and
//! the claim id that claim stamped (`claim`, [`ClaimId`]): the epoch guards
//! against another node, the claim id against a reclaim on this node (the
//! Reaper returned the job past `queue.sending_timeout_ms`, it was claimed again,
//! then the first attempt ended). The recoveries live in
//! [`crate::store::job_recovery`] and are re-exported here.

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;
use crate::domain::JobStatus;
use crate::payload::{JobPayload, JobV1};
use crate::store::fences::{Epoch, fenced_transaction, hold};
pub use crate::store::job_recovery::{
    postpone_queued, release_queued, release_sending, release_sending_on_ip, release_stale_sending,
};

/// Claims up to `limit` due jobs of `tenant` (`pending|deferred → queued`) in
/// priority order and returns them as payloads ready for Redis. Jobs of a
/// campaign whose IPs are all paused stay in Postgres: in Redis they would only
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
            "WITH due AS (
                SELECT j.tenant_id, j.id
                FROM send_jobs j
                JOIN campaigns c ON c.tenant_id = j.tenant_id AND c.id = j.campaign_id
                WHERE j.tenant_id = $1
                  AND j.status IN ('pending', 'deferred')
                  AND j.run_at <= $3
                  AND j.priority <= $4
                  AND c.status = 'running'
                  AND EXISTS (SELECT 1 FROM smtp_ips i
                              WHERE i.tenant_id = c.tenant_id AND i.id = ANY(c.ip_ids)
                                AND i.status = 'active')
                ORDER BY j.priority, j.run_at
                LIMIT $2
                FOR UPDATE OF j SKIP LOCKED
            )
            UPDATE send_jobs j
            SET status = 'queued', queued_at = $3, updated_at = $3
            FROM due, leads l
            WHERE j.tenant_id = due.tenant_id AND j.id = due.id
              AND l.tenant_id = j.tenant_id AND l.id = j.lead_id
            RETURNING j.id, j.campaign_id, j.priority, j.attempts, l.email, l.fields::text,
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

/// What [`claim_sending`] did with the jobs it was offered.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SendingClaim {
    /// This claim's id, stamped on every job in `claimed` (`send_jobs.claim`).
    pub claim: ClaimId,
    /// Now `sending` on the given IP, with the time of their first attempt:
    /// deliver exactly these.
    pub claimed: Vec<(Uuid, OffsetDateTime)>,
    /// Their address is on the tenant's suppression list: now `suppressed`, never sent.
    pub suppressed: Vec<Uuid>,
    /// Their campaign was not running: returned to `pending` for a later feed.
    pub released: usize,
    /// The tenant's epoch moved on (another node took it over): nothing was
    /// claimed, released or counted.
    pub fenced: bool,
}

/// Claims `queued → sending` for `(job, ip)` pairs of one tenant under `epoch`
/// (recorded as the jobs' `fence`, with a fresh [`ClaimId`] as their `claim`;
/// nothing happens if the epoch moved on), only for jobs whose
/// campaign is `running` (row held `FOR SHARE` for the statement's transaction).
/// A job whose address is suppressed for the tenant ends `suppressed` instead, in
/// the same statement: the suppression list is checked right before every send.
/// Jobs in any other state (already handled, duplicated in Redis) are ignored.
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
    let ip_ids: Vec<Uuid> = jobs.iter().map(|(_, ip)| *ip).collect();
    let mut client = pool.get().await?;
    let tx = fenced_transaction(&mut client).await?;
    if hold(&tx, &[tenant], &[epoch]).await?.is_empty() {
        return Ok(SendingClaim {
            fenced: true,
            ..SendingClaim::default()
        });
    }
    let claim = tx
        .prepare_cached(
            "WITH running AS MATERIALIZED (
                SELECT c.id FROM campaigns c
                WHERE c.tenant_id = $1 AND c.id = ANY($4) AND c.status = 'running'
                FOR SHARE
            )
            UPDATE send_jobs j
            SET status = CASE WHEN s.email IS NULL THEN 'sending' ELSE 'suppressed' END,
                ip_id = u.ip_id,
                fence = $6,
                claim = $7,
                attempts = j.attempts + CASE WHEN s.email IS NULL THEN 1 ELSE 0 END,
                first_attempt_at = coalesce(j.first_attempt_at, $5),
                last_reply = CASE WHEN s.email IS NULL THEN j.last_reply
                                  ELSE 'suppressed: ' || s.reason END,
                updated_at = $5
            FROM unnest($2::uuid[], $3::uuid[]) AS u(id, ip_id),
                 leads l LEFT JOIN suppressions s ON s.tenant_id = l.tenant_id AND s.email = l.email
            WHERE j.tenant_id = $1 AND j.id = u.id AND j.status = 'queued'
              AND l.tenant_id = j.tenant_id AND l.id = j.lead_id
              AND j.campaign_id IN (SELECT id FROM running)
            RETURNING j.id, j.first_attempt_at, j.status",
        )
        .await?;
    let claim_id: ClaimId = Uuid::now_v7();
    let rows = tx
        .query(
            &claim,
            &[
                &tenant, &job_ids, &ip_ids, &campaigns, &now, &epoch, &claim_id,
            ],
        )
        .await?;
    let mut claim = SendingClaim {
        claim: claim_id,
        ..SendingClaim::default()
    };
    for row in &rows {
        let status: &str = row.get(2);
        if status == "suppressed" {
            claim.suppressed.push(row.get(0));
        } else {
            claim.claimed.push((row.get(0), row.get(1)));
        }
    }
    // Whatever is still `queued` among the offered jobs belongs to a campaign that
    // is paused or finished: hand it back to Postgres' backlog.
    let release = tx
        .prepare_cached(
            "UPDATE send_jobs SET status = 'pending', updated_at = $3
             WHERE tenant_id = $1 AND id = ANY($2) AND status = 'queued'",
        )
        .await?;
    claim.released = tx.execute(&release, &[&tenant, &job_ids, &now]).await? as usize;
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

/// The end of one delivery attempt (or its abandonment) for a `sending` job.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub tenant_id: Uuid,
    pub job_id: Uuid,
    /// `Sent`, `Deferred`, `Bounced`, `Failed`, `Suppressed`, or `Pending` for an
    /// attempt abandoned before SMTP started (the attempt is not counted).
    pub to: JobStatus,
    /// When a deferred job may be tried again.
    pub run_at: Option<OffsetDateTime>,
    pub message_id: Option<String>,
    pub reply: Option<String>,
    /// The epoch the job was claimed under: the write applies only while the job
    /// is still `sending` under that claim.
    pub fence: Epoch,
    /// The id of the claim this attempt ran under: a later claim of the same
    /// job (same epoch or not) makes this write change nothing.
    pub claim: ClaimId,
}

/// What [`apply_transitions`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Transitions written.
    pub written: usize,
    /// The `(tenant_id, campaign_id)` of every job that changed (for completion checks).
    pub campaigns: Vec<(Uuid, Uuid)>,
}

/// Applies a batch of transitions from `sending` in one statement. A transition
/// whose job is no longer `sending` under the epoch and claim it carries (a
/// takeover or the Reaper returned it, a later claim took or finished it) is
/// refused: not written.
pub async fn apply_transitions(
    pool: &Pool,
    batch: &[Transition],
    now: OffsetDateTime,
) -> Result<Applied, StoreError> {
    if batch.is_empty() {
        return Ok(Applied::default());
    }
    debug_assert!(
        batch
            .iter()
            .all(|t| t.to != JobStatus::Queued && t.to != JobStatus::Sending)
    );
    let tenants: Vec<Uuid> = batch.iter().map(|t| t.tenant_id).collect();
    let ids: Vec<Uuid> = batch.iter().map(|t| t.job_id).collect();
    let statuses: Vec<&str> = batch.iter().map(|t| t.to.as_str()).collect();
    let run_ats: Vec<Option<OffsetDateTime>> = batch.iter().map(|t| t.run_at).collect();
    let message_ids: Vec<Option<&str>> = batch.iter().map(|t| t.message_id.as_deref()).collect();
    let replies: Vec<Option<&str>> = batch.iter().map(|t| t.reply.as_deref()).collect();
    let fences: Vec<Epoch> = batch.iter().map(|t| t.fence).collect();
    let claims: Vec<ClaimId> = batch.iter().map(|t| t.claim).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "UPDATE send_jobs j
             SET status = u.status,
                 run_at = coalesce(u.run_at, j.run_at),
                 message_id = coalesce(u.message_id, j.message_id),
                 last_reply = coalesce(u.reply, j.last_reply),
                 attempts = CASE WHEN u.status = 'pending' THEN j.attempts - 1 ELSE j.attempts END,
                 updated_at = $7
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
                         $8::int8[], $9::uuid[])
                  AS u(tenant_id, id, status, run_at, message_id, reply, fence, claim)
             WHERE j.tenant_id = u.tenant_id AND j.id = u.id AND j.status = 'sending'
               AND j.fence = u.fence AND j.claim = u.claim
             RETURNING j.tenant_id, j.campaign_id",
        )
        .await?;
    let rows = client
        .query(
            &stmt,
            &[
                &tenants,
                &ids,
                &statuses,
                &run_ats,
                &message_ids,
                &replies,
                &now,
                &fences,
                &claims,
            ],
        )
        .await?;
    let mut campaigns: Vec<(Uuid, Uuid)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    campaigns.sort_unstable();
    campaigns.dedup();
    Ok(Applied {
        written: rows.len(),
        campaigns,
    })
}

/// Marks `running` campaigns `completed` when none of their jobs can change any more.
/// Returns the campaigns that completed.
///
/// The campaign rows are locked first (`FOR UPDATE`, which waits for a lead import
/// holding them `FOR SHARE`); the emptiness check then runs as a separate statement,
/// so its snapshot includes every job such an import created.
pub async fn complete_finished_campaigns(
    pool: &Pool,
    campaigns: &[(Uuid, Uuid)],
    now: OffsetDateTime,
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    if campaigns.is_empty() {
        return Ok(Vec::new());
    }
    let tenants: Vec<Uuid> = campaigns.iter().map(|c| c.0).collect();
    let ids: Vec<Uuid> = campaigns.iter().map(|c| c.1).collect();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let lock = tx
        .prepare_cached(
            "SELECT c.tenant_id, c.id FROM campaigns c
             JOIN unnest($1::uuid[], $2::uuid[]) AS u(tenant_id, id)
               ON c.tenant_id = u.tenant_id AND c.id = u.id
             WHERE c.status = 'running'
             ORDER BY c.tenant_id, c.id
             FOR UPDATE OF c",
        )
        .await?;
    let locked = tx.query(&lock, &[&tenants, &ids]).await?;
    if locked.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let tenants: Vec<Uuid> = locked.iter().map(|r| r.get(0)).collect();
    let ids: Vec<Uuid> = locked.iter().map(|r| r.get(1)).collect();
    let complete = tx
        .prepare_cached(
            "UPDATE campaigns c SET status = 'completed', completed_at = $3
             FROM unnest($1::uuid[], $2::uuid[]) AS u(tenant_id, id)
             WHERE c.tenant_id = u.tenant_id AND c.id = u.id AND c.status = 'running'
               AND NOT EXISTS (
                   SELECT 1 FROM send_jobs j
                   WHERE j.tenant_id = c.tenant_id AND j.campaign_id = c.id
                     AND j.status IN ('pending', 'queued', 'sending', 'deferred'))
             RETURNING c.tenant_id, c.id",
        )
        .await?;
    let rows = tx.query(&complete, &[&tenants, &ids, &now]).await?;
    tx.commit().await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The running campaigns of some tenants (for periodic completion checks).
pub async fn running_campaigns(
    pool: &Pool,
    tenants: &[Uuid],
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT tenant_id, id FROM campaigns WHERE tenant_id = ANY($1) AND status = 'running'",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenants]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The earliest `run_at` of a job waiting in the backlog of these tenants (only
/// running campaigns with an active IP, as [`claim_due`] takes), for the feeder
/// to sleep until.
pub async fn next_due(pool: &Pool, tenants: &[Uuid]) -> Result<Option<OffsetDateTime>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT min(j.run_at) FROM send_jobs j
             JOIN campaigns c ON c.tenant_id = j.tenant_id AND c.id = j.campaign_id
             WHERE j.tenant_id = ANY($1) AND j.status IN ('pending', 'deferred')
               AND c.status = 'running'
               AND EXISTS (SELECT 1 FROM smtp_ips i
                           WHERE i.tenant_id = c.tenant_id AND i.id = ANY(c.ip_ids)
                             AND i.status = 'active')",
        )
        .await?;
    Ok(client.query_one(&stmt, &[&tenants]).await?.get(0))
}

/// Jobs of a campaign per state (states without jobs are absent).
pub async fn counts_by_status(
    client: &impl GenericClient,
    tenant: Uuid,
    campaign: Uuid,
) -> Result<Vec<(JobStatus, i64)>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT status, count(*) FROM send_jobs
             WHERE tenant_id = $1 AND campaign_id = $2 GROUP BY status",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenant, &campaign]).await?;
    rows.iter()
        .map(|row| {
            let status: &str = row.get(0);
            let status = status
                .parse()
                .map_err(|_| StoreError::Invalid(format!("job status {status}")))?;
            Ok((status, row.get(1)))
        })
        .collect()
}
