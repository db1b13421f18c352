//! Tenants and their API tokens (control plane, written by the API).
//!
//! A tenant token is stored only as its sha256: [`insert_tenant`] takes the hash,
//! [`tenant_of_token`] resolves a presented token's hash to its tenant. A tenant
//! may hold several tokens ([`insert_token`], up to a cap of live ones;
//! [`tokens`]); a revoked one
//! ([`revoke_token`]) stops working at once and stays listed. Also holds
//! [`ping`], the database health probe of `/health/db`.

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::StoreError;

/// One tenant row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
}

/// Creates a tenant and its first API token in one transaction.
pub async fn insert_tenant(
    pool: &Pool,
    id: Uuid,
    name: &str,
    token_id: Uuid,
    token_hash: &[u8],
) -> Result<Tenant, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let insert_tenant = tx
        .prepare_cached("INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING created_at")
        .await?;
    let row = tx.query_one(&insert_tenant, &[&id, &name]).await?;
    let insert_token = tx
        .prepare_cached("INSERT INTO api_tokens (tenant_id, id, token_hash) VALUES ($1, $2, $3)")
        .await?;
    tx.execute(&insert_token, &[&id, &token_id, &token_hash])
        .await?;
    tx.commit().await?;
    Ok(Tenant {
        id,
        name: name.to_string(),
        created_at: row.get(0),
    })
}

/// A live token's owner and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenOwner {
    pub tenant: Uuid,
    pub token_id: Uuid,
}

/// The tenant owning a non-revoked token with this sha256, and the token's id,
/// if any.
pub async fn tenant_of_token(
    pool: &Pool,
    token_hash: &[u8],
) -> Result<Option<TokenOwner>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT tenant_id, id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .await?;
    let row = client.query_opt(&stmt, &[&token_hash]).await?;
    Ok(row.map(|row| TokenOwner {
        tenant: row.get(0),
        token_id: row.get(1),
    }))
}

/// One API token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

fn token_row(row: &tokio_postgres::Row) -> TokenRow {
    TokenRow {
        id: row.get(0),
        created_at: row.get(1),
        revoked_at: row.get(2),
    }
}

/// What [`insert_token`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenIssue {
    Issued(TokenRow),
    /// The tenant already holds `max_live` unrevoked tokens: nothing was added.
    TooMany,
}

/// Namespace of the per-tenant advisory lock that serialises token issuing
/// (the first key of `pg_advisory_xact_lock(int, int)`; no other lock uses it).
const TOKEN_ISSUE_LOCK: i32 = 0x746f_6b6e; // "tokn"

/// Adds a token to an existing tenant unless it already holds `max_live`
/// unrevoked ones; `NotFound` when there is no such tenant. Race-safe: run in
/// a transaction, it first takes a per-tenant transaction lock, so concurrent
/// issues for one tenant count one after another. (An advisory lock, not
/// `FOR UPDATE` on the tenant row: the tenant role may only read `tenants`.)
pub async fn insert_token(
    client: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
    token_hash: &[u8],
    max_live: u32,
) -> Result<TokenIssue, StoreError> {
    let lock = client
        .prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
        .await?;
    client
        .execute(&lock, &[&TOKEN_ISSUE_LOCK, &tenant.to_string()])
        .await?;
    let live = client
        .prepare_cached(
            "SELECT count(*) FROM api_tokens WHERE tenant_id = $1 AND revoked_at IS NULL",
        )
        .await?;
    let live: i64 = client.query_one(&live, &[&tenant]).await?.get(0);
    if live >= i64::from(max_live) {
        return Ok(TokenIssue::TooMany);
    }
    let stmt = client
        .prepare_cached(
            "INSERT INTO api_tokens (tenant_id, id, token_hash)
             SELECT t.id, $2, $3 FROM tenants t WHERE t.id = $1
             RETURNING id, created_at, revoked_at",
        )
        .await?;
    let row = client
        .query_opt(&stmt, &[&tenant, &id, &token_hash])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(TokenIssue::Issued(token_row(&row)))
}

/// A tenant's tokens, oldest first, revoked ones included.
pub async fn tokens(
    client: &impl GenericClient,
    tenant: Uuid,
) -> Result<Vec<TokenRow>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT id, created_at, revoked_at FROM api_tokens
             WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&tenant])
        .await?
        .iter()
        .map(token_row)
        .collect())
}

/// Revokes one of a tenant's tokens (again: no change, the first time stands);
/// `NotFound` when the tenant has no such token.
pub async fn revoke_token(
    client: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
) -> Result<TokenRow, StoreError> {
    let stmt = client
        .prepare_cached(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
             WHERE tenant_id = $1 AND id = $2
             RETURNING id, created_at, revoked_at",
        )
        .await?;
    let row = client
        .query_opt(&stmt, &[&tenant, &id])
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(token_row(&row))
}

/// Whether a tenant exists.
pub async fn tenant_exists(pool: &Pool, id: Uuid) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)")
        .await?;
    Ok(client.query_one(&stmt, &[&id]).await?.get(0))
}

/// A round trip to the database (health check).
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}
