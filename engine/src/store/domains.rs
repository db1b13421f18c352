//! Sending domains and their DKIM keys (`sending_domains`, `dkim_keys`).
//!
//! Called by the control API (`/v1/domains`), the delivery path
//! ([`signing_keys`]); verifications are recorded by [`super::domain_checks`].
//!
//! Guarantees:
//! - every query filters `tenant_id` explicitly (`None` only where the admin acts
//!   across tenants), so a call never reads or changes another tenant's rows;
//! - a domain name belongs to one tenant in the whole cluster (unique
//!   `lower(domain)`): a second registration is [`StoreError::Conflict`];
//! - private keys come and go only sealed ([`NewKey::sealed_key`]); no read for
//!   the API selects them;
//! - key states move `pending → active → retiring → deleted`: a rotation's keys
//!   are `pending` until their DNS record is seen (or the admin trusts the
//!   domain); then they sign, and the keys they replace stay `retiring`
//!   (published, signing nothing) until `retire_after`;
//! - mail is signed only with `active` keys of a domain that was verified at
//!   least once ([`signing_keys`]).

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::StoreError;

/// A sending domain with its keys, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub domain: String,
    /// `pending`, `verified` or `failed`.
    pub status: String,
    /// The last verification's checks (a JSON array).
    pub checks: serde_json::Value,
    pub ed25519: bool,
    pub verified_at: Option<OffsetDateTime>,
    pub verified_by: Option<String>,
    pub verify_method: Option<String>,
    pub last_checked_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    /// Newest first.
    pub keys: Vec<KeyRow>,
}

/// One DKIM key without its private half.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub selector: String,
    pub algorithm: String,
    pub public_key: String,
    /// `pending`, `active` or `retiring`.
    pub state: String,
    pub created_at: OffsetDateTime,
    pub retire_after: Option<OffsetDateTime>,
}

/// A key to insert: the private half already sealed.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub selector: String,
    pub algorithm: String,
    pub public_key: String,
    pub sealed_key: Vec<u8>,
    pub key_version: String,
}

/// A key that signs: sealed, to be opened by the caller.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub domain_id: Uuid,
    pub selector: String,
    pub algorithm: String,
    pub sealed_key: Vec<u8>,
    pub key_version: String,
}

/// What a sealed key is bound to (the seal's associated data).
pub use super::dkim_keys::key_aad;

const DOMAIN_COLUMNS: &str = "tenant_id, id, domain, status, checks, ed25519, verified_at, \
     verified_by, verify_method, last_checked_at, created_at";

fn domain_of(row: &Row) -> DomainRow {
    DomainRow {
        tenant_id: row.get(0),
        id: row.get(1),
        domain: row.get(2),
        status: row.get(3),
        checks: row.get(4),
        ed25519: row.get(5),
        verified_at: row.get(6),
        verified_by: row.get(7),
        verify_method: row.get(8),
        last_checked_at: row.get(9),
        created_at: row.get(10),
        keys: Vec::new(),
    }
}

/// A domain to register, with its first keys.
#[derive(Debug, Clone)]
pub struct NewDomain<'a> {
    pub tenant: Uuid,
    pub id: Uuid,
    /// Lower case.
    pub domain: &'a str,
    pub ed25519: bool,
    pub keys: &'a [NewKey],
}

/// Registers a domain with its first keys (`active`: nothing to replace),
/// unless the tenant already has `max_per_tenant` domains
/// ([`StoreError::Conflict`] `"too_many_domains"`) or the name is taken
/// ([`StoreError::Conflict`] naming the unique index); [`StoreError::NotFound`]
/// for an unknown tenant.
pub async fn insert(
    pool: &Pool,
    new: &NewDomain<'_>,
    max_per_tenant: u32,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let NewDomain {
        tenant,
        id,
        domain,
        ed25519,
        keys,
    } = *new;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Serialises registrations of one tenant, so the count below holds.
    let locked = tx
        .query_opt("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", &[&tenant])
        .await?;
    if locked.is_none() {
        return Err(StoreError::NotFound);
    }
    let count: i64 = tx
        .query_one(
            "SELECT count(*) FROM sending_domains WHERE tenant_id = $1",
            &[&tenant],
        )
        .await?
        .get(0);
    if count >= i64::from(max_per_tenant) {
        return Err(StoreError::Conflict("too_many_domains".into()));
    }
    tx.execute(
        "INSERT INTO sending_domains (tenant_id, id, domain, ed25519, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)",
        &[&tenant, &id, &domain, &ed25519, &now],
    )
    .await?;
    insert_keys(&tx, tenant, id, keys, "active", now).await?;
    tx.commit().await?;
    Ok(())
}

