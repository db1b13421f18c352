//! Campaign rows and their lifecycle, as the control API drives them.
//!
//! Every lifecycle call ([`start_campaign`] / [`start_campaign_at`],
//! [`pause_campaign`], [`resume_campaign`], [`cancel_campaign`], and
//! [`retry_failed`]) runs in the caller's transaction
//! (the API's: `db::tenant_transaction`, committed by the caller) and first
//! locks the campaign row (`FOR UPDATE`), so it orders strictly before or after
//! each engine claim (which holds the row `FOR SHARE`, see `store::ledger`) and each
//! lead import. The other calls take any client or transaction. The calls are idempotent: asking for the state a campaign is
//! already in changes nothing and answers [`StatusChange::changed`] = false; an
//! impossible transition is [`StoreError::Conflict`] with a readable message.
//! Every query filters by `tenant_id` explicitly.
//!
//! Statuses: `draft → running|scheduled`, `scheduled → running` (at
//! `start_at`, by the owning node's Feeder: `store::scheduled`, or a start
//! without `start_at`), `running|scheduled → paused`, `paused →
//! running|scheduled` (scheduled while `start_at` is ahead), `running →
//! completed` (the Reaper), `completed → running` (failed jobs retried), and
//! `draft|scheduled|running|paused → cancelled`.

use deadpool_postgres::{GenericClient, Transaction};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::StoreError;
use crate::domain::CampaignStatus;

/// A new campaign, already validated by the caller (templates compiled, IPs owned).
#[derive(Debug, Clone, PartialEq)]
pub struct NewCampaign {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub name: String,
    pub priority: i32,
    pub from_address: String,
    pub from_name: Option<String>,
    pub subject: String,
    pub text_body: String,
    pub html_body: Option<String>,
    pub ip_ids: Vec<Uuid>,
    pub daily_cap: Option<i32>,
    pub send_window: Option<serde_json::Value>,
}

/// One campaign row.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub name: String,
    pub status: CampaignStatus,
    pub priority: i32,
    pub from_address: String,
    pub from_name: Option<String>,
    pub subject: String,
    pub text_body: String,
    pub html_body: Option<String>,
    pub ip_ids: Vec<Uuid>,
    pub daily_cap: Option<i32>,
    pub send_window: Option<serde_json::Value>,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub completed_at: Option<OffsetDateTime>,
    /// When a `scheduled` start was asked for (kept after it started); null
    /// for a campaign started at once.
    pub start_at: Option<OffsetDateTime>,
    /// How many steps the campaign has, step 1 included (1 without follow-ups).
    pub step_count: i32,
}

/// The result of a lifecycle call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusChange {
    /// The campaign's status after the call.
    pub status: CampaignStatus,
    /// False when the campaign already was in that status.
    pub changed: bool,
}

pub(crate) const COLUMNS: &str =
    "tenant_id, id, name, status, priority, from_address, from_name, subject,
        text_body, html_body, ip_ids, daily_cap, send_window, created_at, started_at,
        completed_at, start_at, step_count";

pub(crate) fn campaign(row: &Row) -> Result<Campaign, StoreError> {
    Ok(Campaign {
        tenant_id: row.get(0),
        id: row.get(1),
        name: row.get(2),
        status: parse_status(row.get(3))?,
        priority: row.get(4),
        from_address: row.get(5),
        from_name: row.get(6),
        subject: row.get(7),
        text_body: row.get(8),
        html_body: row.get(9),
        ip_ids: row.get(10),
        daily_cap: row.get(11),
        send_window: row.get(12),
        created_at: row.get(13),
        started_at: row.get(14),
        completed_at: row.get(15),
        start_at: row.get(16),
        step_count: row.get(17),
    })
}

fn parse_status(status: &str) -> Result<CampaignStatus, StoreError> {
    status
        .parse()
        .map_err(|_| StoreError::Invalid(format!("campaign status {status}")))
}

