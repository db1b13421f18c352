//! Erasure of one address in one tenant (issue 23): `DELETE /v1/leads?email=`
//! (the tenant, under its role) and `POST /v1/erasures` (the admin, every
//! tenant that holds the address, one transaction each).
//!
//! [`erase_in_tenant`], in the caller's transaction, in this order:
//! 1. locks the address's leads (one per campaign at most: every campaign's
//!    `(tenant_id, campaign_id, email)` key probed once), then their jobs —
//!    the order the follow-up writer takes them in, while the sending claim
//!    locks jobs only, so no lock cycle;
//! 2. refuses with [`StoreError::Conflict`] while one of those jobs is
//!    `sending` (an SMTP transaction is under way: its outcome must find its
//!    job); nothing has changed then, and a retry a moment later succeeds.
//!    A `queued` job is deleted: its claim later finds no row and drops the
//!    message (the claim only moves rows that are `queued`);
//! 3. keeps or adds the tenant's suppression of the address, for good
//!    (reason `erasure` when new; an entry in force keeps its reason and
//!    loses its expiry), so it is never mailed again — the suppression keeps
//!    the address by design: it is the one row that must;
//! 4. rewrites the `reply` text of the jobs' delivery events: every
//!    occurrence of the address, in any case, becomes its pseudonym. The
//!    events stay, with their kinds and counts; rollups are not touched;
//! 5. deletes the jobs, then the leads (their template fields with them).
//!
//! Plain statements only: works the same whether `delivery_events` is a plain
//! or a partitioned table. Bounded: a tenant holds at most one lead of an
//! address per campaign.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::suppressions::{self, SuppressionReason};
use crate::db::StoreError;
use crate::erasure::text_pattern;

/// What an erasure changed in one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Leads deleted (campaigns that held the address).
    pub leads: u64,
    /// Send jobs deleted (every step of every one of those leads).
    pub jobs: u64,
    /// Delivery events of those jobs: kept, now tied to no address.
    pub events: u64,
    /// Of those, the events whose text held the address, rewritten.
    pub events_rewritten: u64,
    /// Whether the suppression is new (or was not for good before).
    pub suppression_added: bool,
}

/// Erases `email` (normalised) from `tenant`, replacing it with `pseudonym`
/// in event text; see the module doc. [`StoreError::Conflict`] while a job of
/// the address is being sent: the transaction must then be rolled back.
pub async fn erase_in_tenant(
    client: &impl GenericClient,
    tenant: Uuid,
    email: &str,
    pseudonym: &str,
) -> Result<Erased, StoreError> {
    let leads = client
        .prepare_cached(
            "SELECT l.id, l.campaign_id FROM campaigns c
             JOIN leads l ON l.tenant_id = c.tenant_id AND l.campaign_id = c.id AND l.email = $2
             WHERE c.tenant_id = $1
             FOR UPDATE OF l",
        )
        .await?;
    let (lead_ids, campaign_ids): (Vec<Uuid>, Vec<Uuid>) = client
        .query(&leads, &[&tenant, &email])
        .await?
        .iter()
        .map(|row| (row.get::<_, Uuid>(0), row.get::<_, Uuid>(1)))
        .unzip();
    let jobs = client
        .prepare_cached(
            "SELECT j.id, j.status FROM unnest($2::uuid[], $3::uuid[]) AS u(lead_id, campaign_id)
             JOIN send_jobs j ON j.tenant_id = $1 AND j.campaign_id = u.campaign_id
                             AND j.lead_id = u.lead_id
             FOR UPDATE OF j",
        )
        .await?;
    let rows = client
        .query(&jobs, &[&tenant, &lead_ids, &campaign_ids])
        .await?;
    if rows.iter().any(|row| row.get::<_, &str>(1) == "sending") {
        return Err(StoreError::Conflict(
            "a message to this address is being sent right now; try again in a minute".into(),
        ));
    }
    let job_ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();

    let suppression_added =
        suppressions::add_permanent(client, tenant, email, SuppressionReason::Erasure).await?;

    let mut erased = Erased {
        suppression_added,
        ..Erased::default()
    };
    if !job_ids.is_empty() {
        let count = client
            .prepare_cached(
                "SELECT count(*) FROM delivery_events WHERE tenant_id = $1 AND job_id = ANY($2)",
            )
            .await?;
        let events: i64 = client.query_one(&count, &[&tenant, &job_ids]).await?.get(0);
        erased.events = events as u64;
        let rewrite = client
            .prepare_cached(
                "UPDATE delivery_events SET reply = regexp_replace(reply, $3, $4, 'gi')
                 WHERE tenant_id = $1 AND job_id = ANY($2) AND reply ~* $3",
            )
            .await?;
        erased.events_rewritten = client
            .execute(
                &rewrite,
                &[&tenant, &job_ids, &text_pattern(email), &pseudonym],
            )
            .await?;
        // The jobs' once-only event keys (V19) go with them.
        let delete_keys = client
            .prepare_cached(
                "DELETE FROM delivery_event_keys WHERE tenant_id = $1 AND job_id = ANY($2)",
            )
            .await?;
        client.execute(&delete_keys, &[&tenant, &job_ids]).await?;
        let delete_jobs = client
            .prepare_cached("DELETE FROM send_jobs WHERE tenant_id = $1 AND id = ANY($2)")
            .await?;
        erased.jobs = client.execute(&delete_jobs, &[&tenant, &job_ids]).await?;
    }
    if !lead_ids.is_empty() {
        let delete_leads = client
            .prepare_cached("DELETE FROM leads WHERE tenant_id = $1 AND id = ANY($2)")
            .await?;
        erased.leads = client.execute(&delete_leads, &[&tenant, &lead_ids]).await?;
    }
    Ok(erased)
}

/// The tenants holding a lead of `email` (normalised), in id order: every
/// campaign's `(tenant_id, campaign_id, email)` key probed once (the admin's
/// erasure; on the owner's role).
pub async fn tenants_holding(
    client: &impl GenericClient,
    email: &str,
) -> Result<Vec<Uuid>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT DISTINCT c.tenant_id FROM campaigns c
             JOIN leads l ON l.tenant_id = c.tenant_id AND l.campaign_id = c.id AND l.email = $1
             ORDER BY 1",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&email])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}
