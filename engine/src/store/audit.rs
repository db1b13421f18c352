//! The audit log (`audit_log`, `V20__audit_erasure.sql`): who changed what and
//! when — tenants, IPs, tokens, domains, erasures.
//!
//! Written by the API ([`record`]), in the transaction of the change where the
//! route holds one (tokens, IP status changes, erasures), else right after it
//! commits (tenant creation, IP registration and retirement, domains); read by the admin ([`page`], `GET /v1/audit`). Guarantees: an entry
//! holds no personal data — the actor is `admin` or `tenant:<uuid>`, the target
//! ids (or an erased address's pseudonym), the detail counts; the log is
//! append-only (nothing here updates or deletes it); a page is one index range
//! scan, newest first by id.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::db::StoreError;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The admin token.
    Admin,
    /// A token of this tenant.
    Tenant(Uuid),
}

impl Actor {
    /// `admin` or `tenant:<uuid>`, as stored.
    pub fn label(self) -> String {
        match self {
            Actor::Admin => "admin".to_string(),
            Actor::Tenant(tenant) => format!("tenant:{tenant}"),
        }
    }
}

/// One change to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub actor: Actor,
    /// The tenant the change is about, if any.
    pub tenant: Option<Uuid>,
    /// What was done, dotted lower case: `tenant.create`, `ip.add`, `erasure`.
    pub action: &'static str,
    /// What it was done to: ids only (or an erased address's pseudonym).
    pub target: Option<String>,
    /// Counts and flags; never an address or a name.
    pub detail: Value,
}

impl Entry {
    pub fn new(actor: Actor, tenant: Option<Uuid>, action: &'static str) -> Entry {
        Entry {
            actor,
            tenant,
            action,
            target: None,
            detail: Value::Object(Default::default()),
        }
    }

    pub fn target(mut self, target: impl ToString) -> Entry {
        self.target = Some(target.to_string());
        self
    }

    pub fn detail(mut self, detail: Value) -> Entry {
        self.detail = detail;
        self
    }
}

/// Appends `entry`. On a tenant's transaction (`penguin_tenant`) only an entry
/// of that tenant can be written (its row-level-security policy).
pub async fn record(client: &impl GenericClient, entry: &Entry) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO audit_log (actor, tenant_id, action, target, detail)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &entry.actor.label(),
                &entry.tenant,
                &entry.action,
                &entry.target,
                &entry.detail,
            ],
        )
        .await?;
    Ok(())
}

/// One entry as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub at: OffsetDateTime,
    pub actor: String,
    pub tenant: Option<Uuid>,
    pub action: String,
    pub target: Option<String>,
    pub detail: Value,
}

/// What [`page`] filters on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Entries with a smaller id only (the previous page's last id).
    pub before: Option<i64>,
    pub tenant: Option<Uuid>,
    pub action: Option<String>,
}

/// Up to `limit` entries matching `filter`, newest (highest id) first.
pub async fn page(
    client: &impl GenericClient,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<Row>, StoreError> {
    // One statement per filter shape, so each gets its own plan (an index
    // range scan backwards: the primary key, `audit_log_tenant` or
    // `audit_log_action`).
    let before = filter.before.unwrap_or(i64::MAX);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&before, &limit];
    let mut sql = String::from(
        "SELECT id, at, actor, tenant_id, action, target, detail FROM audit_log
         WHERE id < $1",
    );
    if let Some(tenant) = &filter.tenant {
        params.push(tenant);
        sql.push_str(&format!(" AND tenant_id = ${}", params.len()));
    }
    if let Some(action) = &filter.action {
        params.push(action);
        sql.push_str(&format!(" AND action = ${}", params.len()));
    }
    sql.push_str(" ORDER BY id DESC LIMIT $2");
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &params).await?;
    Ok(rows
        .iter()
        .map(|row| Row {
            id: row.get(0),
            at: row.get(1),
            actor: row.get(2),
            tenant: row.get(3),
            action: row.get(4),
            target: row.get(5),
            detail: row.get(6),
        })
        .collect())
}