/// Inserts a campaign in `draft`.
pub async fn insert_campaign(
    client: &impl GenericClient,
    new: &NewCampaign,
) -> Result<Campaign, StoreError> {
    let sql = format!(
        "INSERT INTO campaigns (tenant_id, id, name, priority, from_address, from_name, subject,
                                text_body, html_body, ip_ids, daily_cap, send_window)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         RETURNING {COLUMNS}"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &new.tenant_id,
                &new.id,
                &new.name,
                &new.priority,
                &new.from_address,
                &new.from_name,
                &new.subject,
                &new.text_body,
                &new.html_body,
                &new.ip_ids,
                &new.daily_cap,
                &new.send_window,
            ],
        )
        .await?;
    campaign(&row)
}

/// One campaign of a tenant; [`StoreError::NotFound`] when absent or foreign.
pub async fn tenant_campaign(
    client: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
) -> Result<Campaign, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM campaigns WHERE tenant_id = $1 AND id = $2");
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&tenant, &id])
        .await?
        .ok_or(StoreError::NotFound)?;
    campaign(&row)
}

/// `Ok` when `tenant` has the campaign `id`, [`StoreError::NotFound`] otherwise:
/// the 404 of reads that would answer an empty list for a foreign campaign.
pub async fn ensure_exists(
    client: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached("SELECT 1 FROM campaigns WHERE tenant_id = $1 AND id = $2")
        .await?;
    match client.query_opt(&stmt, &[&tenant, &id]).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound),
    }
}

/// A campaign row locked for a lifecycle change.
pub(crate) struct Locked {
    pub status: CampaignStatus,
    pub priority: i32,
    pub start_at: Option<OffsetDateTime>,
}

/// Locks a campaign row for a lifecycle change.
pub(crate) async fn lock_campaign(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
) -> Result<Locked, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT status, priority, start_at FROM campaigns
             WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        )
        .await?;
    let row = tx
        .query_opt(&stmt, &[&tenant, &id])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(Locked {
        status: parse_status(row.get(0))?,
        priority: row.get(1),
        start_at: row.get(2),
    })
}

/// Sets the status; the first move to `running` also stamps `started_at`, a
/// move to `cancelled` stamps `cancelled_at` (retention counts a finished
/// campaign's days from it, see `store::retention`).
pub(crate) async fn set_status(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
    status: CampaignStatus,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE campaigns
             SET status = $3,
                 started_at = CASE WHEN $3 = 'running' THEN coalesce(started_at, now())
                                   ELSE started_at END,
                 cancelled_at = CASE WHEN $3 = 'cancelled' THEN coalesce(cancelled_at, now())
                                     ELSE cancelled_at END
             WHERE tenant_id = $1 AND id = $2",
        )
        .await?;
    tx.execute(&stmt, &[&tenant, &id, &status.as_str()]).await?;
    Ok(())
}

/// `scheduled` at `at`.
async fn set_scheduled(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE campaigns SET status = 'scheduled', start_at = $3
             WHERE tenant_id = $1 AND id = $2",
        )
        .await?;
    tx.execute(&stmt, &[&tenant, &id, &at]).await?;
    Ok(())
}

fn refuse(action: &str, status: CampaignStatus) -> StoreError {
    StoreError::Conflict(format!("cannot {action} a campaign that is {status}"))
}

fn unchanged(status: CampaignStatus) -> StatusChange {
    StatusChange {
        status,
        changed: false,
    }
}

const CHANGED_TO_RUNNING: StatusChange = StatusChange {
    status: CampaignStatus::Running,
    changed: true,
};

const CHANGED_TO_SCHEDULED: StatusChange = StatusChange {
    status: CampaignStatus::Scheduled,
    changed: true,
};

/// What [`start_campaign`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// Started now, scheduled, or found `running` or `scheduled` already.
    Change(StatusChange),
    /// The campaign was started earlier with the same idempotency key: the first
    /// answer stands (`scheduled` if that start scheduled it, else `running`),
    /// whatever happened to the campaign since.
    Replayed(CampaignStatus),
}