async fn insert_keys(
    tx: &impl GenericClient,
    tenant: Uuid,
    domain_id: Uuid,
    keys: &[NewKey],
    state: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    for key in keys {
        let activated = (state == "active").then_some(now);
        tx.execute(
            "INSERT INTO dkim_keys (tenant_id, domain_id, selector, algorithm, public_key,
                                    sealed_key, key_version, state, created_at, activated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &tenant,
                &domain_id,
                &key.selector,
                &key.algorithm,
                &key.public_key,
                &key.sealed_key,
                &key.key_version,
                &state,
                &now,
                &activated,
            ],
        )
        .await?;
    }
    Ok(())
}

/// One domain (of `tenant`, or of anyone's for `None`), with its keys.
pub async fn get(
    client: &impl GenericClient,
    tenant: Option<Uuid>,
    id: Uuid,
) -> Result<DomainRow, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {DOMAIN_COLUMNS} FROM sending_domains
                 WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)"
            ),
            &[&id, &tenant],
        )
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut domain = domain_of(&row);
    domain.keys = keys_of(client, domain.tenant_id, domain.id).await?;
    Ok(domain)
}

/// [`get`] on a connection of `pool` (the owner's role).
pub async fn fetch(pool: &Pool, tenant: Option<Uuid>, id: Uuid) -> Result<DomainRow, StoreError> {
    let client = pool.get().await?;
    get(&client, tenant, id).await
}

/// The domains of `tenant` (every tenant's for `None`), oldest first, with keys.
pub async fn list(
    client: &impl GenericClient,
    tenant: Option<Uuid>,
) -> Result<Vec<DomainRow>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT {DOMAIN_COLUMNS} FROM sending_domains
                 WHERE $1::uuid IS NULL OR tenant_id = $1
                 ORDER BY created_at, id"
            ),
            &[&tenant],
        )
        .await?;
    let mut domains: Vec<DomainRow> = rows.iter().map(domain_of).collect();
    // Every listed domain's keys in one query, not one per domain.
    let ids: Vec<Uuid> = domains.iter().map(|d| d.id).collect();
    let rows = client
        .query(
            "SELECT domain_id, selector, algorithm, public_key, state, created_at, retire_after
             FROM dkim_keys WHERE domain_id = ANY($1) AND ($2::uuid IS NULL OR tenant_id = $2)
             ORDER BY created_at DESC, selector",
            &[&ids, &tenant],
        )
        .await?;
    let mut keys: std::collections::HashMap<Uuid, Vec<KeyRow>> = std::collections::HashMap::new();
    for row in &rows {
        keys.entry(row.get(0)).or_default().push(key_of(row, 1));
    }
    for domain in &mut domains {
        domain.keys = keys.remove(&domain.id).unwrap_or_default();
    }
    Ok(domains)
}

/// A [`KeyRow`] from `row`, its columns from `first` on.
fn key_of(row: &Row, first: usize) -> KeyRow {
    KeyRow {
        selector: row.get(first),
        algorithm: row.get(first + 1),
        public_key: row.get(first + 2),
        state: row.get(first + 3),
        created_at: row.get(first + 4),
        retire_after: row.get(first + 5),
    }
}

async fn keys_of(
    client: &impl GenericClient,
    tenant: Uuid,
    domain_id: Uuid,
) -> Result<Vec<KeyRow>, StoreError> {
    let rows = client
        .query(
            "SELECT selector, algorithm, public_key, state, created_at, retire_after
             FROM dkim_keys WHERE tenant_id = $1 AND domain_id = $2
             ORDER BY created_at DESC, selector",
            &[&tenant, &domain_id],
        )
        .await?;
    Ok(rows.iter().map(|row| key_of(row, 0)).collect())
}

