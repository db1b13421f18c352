//! Postgres access: the pool, migrations, and the one place that maps SQLSTATE
//! codes to domain errors.
//!
//! Migrations are the numbered files of `migrations/` embedded at build time and
//! applied by refinery under a Postgres advisory lock, so two nodes starting at
//! once apply them exactly once.
//!
//! [`tenant_transaction`] opens the transaction a tenant's API request runs in:
//! under the role [`TENANT_ROLE`] (not the tables' owner, no superuser, no
//! BYPASSRLS: row-level security applies) with `app.current_tenant_id` set to the
//! tenant, both for this transaction only. The engine's actors keep the owner's
//! role: they work across tenants.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Transaction,
};
use penguin_config::{DatabaseConfig, PgSslMode};
use thiserror::Error;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::db_tls::PgTlsConnector;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// The database role of tenant requests (created by `V5__api_role.sql`): subject
/// to the `tenant_isolation` row-level-security policies, granted only what the
/// tenant routes need.
pub const TENANT_ROLE: &str = "penguin_tenant";

/// Arbitrary constant naming the migration lock ("penguin" in ASCII).
const MIGRATION_LOCK: i64 = 0x70656e6775696e;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Db(tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        match err.code() {
            Some(code) if *code == SqlState::UNIQUE_VIOLATION => {
                StoreError::Conflict(constraint_of(&err))
            }
            Some(code)
                if *code == SqlState::FOREIGN_KEY_VIOLATION
                    || *code == SqlState::CHECK_VIOLATION
                    || *code == SqlState::INVALID_TEXT_REPRESENTATION
                    || *code == SqlState::NOT_NULL_VIOLATION =>
            {
                StoreError::Invalid(constraint_of(&err))
            }
            _ => StoreError::Db(err),
        }
    }
}

fn constraint_of(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map(|db| {
            db.constraint()
                .map(str::to_string)
                .unwrap_or_else(|| db.message().to_string())
        })
        .unwrap_or_else(|| err.to_string())
}

impl StoreError {
    /// Worth retrying: the database or the pool was unavailable, not the request wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Db(err) => err.is_closed() || err.code().is_none(),
            _ => false,
        }
    }
}

/// Builds the connection pool; connects lazily, over TLS as `sslmode` in the
/// URL asks (see `crate::db_tls`).
pub fn pg_pool(config: &DatabaseConfig) -> Result<Pool, StoreError> {
    let tls = config
        .tls()
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let pg = tokio_postgres::Config::from_str(&tls.driver_url)
        .map_err(|e| StoreError::Invalid(format!("database.url: {e}")))?;
    let config_of_manager = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    // Plain unless TLS was asked for: no TLS negotiation at all then.
    let manager = if tls.mode == PgSslMode::Disable {
        Manager::from_config(pg, tokio_postgres::NoTls, config_of_manager)
    } else {
        let connector = PgTlsConnector::new(&tls).map_err(StoreError::Invalid)?;
        Manager::from_config(pg, connector, config_of_manager)
    };
    let wait = Duration::from_millis(config.acquire_timeout_ms);
    Pool::builder(manager)
        .max_size(config.max_connections as usize)
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .recycle_timeout(Some(wait))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Invalid(format!("database pool: {e}")))
}

/// Applies every pending migration, serialised across nodes by an advisory lock.
/// Returns the names of the migrations this call applied.
pub async fn migrate(pool: &Pool) -> Result<Vec<String>, StoreError> {
    migrate_to(pool, None).await
}

/// Like [`migrate`], stopping after migration `version` when given (tests of a
/// migration's data move start from the schema before it).
pub async fn migrate_to(pool: &Pool, version: Option<i32>) -> Result<Vec<String>, StoreError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let mut runner = embedded::migrations::runner();
    if let Some(version) = version {
        runner = runner.set_target(refinery::Target::Version(version));
    }
    let result = runner
        .run_async(&mut **client)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()));
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = result?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| format!("V{}__{}", m.version(), m.name()))
        .collect())
}

/// Begins a transaction scoped to `tenant`: `SET LOCAL ROLE` [`TENANT_ROLE`] and
/// `app.current_tenant_id` = `tenant`, both undone at commit or rollback, so the
/// pooled connection returns to the owner's role. Every row the transaction reads
/// or writes is then one of `tenant`'s, whatever a query's own filters say.
pub async fn tenant_transaction(
    client: &mut Object,
    tenant: Uuid,
) -> Result<Transaction<'_>, StoreError> {
    let tx = client.transaction().await?;
    // One round trip; a Uuid formats as hex and dashes only, so it is safe inline.
    tx.batch_execute(&format!(
        "SET LOCAL ROLE {TENANT_ROLE};
         SELECT set_config('app.current_tenant_id', '{tenant}', true)"
    ))
    .await?;
    Ok(tx)
}