/// [`start_campaign_at`] with no `start_at`: `draft → running` now.
pub async fn start_campaign(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
    key: Option<&str>,
) -> Result<StartOutcome, StoreError> {
    start_campaign_at(tx, tenant, id, key, None, OffsetDateTime::now_utc()).await
}

/// Starts a campaign, in one transaction. With `start_at` after `now`:
/// `draft → scheduled` (one `pending` job per lead, none claimed until the
/// campaign runs, see [`crate::store::scheduled`]); else `draft → running` as
/// it always did. A `scheduled` campaign started again is rescheduled to the
/// new future `start_at` (unchanged when it is the same) or, without one,
/// starts now. Starting a running campaign changes nothing; any other state is
/// a conflict (a paused campaign is resumed, not started) — unless `key` is
/// the idempotency key the campaign was started with, which replays that
/// start. The key of the start that left `draft` is kept in `start_key`.
pub async fn start_campaign_at(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
    key: Option<&str>,
    start_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<StartOutcome, StoreError> {
    let locked = lock_campaign(tx, tenant, id).await?;
    if let Some(key) = key {
        let stmt = tx
            .prepare_cached("SELECT start_key FROM campaigns WHERE tenant_id = $1 AND id = $2")
            .await?;
        let stored: Option<String> = tx.query_one(&stmt, &[&tenant, &id]).await?.get(0);
        if stored.as_deref() == Some(key) {
            let first = match locked.start_at {
                Some(_) => CampaignStatus::Scheduled,
                None => CampaignStatus::Running,
            };
            return Ok(StartOutcome::Replayed(first));
        }
    }
    let future = start_at.filter(|at| *at > now);
    match (locked.status, future) {
        (CampaignStatus::Draft, _) => {}
        (CampaignStatus::Running, _) => {
            return Ok(StartOutcome::Change(unchanged(locked.status)));
        }
        (CampaignStatus::Scheduled, Some(at)) if locked.start_at == Some(at) => {
            return Ok(StartOutcome::Change(unchanged(locked.status)));
        }
        (CampaignStatus::Scheduled, Some(at)) => {
            set_scheduled(tx, tenant, id, at).await?;
            return Ok(StartOutcome::Change(CHANGED_TO_SCHEDULED));
        }
        (CampaignStatus::Scheduled, None) => {
            set_status(tx, tenant, id, CampaignStatus::Running).await?;
            return Ok(StartOutcome::Change(CHANGED_TO_RUNNING));
        }
        (status, _) => return Err(refuse("start", status)),
    }
    let change = match future {
        Some(at) => {
            set_scheduled(tx, tenant, id, at).await?;
            CHANGED_TO_SCHEDULED
        }
        None => {
            set_status(tx, tenant, id, CampaignStatus::Running).await?;
            CHANGED_TO_RUNNING
        }
    };
    let record_key = tx
        .prepare_cached("UPDATE campaigns SET start_key = $3 WHERE tenant_id = $1 AND id = $2")
        .await?;
    tx.execute(&record_key, &[&tenant, &id, &key]).await?;
    let create_jobs = tx
        .prepare_cached(
            "INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority, run_at)
             SELECT tenant_id, gen_random_uuid(), campaign_id, id, $3, now()
             FROM leads WHERE tenant_id = $1 AND campaign_id = $2
               AND stopped_at IS NULL -- a lead that replied to a draft gets nothing
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&create_jobs, &[&tenant, &id, &locked.priority])
        .await?;
    Ok(StartOutcome::Change(change))
}

/// `running|scheduled → paused`. Once `tx` commits, no engine claim moves a
/// job of the campaign to `sending` (jobs already `sending`: see
/// [`sending_count`]), and a paused scheduled campaign does not start.
pub async fn pause_campaign(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
) -> Result<StatusChange, StoreError> {
    let status = lock_campaign(tx, tenant, id).await?.status;
    match status {
        CampaignStatus::Running | CampaignStatus::Scheduled => {}
        CampaignStatus::Paused => return Ok(unchanged(status)),
        _ => return Err(refuse("pause", status)),
    }
    set_status(tx, tenant, id, CampaignStatus::Paused).await?;
    Ok(StatusChange {
        status: CampaignStatus::Paused,
        changed: true,
    })
}

/// `paused → scheduled` when its `start_at` is still after `now` (a scheduled
/// campaign that was paused), else `paused → running`.
pub async fn resume_campaign(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<StatusChange, StoreError> {
    let locked = lock_campaign(tx, tenant, id).await?;
    match locked.status {
        CampaignStatus::Paused => {}
        CampaignStatus::Running | CampaignStatus::Scheduled => {
            return Ok(unchanged(locked.status));
        }
        status => return Err(refuse("resume", status)),
    }
    match locked.start_at.filter(|at| *at > now) {
        Some(at) => {
            set_scheduled(tx, tenant, id, at).await?;
            Ok(CHANGED_TO_SCHEDULED)
        }
        None => {
            set_status(tx, tenant, id, CampaignStatus::Running).await?;
            Ok(CHANGED_TO_RUNNING)
        }
    }
}

/// `draft|scheduled|running|paused → cancelled`, and every job not yet handed to SMTP
/// (`pending`, `deferred`, `queued`) → `cancelled`, in one transaction. Jobs
/// already `sending` finish their attempt.
pub async fn cancel_campaign(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
) -> Result<StatusChange, StoreError> {
    let status = lock_campaign(tx, tenant, id).await?.status;
    match status {
        CampaignStatus::Draft
        | CampaignStatus::Scheduled
        | CampaignStatus::Running
        | CampaignStatus::Paused => {}
        CampaignStatus::Cancelled => return Ok(unchanged(status)),
        CampaignStatus::Completed => return Err(refuse("cancel", status)),
    }
    set_status(tx, tenant, id, CampaignStatus::Cancelled).await?;
    crate::store::ledger::cancel_unsent(tx, tenant, id).await?;
    Ok(StatusChange {
        status: CampaignStatus::Cancelled,
        changed: true,
    })
}

/// After a cancel's attempts drained: cancels any job of the cancelled
/// campaign that a write racing the cancel's commit returned to the backlog.
/// Returns how many; nothing for a campaign that is not cancelled.
pub async fn sweep_cancelled(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
) -> Result<u64, StoreError> {
    let status = lock_campaign(tx, tenant, id).await?.status;
    if status != CampaignStatus::Cancelled {
        return Ok(0);
    }
    crate::store::ledger::cancel_unsent(tx, tenant, id).await
}

/// Requeues the campaign's `failed` jobs (`store::ledger::requeue_failed`:
/// due now, a fresh attempt budget, suppressed addresses left `failed`) under
/// the campaign's row lock; a `completed` campaign with jobs requeued becomes
/// `running` again (`completed_at` cleared). A cancelled campaign is a
/// conflict; any other state keeps its status (a paused campaign's requeued
/// jobs wait for its resume, a scheduled or draft one has no failed job).
/// Returns the campaign's status and how many jobs were requeued.
pub async fn retry_failed(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<(StatusChange, u64), StoreError> {
    let status = lock_campaign(tx, tenant, id).await?.status;
    if status == CampaignStatus::Cancelled {
        return Err(refuse("retry the jobs of", status));
    }
    let requeued = crate::store::ledger::requeue_failed(tx, tenant, id, now).await?;
    if status == CampaignStatus::Completed && requeued > 0 {
        let reopen = tx
            .prepare_cached(
                "UPDATE campaigns SET status = 'running', completed_at = NULL
                 WHERE tenant_id = $1 AND id = $2",
            )
            .await?;
        tx.execute(&reopen, &[&tenant, &id]).await?;
        return Ok((CHANGED_TO_RUNNING, requeued));
    }
    Ok((unchanged(status), requeued))
}

/// How many jobs of the campaign are `sending` (an SMTP attempt under way).
pub async fn sending_count(
    client: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
) -> Result<i64, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT count(*) FROM send_jobs
             WHERE tenant_id = $1 AND campaign_id = $2 AND status = 'sending'",
        )
        .await?;
    Ok(client.query_one(&stmt, &[&tenant, &id]).await?.get(0))
}
