//! What the sending-domain routes need besides Postgres: the node's [`Sealer`]
//! (absent without `[secrets] master_key`), a bounded pool of key generations,
//! and the DNS resolver that verifies records (`[delivery.dns]`).
//!
//! Key generation (RSA 2048) is CPU work a tenant can ask for: it runs on a
//! blocking thread, at most `domains.keygen_concurrency` at once on a node; a
//! request that cannot get a slot within [`KEYGEN_WAIT`] is 503 `unavailable`,
//! never a stall of the API's runtime.

use std::sync::Arc;
use std::time::Duration;

use penguin_config::Config;
use penguin_engine::dkim::{self, DkimAlgorithm};
use penguin_engine::dns::HickoryResolver;
use penguin_engine::domain_check::DomainDns;
use penguin_engine::secrets::Sealer;
use penguin_engine::store::domains::{NewKey, key_aad};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::error::AppError;

/// The longest a request waits for a key-generation slot.
pub const KEYGEN_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct DomainKit {
    pub sealer: Option<Arc<Sealer>>,
    pub dns: Arc<dyn DomainDns>,
    keygen: Arc<Semaphore>,
}

impl DomainKit {
    /// From the node's configuration (validated: the master key parses).
    pub fn from_config(config: &Config) -> anyhow::Result<DomainKit> {
        let sealer = Sealer::from_config(&config.secrets)?.map(Arc::new);
        let dns = HickoryResolver::from_config(&config.delivery.dns)?;
        Ok(DomainKit::new(config, sealer, Arc::new(dns)))
    }

    pub fn new(config: &Config, sealer: Option<Arc<Sealer>>, dns: Arc<dyn DomainDns>) -> Self {
        DomainKit {
            sealer,
            dns,
            keygen: Arc::new(Semaphore::new(config.domains.keygen_concurrency)),
        }
    }

    /// The sealer, or 409 `secrets_not_configured`.
    pub fn sealer(&self) -> Result<&Sealer, AppError> {
        self.sealer
            .as_deref()
            .ok_or_else(AppError::secrets_not_configured)
    }

    /// Makes one key per algorithm (RSA, plus Ed25519 when `ed25519`), sealed
    /// for `tenant`'s `domain_id`, with fresh selectors of `now`.
    pub async fn new_keys(
        &self,
        tenant: Uuid,
        domain_id: Uuid,
        ed25519: bool,
        now: OffsetDateTime,
    ) -> Result<Vec<NewKey>, AppError> {
        let sealer = self.sealer()?.clone();
        let permit = tokio::time::timeout(KEYGEN_WAIT, self.keygen.clone().acquire_owned())
            .await
            .map_err(|_| {
                AppError::unavailable_because(
                    "every DKIM key generation slot is busy; retry shortly",
                    "keygen slots exhausted",
                )
            })?
            .expect("the keygen semaphore is never closed");
        let stem = selector_stem(now);
        let generated = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut algorithms = vec![DkimAlgorithm::RsaSha256];
            if ed25519 {
                algorithms.push(DkimAlgorithm::Ed25519Sha256);
            }
            let mut keys = Vec::new();
            for algorithm in algorithms {
                let key = dkim::generate(algorithm).map_err(|e| e.to_string())?;
                let selector = match algorithm {
                    DkimAlgorithm::RsaSha256 => stem.clone(),
                    DkimAlgorithm::Ed25519Sha256 => format!("{stem}ed"),
                };
                let aad = key_aad(tenant, domain_id, &selector);
                keys.push(NewKey {
                    sealed_key: sealer.seal(&key.private_pkcs8, aad.as_bytes()),
                    key_version: sealer.version().to_string(),
                    selector,
                    algorithm: algorithm.as_str().to_string(),
                    public_key: key.public_key_b64,
                });
            }
            Ok::<_, String>(keys)
        })
        .await
        .map_err(|e| AppError::internal(format!("key generation panicked: {e}")))?;
        generated.map_err(|e| AppError::internal(format!("key generation failed: {e}")))
    }
}

/// `pm` + the UTC date + 4 random hex digits: unique per domain in practice,
/// and the date tells an operator how old a key is.
fn selector_stem(now: OffsetDateTime) -> String {
    let date = now.date();
    format!(
        "pm{:04}{:02}{:02}{:04x}",
        date.year(),
        u8::from(date.month()),
        date.day(),
        rand::random::<u16>()
    )
}
