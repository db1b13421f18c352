//! Campaign rows and their lifecycle, as the control API drives them.
//!
//! Every lifecycle call ([`start_campaign`], [`pause_campaign`],
//! [`resume_campaign`], [`cancel_campaign`]) runs in the caller's transaction
//! (the API's: `db::tenant_transaction`, committed by the caller) and first
//! locks the campaign row (`FOR UPDATE`), so it orders strictly before or after
//! each engine claim (which holds the row `FOR SHARE`, see `store::ledger`) and each
//! lead import. The other calls take any client or transaction. The calls are idempotent: asking for the state a campaign is
//! already in changes nothing and answers [`StatusChange::changed`] = false; an
//! impossible transition is [`StoreError::Conflict`] with a readable message.
//! Every query filters by `tenant_id` explicitly.

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
}

/// The result of a lifecycle call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusChange {
    /// The campaign's status after the call.
    pub status: CampaignStatus,
    /// False when the campaign already was in that status.
    pub changed: bool,
}

const COLUMNS: &str = "tenant_id, id, name, status, priority, from_address, from_name, subject,
        text_body, html_body, ip_ids, daily_cap, send_window, created_at, started_at,
        completed_at";

fn campaign(row: &Row) -> Result<Campaign, StoreError> {
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

/// Locks a campaign row for a lifecycle change; returns its status and priority.
pub(crate) async fn lock_campaign(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
) -> Result<(CampaignStatus, i32), StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT status, priority FROM campaigns WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        )
        .await?;
    let row = tx
        .query_opt(&stmt, &[&tenant, &id])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok((parse_status(row.get(0))?, row.get(1)))
}

async fn set_status(
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
                                   ELSE started_at END
             WHERE tenant_id = $1 AND id = $2",
        )
        .await?;
    tx.execute(&stmt, &[&tenant, &id, &status.as_str()]).await?;
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

/// What [`start_campaign`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// Started now, or found `running` already.
    Change(StatusChange),
    /// The campaign was started earlier with the same idempotency key: the first
    /// answer (`running`) stands, whatever happened to the campaign since.
    Replayed,
}

/// `draft → running`, creating one `pending` job per lead, in one transaction.
/// Starting a running campaign changes nothing; any other state is a conflict
/// (a paused campaign is resumed, not started) — unless `key` is the
/// idempotency key the campaign was started with, which replays that start.
/// The key of the start that changed the campaign is kept in `start_key`.
pub async fn start_campaign(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
    key: Option<&str>,
) -> Result<StartOutcome, StoreError> {
    let (status, priority) = lock_campaign(tx, tenant, id).await?;
    if let Some(key) = key {
        let stmt = tx
            .prepare_cached("SELECT start_key FROM campaigns WHERE tenant_id = $1 AND id = $2")
            .await?;
        let stored: Option<String> = tx.query_one(&stmt, &[&tenant, &id]).await?.get(0);
        if stored.as_deref() == Some(key) {
            return Ok(StartOutcome::Replayed);
        }
    }
    match status {
        CampaignStatus::Draft => {}
        CampaignStatus::Running => return Ok(StartOutcome::Change(unchanged(status))),
        _ => return Err(refuse("start", status)),
    }
    set_status(tx, tenant, id, CampaignStatus::Running).await?;
    let record_key = tx
        .prepare_cached("UPDATE campaigns SET start_key = $3 WHERE tenant_id = $1 AND id = $2")
        .await?;
    tx.execute(&record_key, &[&tenant, &id, &key]).await?;
    let create_jobs = tx
        .prepare_cached(
            "INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority, run_at)
             SELECT tenant_id, gen_random_uuid(), campaign_id, id, $3, now()
             FROM leads WHERE tenant_id = $1 AND campaign_id = $2
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&create_jobs, &[&tenant, &id, &priority]).await?;
    Ok(StartOutcome::Change(CHANGED_TO_RUNNING))
}

/// `running → paused`. Once `tx` commits, no engine claim moves a job of the
/// campaign to `sending` (jobs already `sending`: see [`sending_count`]).
pub async fn pause_campaign(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
) -> Result<StatusChange, StoreError> {
    let (status, _) = lock_campaign(tx, tenant, id).await?;
    match status {
        CampaignStatus::Running => {}
        CampaignStatus::Paused => return Ok(unchanged(status)),
        _ => return Err(refuse("pause", status)),
    }
    set_status(tx, tenant, id, CampaignStatus::Paused).await?;
    Ok(StatusChange {
        status: CampaignStatus::Paused,
        changed: true,
    })
}

/// `paused → running`.
pub async fn resume_campaign(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
) -> Result<StatusChange, StoreError> {
    let (status, _) = lock_campaign(tx, tenant, id).await?;
    match status {
        CampaignStatus::Paused => {}
        CampaignStatus::Running => return Ok(unchanged(status)),
        _ => return Err(refuse("resume", status)),
    }
    set_status(tx, tenant, id, CampaignStatus::Running).await?;
    Ok(CHANGED_TO_RUNNING)
}

/// `draft|running|paused → cancelled`, and every job not yet handed to SMTP
/// (`pending`, `deferred`, `queued`) → `cancelled`, in one transaction. Jobs
/// already `sending` finish their attempt.
pub async fn cancel_campaign(
    tx: &Transaction<'_>,
    tenant: Uuid,
    id: Uuid,
) -> Result<StatusChange, StoreError> {
    let (status, _) = lock_campaign(tx, tenant, id).await?;
    match status {
        CampaignStatus::Draft | CampaignStatus::Running | CampaignStatus::Paused => {}
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
    let (status, _) = lock_campaign(tx, tenant, id).await?;
    if status != CampaignStatus::Cancelled {
        return Ok(0);
    }
    crate::store::ledger::cancel_unsent(tx, tenant, id).await
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
