//! Asynchronous bounces: a delivery status notification (RFC 3464, parsed by
//! `crate::dsn`) about a message the receiver first accepted, recorded for the
//! control API's `POST /v1/bounces`.
//!
//! [`record`] runs in the caller's transaction (a tenant's, under RLS; the
//! operator's, on the owner's role), for a job found by its Message-ID
//! (`store::complaints::find_job`). A permanent failure:
//! - turns the job `sent → bounced` (`ledger::bounce_sent`, only from `sent`: a job that bounced,
//!   failed or was never sent is left alone, and a repeated report changes
//!   nothing, `duplicate`);
//! - records a `bounced` delivery event with the report's status, SMTP code,
//!   diagnostic and bounce class, and the provider of the job's `sent` event;
//! - moves the message from `sent` to `bounced` in the rollups of the day it
//!   was sent (the campaign's UTC day, the IP's local day, the step's totals),
//!   so every count agrees with the job's status;
//! - stops the lead's sequence (a bounced step gets no follow-up, as on the
//!   SMTP path) and cancels its follow-ups not yet handed to SMTP;
//! - suppresses the address for the tenant when the failure says the address
//!   is bad (`hard`), as the SMTP path does (`hard_bounce`; an expiring entry is
//!   made permanent).
//!
//! A transient report (a delay) only records a `delayed` event. The caller
//! tells the IP's node about a new bounce so it counts in the IP's rolling
//! health (`ControlEvent::Bounce`).

use deadpool_postgres::Transaction;
use time::OffsetDateTime;

use crate::db::StoreError;
use crate::store::complaints::ComplainedJob;
use crate::store::suppressions::SuppressionReason;

/// The report's verdict on one message, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateBounce<'a> {
    /// RFC 3463 status (`5.1.1`).
    pub status: &'a str,
    pub smtp_code: Option<i32>,
    /// `Diagnostic-Code` without its type.
    pub diagnostic: Option<&'a str>,
    /// The bounce class (`invalid_recipient`, …).
    pub class: &'a str,
    /// A permanent failure (else a delay: an event only).
    pub permanent: bool,
    /// The address itself is bad: suppress it.
    pub hard: bool,
}

/// What [`record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// `sent → bounced`, with the provider of the job's `sent` event.
    Bounced {
        provider: Option<String>,
        suppressed: bool,
    },
    /// A transient report: a `delayed` event only.
    Delayed,
    /// The job was not `sent` (already bounced, failed, never sent): nothing
    /// changed. Holds its status.
    Unchanged(String),
}

/// Records `bounce` about `job` at `now` in `tx` (the caller commits).
pub async fn record(
    tx: &Transaction<'_>,
    job: &ComplainedJob,
    bounce: &LateBounce<'_>,
    now: OffsetDateTime,
) -> Result<Recorded, StoreError> {
    if !bounce.permanent {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, ip_id, kind,
                                              smtp_code, enhanced_code, class, reply, created_at)
                 VALUES ($1, $2, $3, $4, 'delayed', $5, $6, $7, $8, $9)",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &job.tenant_id,
                &job.campaign_id,
                &job.job_id,
                &job.ip_id,
                &bounce.smtp_code,
                &bounce.status,
                &bounce.class,
                &bounce.diagnostic,
                &now,
            ],
        )
        .await?;
        return Ok(Recorded::Delayed);
    }
    let reply = format!(
        "bounced after delivery: {} {}",
        bounce.status,
        bounce.diagnostic.unwrap_or("")
    );
    let Some(flipped) =
        super::ledger::bounce_sent(tx, job.tenant_id, job.job_id, &reply, now).await?
    else {
        let status = tx
            .prepare_cached("SELECT status FROM send_jobs WHERE tenant_id = $1 AND id = $2")
            .await?;
        let status: String = tx
            .query_one(&status, &[&job.tenant_id, &job.job_id])
            .await?
            .get(0);
        return Ok(Recorded::Unchanged(status));
    };
    let (step, lead, provider) = (flipped.step, flipped.lead, flipped.provider);
    let sent_at = flipped.sent_at.unwrap_or(now);
    let event = tx
        .prepare_cached(
            "INSERT INTO delivery_events (tenant_id, campaign_id, job_id, ip_id, kind, smtp_code,
                                          enhanced_code, class, provider, reply, created_at)
             VALUES ($1, $2, $3, $4, 'bounced', $5, $6, $7, $8, $9, $10)",
        )
        .await?;
    tx.execute(
        &event,
        &[
            &job.tenant_id,
            &job.campaign_id,
            &job.job_id,
            &job.ip_id,
            &bounce.smtp_code,
            &bounce.status,
            &bounce.class,
            &provider,
            &bounce.diagnostic,
            &now,
        ],
    )
    .await?;
    let rollups = tx
        .prepare_cached(
            "WITH per_campaign AS (
                 UPDATE campaign_daily_stats SET sent = greatest(sent - 1, 0), bounced = bounced + 1
                 WHERE tenant_id = $1 AND campaign_id = $2 AND day = ($5::timestamptz AT TIME ZONE 'UTC')::date
             ), per_step AS (
                 UPDATE campaign_step_stats SET sent = greatest(sent - 1, 0), bounced = bounced + 1
                 WHERE tenant_id = $1 AND campaign_id = $2 AND step = $4
             )
             UPDATE ip_daily_stats SET sent = greatest(sent - 1, 0), bounced = bounced + 1
             WHERE tenant_id = $1 AND ip_id = $3
               AND day = ($5::timestamptz AT TIME ZONE coalesce(
                             (SELECT timezone FROM smtp_ips WHERE tenant_id = $1 AND id = $3),
                             'UTC'))::date",
        )
        .await?;
    tx.execute(
        &rollups,
        &[
            &job.tenant_id,
            &job.campaign_id,
            &job.ip_id,
            &step,
            &sent_at,
        ],
    )
    .await?;
    let reason = if bounce.hard {
        "hard_bounce"
    } else {
        "bounced"
    };
    let stop = tx
        .prepare_cached(
            "UPDATE leads SET stopped_at = $4, stop_reason = $5
             WHERE tenant_id = $1 AND campaign_id = $2 AND id = $3 AND stopped_at IS NULL",
        )
        .await?;
    tx.execute(
        &stop,
        &[&job.tenant_id, &job.campaign_id, &lead, &now, &reason],
    )
    .await?;
    super::ledger::stop_lead_jobs(tx, job.tenant_id, job.campaign_id, lead, reason).await?;
    let suppressed = bounce.hard
        && super::suppressions::add_permanent(
            tx,
            job.tenant_id,
            &job.email,
            SuppressionReason::HardBounce,
        )
        .await?;
    Ok(Recorded::Bounced {
        provider,
        suppressed,
    })
}
