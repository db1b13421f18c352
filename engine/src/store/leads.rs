//! Lead import: many leads into one campaign, in bulk, in one transaction.
//!
//! [`LeadImport`] holds the campaign row `FOR SHARE` for the whole import, so a
//! concurrent `start` (which locks the row `FOR UPDATE`) runs strictly before it
//! (and the import then creates the jobs itself) or strictly after it (and then
//! sees every imported lead). Each chunk of [`CHUNK`] leads is one statement: the
//! suppression check, the leads' `INSERT … SELECT FROM unnest()`, their jobs (for
//! a running or paused campaign), and back only the rows refused — an address
//! already in the campaign or suppressed for the tenant, reported as such.
//!
//! An import is a tenant's request: its transaction runs under the tenant role
//! with `app.current_tenant_id` set ([`crate::db::tenant_transaction`]), so
//! row-level security confines it to the tenant's rows besides its own filters.

use deadpool_postgres::{Object, Transaction};
use tokio_postgres::Statement;
use uuid::Uuid;

use crate::db::StoreError;
use crate::domain::CampaignStatus;

/// Leads per statement.
pub const CHUNK: usize = 2_000;

/// A lead to import: a normalised address and its template fields (a JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct NewLead {
    pub email: String,
    pub fields: serde_json::Value,
}

/// What became of one offered lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadFate {
    Accepted,
    /// The address or its domain is suppressed (the tenant's list or the global one).
    Suppressed,
    /// The campaign already has this address.
    Duplicate,
}

/// An import in progress: one transaction holding the campaign row `FOR SHARE`,
/// fed chunk by chunk (a streamed upload never sits in memory whole). Nothing is
/// visible before [`LeadImport::commit`]; dropped without it, everything rolls back.
pub struct LeadImport<'a> {
    tx: Transaction<'a>,
    tenant: Uuid,
    campaign: Uuid,
    priority: i32,
    /// The campaign's status during the import.
    pub status: CampaignStatus,
    /// Whether send jobs are created (the campaign is running or paused).
    pub jobs_created: bool,
    insert: Statement,
}

impl<'a> LeadImport<'a> {
    /// Opens the tenant's transaction ([`crate::db::tenant_transaction`]) and
    /// locks the campaign; refuses a finished, absent or foreign campaign.
    pub async fn begin(
        client: &'a mut Object,
        tenant: Uuid,
        campaign: Uuid,
    ) -> Result<LeadImport<'a>, StoreError> {
        let tx = crate::db::tenant_transaction(client, tenant).await?;
        let lock = tx
            .prepare_cached(
                "SELECT status, priority FROM campaigns WHERE tenant_id = $1 AND id = $2 FOR SHARE",
            )
            .await?;
        let row = tx
            .query_opt(&lock, &[&tenant, &campaign])
            .await?
            .ok_or(StoreError::NotFound)?;
        let status: &str = row.get(0);
        let status: CampaignStatus = status
            .parse()
            .map_err(|_| StoreError::Invalid(format!("campaign status {status}")))?;
        let priority: i32 = row.get(1);
        let jobs_created = match status {
            CampaignStatus::Draft => false,
            CampaignStatus::Scheduled | CampaignStatus::Running | CampaignStatus::Paused => true,
            CampaignStatus::Completed | CampaignStatus::Cancelled => {
                return Err(StoreError::Conflict(format!(
                    "cannot add leads to a campaign that is {status}"
                )));
            }
        };
        let insert = tx
            .prepare_cached(
                "WITH input AS (
                     SELECT u.n, u.id, u.job_id, u.email, u.fields
                     FROM unnest($3::uuid[], $4::uuid[], $5::text[], $6::jsonb[])
                          WITH ORDINALITY AS u(id, job_id, email, fields, n)
                 ), suppressed AS (
                     SELECT i.n FROM input i
                     WHERE EXISTS (SELECT 1 FROM penguin_suppression($1, i.email, now()))
                 ), inserted AS (
                     INSERT INTO leads (tenant_id, campaign_id, id, email, fields)
                     SELECT $1, $2, i.id, i.email, i.fields FROM input i
                     WHERE NOT EXISTS (SELECT 1 FROM suppressed x WHERE x.n = i.n)
                     ON CONFLICT (tenant_id, campaign_id, email) DO NOTHING
                     RETURNING id
                 ), jobs AS (
                     INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority, run_at)
                     SELECT $1, i.job_id, $2, i.id, $7, now()
                     FROM inserted x JOIN input i ON i.id = x.id
                     WHERE $8
                     ON CONFLICT DO NOTHING
                 )
                 SELECT i.n, EXISTS (SELECT 1 FROM suppressed x WHERE x.n = i.n)
                 FROM input i
                 WHERE NOT EXISTS (SELECT 1 FROM inserted x WHERE x.id = i.id)",
            )
            .await?;
        Ok(LeadImport {
            tx,
            tenant,
            campaign,
            priority,
            status,
            jobs_created,
            insert,
        })
    }

    /// Adds one chunk (at most a few thousand leads with distinct emails) in one
    /// statement; returns each lead's fate, in order. An address the campaign
    /// already has — from before or from an earlier chunk — is a `Duplicate`.
    /// Lead and job ids are UUIDv7, so both primary keys grow at their right edge.
    pub async fn add(&self, chunk: &[NewLead]) -> Result<Vec<LeadFate>, StoreError> {
        let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
        let job_ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
        let emails: Vec<&str> = chunk.iter().map(|lead| lead.email.as_str()).collect();
        let fields: Vec<&serde_json::Value> = chunk.iter().map(|lead| &lead.fields).collect();
        let refused = self
            .tx
            .query(
                &self.insert,
                &[
                    &self.tenant,
                    &self.campaign,
                    &ids,
                    &job_ids,
                    &emails,
                    &fields,
                    &self.priority,
                    &self.jobs_created,
                ],
            )
            .await?;
        let mut fates = vec![LeadFate::Accepted; chunk.len()];
        for row in refused {
            let n: i64 = row.get(0);
            let suppressed: bool = row.get(1);
            let fate = if suppressed {
                LeadFate::Suppressed
            } else {
                LeadFate::Duplicate
            };
            let slot = usize::try_from(n - 1)
                .ok()
                .and_then(|i| fates.get_mut(i))
                .ok_or_else(|| StoreError::Invalid(format!("import row {n} out of range")))?;
            *slot = fate;
        }
        Ok(fates)
    }

    /// Makes the whole import visible at once.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}
