//! A tenant's suppression list: addresses — or whole domains, `@example.com` —
//! that must not be sent to again, for good or until `expires_at`.
//!
//! Called by the control API (`/v1/suppressions`: [`list`], [`add`], [`remove`])
//! and by the engine's Analytics actor ([`add_many`], hard bounces in batches).
//! The list is read where it matters through the SQL function
//! `penguin_suppression` (with the operator's global list,
//! `store::global_suppressions`): the sending claim, follow-ups and requeues in
//! `store::ledger`, and lead import in `store::leads`.
//!
//! Guarantees: every query filters `tenant_id` explicitly, so a call never reads
//! or changes another tenant's rows; writes are one bulk
//! `INSERT … SELECT FROM unnest() ON CONFLICT DO NOTHING`, so adding an address
//! twice (or concurrently) keeps the first row and its reason (and the later
//! expiry of the two; none wins). An entry past its `expires_at` suppresses
//! nothing and is replaced by the next add, as if new; what the engine records
//! (hard bounces, complaints, unsubscribes: [`add_permanent`], [`add_many`])
//! makes an expiring entry permanent. Callers pass entries already normalised
//! (`domain::normalize_suppression_entry`: trimmed, lower-cased).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// SQL: how every suppression the engine records (a hard bounce, a complaint,
/// an unsubscribe) meets an entry already there, `suppressions AS s`: it stays
/// (its reason too, unless lapsed) and loses its expiry: permanent from now.
macro_rules! permanent_on_conflict {
    () => {
        "ON CONFLICT (tenant_id, email) DO UPDATE SET expires_at = NULL,
             reason = CASE WHEN s.expires_at <= now() THEN EXCLUDED.reason ELSE s.reason END
         WHERE s.expires_at IS NOT NULL "
    };
}

/// Why an address is suppressed (the schema's `suppressions.reason` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// A permanent delivery failure of the address (recorded by the engine).
    HardBounce,
    /// The recipient reported the message as spam.
    Complaint,
    /// The recipient unsubscribed.
    Unsubscribe,
    /// Added by hand through the API.
    Manual,
    /// The address was erased on request (`DELETE /v1/leads?email=`,
    /// `POST /v1/erasures`): the entry keeps it so it is never mailed again.
    Erasure,
}

impl SuppressionReason {
    pub const ALL: [SuppressionReason; 5] = [
        SuppressionReason::HardBounce,
        SuppressionReason::Complaint,
        SuppressionReason::Unsubscribe,
        SuppressionReason::Manual,
        SuppressionReason::Erasure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::HardBounce => "hard_bounce",
            SuppressionReason::Complaint => "complaint",
            SuppressionReason::Unsubscribe => "unsubscribe",
            SuppressionReason::Manual => "manual",
            SuppressionReason::Erasure => "erasure",
        }
    }
}

impl fmt::Display for SuppressionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SuppressionReason {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        SuppressionReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == s)
            .ok_or(())
    }
}

/// One suppressed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// An address, or `@domain` for the whole domain.
    pub email: String,
    pub reason: SuppressionReason,
    pub created_at: OffsetDateTime,
    /// When the entry stops suppressing; `None` = never.
    pub expires_at: Option<OffsetDateTime>,
}

/// Up to `limit` suppressions of `tenant` ordered by email, starting after the
/// email `after` (exclusive; `None` = from the start). One range scan of the
/// primary key `(tenant_id, email)`, whatever the page.
pub async fn list(
    client: &impl GenericClient,
    tenant: Uuid,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Suppression>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT email, reason, created_at, expires_at FROM suppressions
             WHERE tenant_id = $1 AND email > coalesce($2::text, '')
             ORDER BY email
             LIMIT $3",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenant, &after, &limit]).await?;
    rows.iter()
        .map(|row| {
            let reason: &str = row.get(1);
            Ok(Suppression {
                email: row.get(0),
                reason: reason
                    .parse()
                    .map_err(|_| StoreError::Invalid(format!("suppression reason {reason}")))?,
                created_at: row.get(2),
                expires_at: row.get(3),
            })
        })
        .collect()
}

/// Suppresses `emails` for `tenant` with `reason` until `expires_at` (`None`:
/// for good), in one statement. Returns `(added, already)`: how many entries
/// are new (or replaced a lapsed one), and how many were in force before (or
/// repeat an earlier entry of `emails`); together `emails.len()`.
pub async fn add(
    client: &impl GenericClient,
    tenant: Uuid,
    emails: &[String],
    reason: SuppressionReason,
    expires_at: Option<OffsetDateTime>,
) -> Result<(u64, u64), StoreError> {
    let mut seen = HashSet::with_capacity(emails.len());
    let distinct: Vec<&str> = emails
        .iter()
        .map(String::as_str)
        .filter(|email| seen.insert(*email))
        .collect();
    if distinct.is_empty() {
        return Ok((0, emails.len() as u64));
    }
    let stmt = client
        .prepare_cached(
            "WITH lapsed AS (
                 SELECT email FROM suppressions
                 WHERE tenant_id = $1 AND email = ANY($2) AND expires_at <= now()
             ), upsert AS (
                 INSERT INTO suppressions AS s (tenant_id, email, reason, expires_at)
                 SELECT $1, u.email, $3, $4 FROM unnest($2::text[]) AS u(email)
                 ON CONFLICT (tenant_id, email) DO UPDATE SET
                     reason = CASE WHEN s.expires_at <= now() THEN EXCLUDED.reason ELSE s.reason END,
                     created_at = CASE WHEN s.expires_at <= now() THEN now() ELSE s.created_at END,
                     expires_at = CASE WHEN EXCLUDED.expires_at IS NULL THEN NULL
                                       WHEN s.expires_at <= now() THEN EXCLUDED.expires_at
                                       ELSE greatest(s.expires_at, EXCLUDED.expires_at) END
                 WHERE s.expires_at IS NOT NULL
                 RETURNING s.email, xmax = 0 AS inserted
             )
             SELECT count(*) FROM upsert u
             WHERE u.inserted OR u.email IN (SELECT email FROM lapsed)",
        )
        .await?;
    let added: i64 = client
        .query_one(&stmt, &[&tenant, &distinct, &reason.as_str(), &expires_at])
        .await?
        .get(0);
    let added = added as u64;
    Ok((added, emails.len() as u64 - added))
}

