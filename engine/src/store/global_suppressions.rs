//! The operator's suppression list, for every tenant (`/v1/suppressions/global`,
//! admin token): spam traps, litigator lists, recipient domains that asked to be
//! left alone. Entries are addresses or whole domains (`@example.com`), with a
//! reason, an optional note and an optional expiry.
//!
//! Read where it matters through the SQL function `penguin_suppression` of
//! `V17__suppressions_global_domain.sql` (lead import, the claim before sending,
//! follow-ups and requeues), together with the tenant's own list.
//!
//! Guarantees: writes are one bulk statement; adding an entry already in force
//! keeps its reason and note and extends its expiry to the later of the two (no
//! expiry wins); an entry that has lapsed is replaced, as if new. Callers pass
//! entries already normalised (`domain::normalize_suppression_entry`).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use deadpool_postgres::GenericClient;
use serde::Serialize;
use time::OffsetDateTime;

use crate::db::StoreError;

/// Why the operator suppresses an entry (the schema's
/// `global_suppressions.reason` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GlobalReason {
    Manual,
    /// A known spam trap: mailing it ruins an IP's reputation.
    SpamTrap,
    /// A serial litigator (TCPA/CAN-SPAM suits).
    Litigator,
    Complaint,
    HardBounce,
    Unsubscribe,
    /// The address was erased on request (`POST /v1/erasures`): kept so it is
    /// never mailed again.
    Erasure,
}

impl GlobalReason {
    pub const ALL: [GlobalReason; 7] = [
        GlobalReason::Manual,
        GlobalReason::SpamTrap,
        GlobalReason::Litigator,
        GlobalReason::Complaint,
        GlobalReason::HardBounce,
        GlobalReason::Unsubscribe,
        GlobalReason::Erasure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GlobalReason::Manual => "manual",
            GlobalReason::SpamTrap => "spam_trap",
            GlobalReason::Litigator => "litigator",
            GlobalReason::Complaint => "complaint",
            GlobalReason::HardBounce => "hard_bounce",
            GlobalReason::Unsubscribe => "unsubscribe",
            GlobalReason::Erasure => "erasure",
        }
    }
}

impl fmt::Display for GlobalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GlobalReason {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        GlobalReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == s)
            .ok_or(())
    }
}

/// One entry of the global list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalSuppression {
    /// An address, or `@domain`.
    pub email: String,
    pub reason: GlobalReason,
    pub note: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

/// Up to `limit` entries ordered by `email`, after `after` (exclusive).
pub async fn list(
    client: &impl GenericClient,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<GlobalSuppression>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT email, reason, note, created_at, expires_at FROM global_suppressions
             WHERE email > coalesce($1::text, '')
             ORDER BY email
             LIMIT $2",
        )
        .await?;
    let rows = client.query(&stmt, &[&after, &limit]).await?;
    rows.iter()
        .map(|row| {
            let reason: &str = row.get(1);
            Ok(GlobalSuppression {
                email: row.get(0),
                reason: reason
                    .parse()
                    .map_err(|_| StoreError::Invalid(format!("suppression reason {reason}")))?,
                note: row.get(2),
                created_at: row.get(3),
                expires_at: row.get(4),
            })
        })
        .collect()
}

/// Adds `entries` with `reason`, `note` and `expires_at` in one statement;
/// returns `(added, already)` (a lapsed entry replaced counts as added; one in
/// force, or repeated in `entries`, as already).
pub async fn add(
    client: &impl GenericClient,
    entries: &[String],
    reason: GlobalReason,
    note: Option<&str>,
    expires_at: Option<OffsetDateTime>,
) -> Result<(u64, u64), StoreError> {
    let mut seen = HashSet::with_capacity(entries.len());
    let distinct: Vec<&str> = entries
        .iter()
        .map(String::as_str)
        .filter(|entry| seen.insert(*entry))
        .collect();
    if distinct.is_empty() {
        return Ok((0, entries.len() as u64));
    }
    let stmt = client
        .prepare_cached(
            "WITH lapsed AS (
                 SELECT email FROM global_suppressions
                 WHERE email = ANY($1) AND expires_at <= now()
             ), upsert AS (
                 INSERT INTO global_suppressions AS g (email, reason, note, expires_at)
                 SELECT u.email, $2, $3, $4 FROM unnest($1::text[]) AS u(email)
                 ON CONFLICT (email) DO UPDATE SET
                     reason = CASE WHEN g.expires_at <= now() THEN EXCLUDED.reason ELSE g.reason END,
                     note = CASE WHEN g.expires_at <= now() THEN EXCLUDED.note ELSE g.note END,
                     created_at = CASE WHEN g.expires_at <= now() THEN now() ELSE g.created_at END,
                     expires_at = CASE WHEN EXCLUDED.expires_at IS NULL THEN NULL
                                       WHEN g.expires_at <= now() THEN EXCLUDED.expires_at
                                       ELSE greatest(g.expires_at, EXCLUDED.expires_at) END
                 WHERE g.expires_at IS NOT NULL
                 RETURNING g.email, xmax = 0 AS inserted
             )
             SELECT count(*) FROM upsert u
             WHERE u.inserted OR u.email IN (SELECT email FROM lapsed)",
        )
        .await?;
    let added: i64 = client
        .query_one(&stmt, &[&distinct, &reason.as_str(), &note, &expires_at])
        .await?
        .get(0);
    let added = added as u64;
    Ok((added, entries.len() as u64 - added))
}

/// Lifts the global suppression of `email`; [`StoreError::NotFound`] when it is
/// not on the list.
pub async fn remove(client: &impl GenericClient, email: &str) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached("DELETE FROM global_suppressions WHERE email = $1")
        .await?;
    match client.execute(&stmt, &[&email]).await? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}
