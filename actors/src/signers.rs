//! Per-node cache of the DKIM signers of each (tenant, From domain).
//!
//! The delivery workers ask [`SignerCache::get`] before every render; the signers
//! are built from the tenant's active keys of the verified domain covering the
//! From (`store::domains::signing_keys`), opened with the node's [`Sealer`] and
//! kept for `domains.signer_cache_secs` (60 s by default): a rotation's key
//! starts signing on every node within that time of its verification, with one
//! query per (tenant, domain) and period while mail flows, none while it does not. Opened private keys live only inside
//! the signers, never in logs.
//!
//! Outcomes:
//! - no verified domain covers the From (a campaign made before the domain was
//!   required, or with `domains.require_verified = false`): no signers — the
//!   message goes unsigned, counted in `penguin_dkim_unsigned_total`;
//! - a key that cannot be opened (no `[secrets] master_key` on this node, or a
//!   master key that did not seal it): [`SignerError::Key`], the job is
//!   postponed, never sent unsigned from a domain that has keys;
//! - Postgres unreadable: [`SignerError::Store`], the job is released and tried
//!   again as soon as the store answers (like an unavailable campaign).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use penguin_engine::dkim::{DkimAlgorithm, DkimSigner};
use penguin_engine::secrets::Sealer;
use penguin_engine::store::domains::{self, key_aad};
use uuid::Uuid;

/// The most (tenant, domain) entries kept; past it the cache starts over.
pub const MAX_ENTRIES: usize = 10_000;

/// The signers of one From domain (RSA first); empty: sent unsigned.
pub type Signers = Arc<[Arc<DkimSigner>]>;

/// Why a message of a domain with keys cannot be signed now.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("dkim: the signing keys could not be read: {0}")]
    Store(#[from] penguin_engine::db::StoreError),
    #[error("dkim: {0}")]
    Key(String),
}

pub struct SignerCache {
    sealer: Option<Arc<Sealer>>,
    ttl: Duration,
    entries: Mutex<HashMap<(Uuid, String), (Instant, Signers)>>,
}

impl SignerCache {
    pub fn new(sealer: Option<Arc<Sealer>>, ttl: Duration) -> SignerCache {
        SignerCache {
            sealer,
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The node's sealer (`[secrets] master_key`), for the other secrets it
    /// opens (webhook signing secrets).
    pub fn sealer(&self) -> Option<Arc<Sealer>> {
        self.sealer.clone()
    }

    /// The signers for mail of `tenant` from `from_domain`.
    pub async fn get(
        &self,
        pg: &Pool,
        tenant: Uuid,
        from_domain: &str,
    ) -> Result<Signers, SignerError> {
        let key = (tenant, from_domain.to_ascii_lowercase());
        if let Some((at, signers)) = self.entries.lock().expect("signer cache").get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(signers.clone());
        }
        let signers = self.load(pg, tenant, &key.1).await?;
        let mut entries = self.entries.lock().expect("signer cache");
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), signers.clone()));
        Ok(signers)
    }

    async fn load(
        &self,
        pg: &Pool,
        tenant: Uuid,
        from_domain: &str,
    ) -> Result<Signers, SignerError> {
        let Some((domain, keys)) = domains::signing_keys(pg, tenant, from_domain).await? else {
            return Ok(Arc::from(Vec::new()));
        };
        if keys.is_empty() {
            return Ok(Arc::from(Vec::new()));
        }
        let Some(sealer) = &self.sealer else {
            return Err(SignerError::Key(format!(
                "{domain} has DKIM keys but this node has no [secrets] master_key"
            )));
        };
        let mut signers = Vec::with_capacity(keys.len());
        for key in keys {
            let aad = key_aad(tenant, key.domain_id, &key.selector);
            let pkcs8 = sealer
                .open(&key.sealed_key, &key.key_version, aad.as_bytes())
                .map_err(|e| {
                    SignerError::Key(format!(
                        "the key {} of {domain} does not open ({e})",
                        key.selector
                    ))
                })?;
            let algorithm: DkimAlgorithm = key
                .algorithm
                .parse()
                .map_err(|_| SignerError::Key(format!("unknown algorithm {:?}", key.algorithm)))?;
            let signer = DkimSigner::new(&domain, &key.selector, algorithm, &pkcs8)
                .map_err(|e| SignerError::Key(format!("the key {}: {e}", key.selector)))?;
            signers.push(Arc::new(signer));
        }
        Ok(Arc::from(signers))
    }
}