/// Suppresses `email` for `tenant` for good with `reason` (what the engine
/// records: a hard bounce, a complaint). An entry already there keeps its
/// reason but loses its expiry. Returns whether the address was not suppressed
/// for good before.
pub async fn add_permanent(
    client: &impl GenericClient,
    tenant: Uuid,
    email: &str,
    reason: SuppressionReason,
) -> Result<bool, StoreError> {
    let stmt = client
        .prepare_cached(concat!(
            "INSERT INTO suppressions AS s (tenant_id, email, reason) VALUES ($1, $2, $3) ",
            permanent_on_conflict!()
        ))
        .await?;
    Ok(client
        .execute(&stmt, &[&tenant, &email, &reason.as_str()])
        .await?
        > 0)
}

/// Lifts the suppression of `email` for `tenant`; [`StoreError::NotFound`] when
/// the address is not on the tenant's list.
pub async fn remove(
    client: &impl GenericClient,
    tenant: Uuid,
    email: &str,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached("DELETE FROM suppressions WHERE tenant_id = $1 AND email = $2")
        .await?;
    match client.execute(&stmt, &[&tenant, &email]).await? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// Suppresses many `(tenant, email, reason)` rows of any tenants in one
/// statement (the Analytics actor's batch of hard bounces); rows already present
/// keep their first reason (unless lapsed) and lose their expiry. `reason` is one of [`SuppressionReason::as_str`]
/// (anything else is [`StoreError::Invalid`] and nothing is written). Returns how
/// many rows are new.
pub async fn add_many(pool: &Pool, rows: &[(Uuid, String, &str)]) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    // One row per (tenant, email), the first: a statement may update a row once.
    let mut seen = HashSet::with_capacity(rows.len());
    let rows: Vec<&(Uuid, String, &str)> = rows
        .iter()
        .filter(|(tenant, email, _)| seen.insert((*tenant, email.as_str())))
        .collect();
    let tenants: Vec<Uuid> = rows.iter().map(|(tenant, _, _)| *tenant).collect();
    let emails: Vec<&str> = rows.iter().map(|(_, email, _)| email.as_str()).collect();
    let reasons: Vec<&str> = rows.iter().map(|(_, _, reason)| *reason).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(concat!(
            "INSERT INTO suppressions AS s (tenant_id, email, reason)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) ",
            permanent_on_conflict!()
        ))
        .await?;
    Ok(client
        .execute(&stmt, &[&tenants, &emails, &reasons])
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_their_names() {
        for reason in SuppressionReason::ALL {
            assert_eq!(reason.as_str().parse(), Ok(reason));
            assert_eq!(reason.to_string(), reason.as_str());
        }
        assert!("bounce".parse::<SuppressionReason>().is_err());
        assert!("Manual".parse::<SuppressionReason>().is_err());
        assert_eq!(
            serde_json::to_value(SuppressionReason::HardBounce).unwrap(),
            "hard_bounce"
        );
    }
}

/// The recipient of one job (for the unsubscribe page), if the job exists.
pub async fn job_recipient(
    pool: &Pool,
    tenant: Uuid,
    job: Uuid,
) -> Result<Option<String>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT l.email FROM send_jobs j
             JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             WHERE j.tenant_id = $1 AND j.id = $2",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&tenant, &job])
        .await?
        .map(|row| row.get(0)))
}

/// What an unsubscribe did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribed {
    pub email: String,
    /// `false` when the address was already suppressed (a repeated click).
    pub newly: bool,
}

/// Suppresses the recipient of `job` for its tenant (reason `unsubscribe`) and
/// records an `unsubscribed` delivery event the first time, in one statement.
/// `None` when the job does not exist.
pub async fn unsubscribe_job(
    pool: &Pool,
    tenant: Uuid,
    job: Uuid,
) -> Result<Option<Unsubscribed>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(concat!(
            "WITH target AS (
                 SELECT j.tenant_id, j.campaign_id, j.id, j.ip_id, l.email
                 FROM send_jobs j
                 JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
                 WHERE j.tenant_id = $1 AND j.id = $2
             ), added AS (
                 INSERT INTO suppressions AS s (tenant_id, email, reason)
                 SELECT tenant_id, email, 'unsubscribe' FROM target
                 ",
            permanent_on_conflict!(),
            "
                 RETURNING s.email
             ), event AS (
                 INSERT INTO delivery_events (tenant_id, campaign_id, job_id, ip_id, kind, reply)
                 SELECT tenant_id, campaign_id, id, ip_id, 'unsubscribed', 'List-Unsubscribe'
                 FROM target WHERE EXISTS (SELECT 1 FROM added)
             )
             SELECT email, EXISTS (SELECT 1 FROM added) FROM target"
        ))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&tenant, &job])
        .await?
        .map(|row| Unsubscribed {
            email: row.get(0),
            newly: row.get(1),
        }))
}
