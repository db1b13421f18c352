//! Lead import: many leads into one campaign, in bulk, in one transaction.
//!
//! [`import_leads`] holds the campaign row `FOR SHARE` for the whole import, so a
//! concurrent `start` (which locks the row `FOR UPDATE`) runs strictly before it
//! (and the import then creates the jobs itself) or strictly after it (and then
//! sees every imported lead). Leads are written one `INSERT … SELECT FROM unnest()`
//! per chunk of [`CHUNK`]; an address already in the campaign or suppressed for the
//! tenant is skipped and reported as such.
//!
//! An import is a tenant's request: its transaction runs under the tenant role
//! with `app.current_tenant_id` set ([`crate::db::tenant_transaction`]), so
//! row-level security confines it to the tenant's rows besides its own filters.

use std::collections::HashSet;

use deadpool_postgres::{Object, Pool, Transaction};
use tokio_postgres::Statement;
use uuid::Uuid;

use crate::db::StoreError;
use crate::domain::CampaignStatus;

/// Leads per statement.
pub const CHUNK: usize = 1_000;

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
    /// The address is on the tenant's suppression list.
    Suppressed,
    /// The campaign already has this address.
    Duplicate,
}

/// The result of [`import_leads`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The campaign's status during the import.
    pub status: CampaignStatus,
    /// One entry per offered lead, in order.
    pub fates: Vec<LeadFate>,
    /// Whether send jobs were created (the campaign is running or paused).
    pub jobs_created: bool,
}

/// Imports leads into a campaign of `tenant` that is `draft`, `running` or
/// `paused` ([`StoreError::Conflict`] otherwise, [`StoreError::NotFound`] when
/// absent or foreign). For a running or paused campaign the new leads' `pending`
/// jobs are created in the same transaction. `leads` must hold distinct emails.
pub async fn import_leads(
    pool: &Pool,
    tenant: Uuid,
    campaign: Uuid,
    leads: &[NewLead],
) -> Result<ImportOutcome, StoreError> {
    let mut client = pool.get().await?;
    let mut import = LeadImport::begin(&mut client, tenant, campaign).await?;
    let mut fates = Vec::with_capacity(leads.len());
    for chunk in leads.chunks(CHUNK) {
        fates.extend(import.add(chunk).await?);
    }
    let (status, jobs_created) = (import.status, import.jobs_created);
    import.commit().await?;
    Ok(ImportOutcome {
        status,
        fates,
        jobs_created,
    })
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
    suppressed_stmt: Statement,
    insert_leads: Statement,
    insert_jobs: Statement,
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
            CampaignStatus::Running | CampaignStatus::Paused => true,
            CampaignStatus::Completed | CampaignStatus::Cancelled => {
                return Err(StoreError::Conflict(format!(
                    "cannot add leads to a campaign that is {status}"
                )));
            }
        };
        let suppressed_stmt = tx
            .prepare_cached(
                "SELECT email FROM suppressions WHERE tenant_id = $1 AND email = ANY($2)",
            )
            .await?;
        let insert_leads = tx
            .prepare_cached(
                "INSERT INTO leads (tenant_id, campaign_id, id, email, fields)
                 SELECT $1, $2, gen_random_uuid(), u.email, u.fields
                 FROM unnest($3::text[], $4::jsonb[]) AS u(email, fields)
                 ON CONFLICT (tenant_id, campaign_id, email) DO NOTHING
                 RETURNING id, email",
            )
            .await?;
        let insert_jobs = tx
            .prepare_cached(
                "INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority, run_at)
                 SELECT $1, gen_random_uuid(), $2, u.id, $4, now()
                 FROM unnest($3::uuid[]) AS u(id)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        Ok(LeadImport {
            tx,
            tenant,
            campaign,
            priority,
            status,
            jobs_created,
            suppressed_stmt,
            insert_leads,
            insert_jobs,
        })
    }

    /// Adds one chunk (at most a few thousand leads with distinct emails); returns
    /// each lead's fate, in order. An address the campaign already has — from
    /// before or from an earlier chunk — is a `Duplicate`.
    pub async fn add(&mut self, chunk: &[NewLead]) -> Result<Vec<LeadFate>, StoreError> {
        let (tenant, campaign) = (self.tenant, self.campaign);
        let emails: Vec<&str> = chunk.iter().map(|lead| lead.email.as_str()).collect();
        let suppressed: HashSet<String> = self
            .tx
            .query(&self.suppressed_stmt, &[&tenant, &emails])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let offered: Vec<&NewLead> = chunk
            .iter()
            .filter(|lead| !suppressed.contains(&lead.email))
            .collect();
        let offered_emails: Vec<&str> = offered.iter().map(|lead| lead.email.as_str()).collect();
        let offered_fields: Vec<&serde_json::Value> =
            offered.iter().map(|lead| &lead.fields).collect();
        let inserted = self
            .tx
            .query(
                &self.insert_leads,
                &[&tenant, &campaign, &offered_emails, &offered_fields],
            )
            .await?;
        let lead_ids: Vec<Uuid> = inserted.iter().map(|row| row.get(0)).collect();
        let accepted: HashSet<String> = inserted.iter().map(|row| row.get(1)).collect();
        if self.jobs_created && !lead_ids.is_empty() {
            self.tx
                .execute(
                    &self.insert_jobs,
                    &[&tenant, &campaign, &lead_ids, &self.priority],
                )
                .await?;
        }
        Ok(chunk
            .iter()
            .map(|lead| {
                if suppressed.contains(&lead.email) {
                    LeadFate::Suppressed
                } else if accepted.contains(&lead.email) {
                    LeadFate::Accepted
                } else {
                    LeadFate::Duplicate
                }
            })
            .collect())
    }

    /// Makes the whole import visible at once.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}