/// Deletes a domain and its keys, unless a campaign that may still send (draft,
/// running, paused) sends from it or a subdomain: [`StoreError::Conflict`]
/// `"domain_in_use"`.
pub async fn delete(pool: &Pool, tenant: Uuid, id: Uuid) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT lower(domain) FROM sending_domains WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            &[&tenant, &id],
        )
        .await?
        .ok_or(StoreError::NotFound)?;
    let domain: String = row.get(0);
    let in_use: bool = tx
        .query_one(
            "SELECT EXISTS (
                SELECT 1 FROM campaigns
                WHERE tenant_id = $1 AND status IN ('draft', 'running', 'paused')
                  AND (lower(split_part(from_address, '@', 2)) = $2
                       OR lower(split_part(from_address, '@', 2)) LIKE '%.' || $2))",
            &[&tenant, &domain],
        )
        .await?
        .get(0);
    if in_use {
        return Err(StoreError::Conflict("domain_in_use".into()));
    }
    tx.execute(
        "DELETE FROM sending_domains WHERE tenant_id = $1 AND id = $2",
        &[&tenant, &id],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Adds a rotation's keys (`pending`). At most one rotation at a time: while
/// pending keys exist, [`StoreError::Conflict`] `"rotation_pending"`.
pub async fn add_pending_keys(
    pool: &Pool,
    tenant: Uuid,
    id: Uuid,
    keys: &[NewKey],
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.query_opt(
        "SELECT 1 FROM sending_domains WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        &[&tenant, &id],
    )
    .await?
    .ok_or(StoreError::NotFound)?;
    let pending: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM dkim_keys
                            WHERE tenant_id = $1 AND domain_id = $2 AND state = 'pending')",
            &[&tenant, &id],
        )
        .await?
        .get(0);
    if pending {
        return Err(StoreError::Conflict("rotation_pending".into()));
    }
    insert_keys(&tx, tenant, id, keys, "pending", now).await?;
    tx.execute(
        "UPDATE sending_domains SET updated_at = $3 WHERE tenant_id = $1 AND id = $2",
        &[&tenant, &id, &now],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The verified domain of `tenant` that `from_domain` is, or is under (the
/// longest such), if any. `from_domain` is lower case.
pub async fn verified_covering(
    client: &impl GenericClient,
    tenant: Uuid,
    from_domain: &str,
) -> Result<Option<String>, StoreError> {
    let row = client
        .query_opt(
            "SELECT domain FROM sending_domains
             WHERE tenant_id = $1 AND status = 'verified'
               AND ($2 = lower(domain) OR $2 LIKE '%.' || lower(domain))
             ORDER BY length(domain) DESC LIMIT 1",
            &[&tenant, &from_domain],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// The keys that sign mail from `from_domain` for `tenant`: the active keys of
/// the longest domain covering it that was verified at least once (a domain
/// whose daily check now fails still signs: its keys are what it published),
/// with that domain's name (the `d=`). `None`: nothing signs this From.
pub async fn signing_keys(
    pool: &Pool,
    tenant: Uuid,
    from_domain: &str,
) -> Result<Option<(String, Vec<SigningKey>)>, StoreError> {
    let client = pool.get().await?;
    let Some(row) = client
        .query_opt(
            "SELECT id, lower(domain) FROM sending_domains
             WHERE tenant_id = $1 AND verified_at IS NOT NULL
               AND ($2 = lower(domain) OR $2 LIKE '%.' || lower(domain))
             ORDER BY length(domain) DESC LIMIT 1",
            &[&tenant, &from_domain.to_ascii_lowercase()],
        )
        .await?
    else {
        return Ok(None);
    };
    let domain_id: Uuid = row.get(0);
    let domain: String = row.get(1);
    let rows = client
        .query(
            "SELECT selector, algorithm, sealed_key, key_version FROM dkim_keys
             WHERE tenant_id = $1 AND domain_id = $2 AND state = 'active'
             ORDER BY algorithm DESC, selector",
            &[&tenant, &domain_id],
        )
        .await?;
    let keys = rows
        .iter()
        .map(|row| SigningKey {
            domain_id,
            selector: row.get(0),
            algorithm: row.get(1),
            sealed_key: row.get(2),
            key_version: row.get(3),
        })
        .collect();
    Ok(Some((domain, keys)))
}

/// The addresses of `tenant`'s IPs: what its SPF record must permit.
pub async fn tenant_ip_addresses(
    pool: &Pool,
    tenant: Uuid,
) -> Result<Vec<std::net::IpAddr>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT address FROM smtp_ips WHERE tenant_id = $1 AND status <> 'retired'
             ORDER BY created_at, id",
            &[&tenant],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
