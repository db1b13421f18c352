//! `[domains]`: tenants' sending domains — whether campaigns must send as a
//! verified domain, how often verified domains are checked again, how long a
//! rotated-out DKIM key stays published, and what a tenant can make the node spend
//! on them (RSA key generation is CPU work: at most `keygen_concurrency` at once,
//! at most `max_per_tenant` domains per tenant).

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, within};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainsConfig {
    /// `POST /v1/campaigns` refuses a From whose domain (or a parent of it) is
    /// not a verified sending domain of the tenant (422 `domain_not_verified`).
    pub require_verified: bool,
    /// Verified domains are checked in DNS again this often.
    pub recheck_hours: u64,
    /// After a rotation, the old key signs nothing but stays in `dns_records`
    /// (and valid for receivers) this long after the new one took over.
    pub rotation_grace_hours: u64,
    /// Most DKIM key generations running at once on one node (blocking threads).
    pub keygen_concurrency: usize,
    /// Most sending domains one tenant may register.
    pub max_per_tenant: u32,
    /// How long a node reuses a domain's opened signing keys before it reads
    /// them again: a rotation's key signs on every node at most this long after
    /// it verified.
    pub signer_cache_secs: u64,
}

impl Default for DomainsConfig {
    fn default() -> Self {
        Self {
            require_verified: true,
            recheck_hours: 24,
            rotation_grace_hours: 72,
            keygen_concurrency: 2,
            max_per_tenant: 100,
            signer_cache_secs: 60,
        }
    }
}

impl DomainsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        within("domains.recheck_hours", self.recheck_hours, 1, 24 * 30)?;
        within(
            "domains.rotation_grace_hours",
            self.rotation_grace_hours,
            0,
            24 * 365,
        )?;
        within(
            "domains.keygen_concurrency",
            self.keygen_concurrency as u64,
            1,
            64,
        )?;
        within(
            "domains.max_per_tenant",
            u64::from(self.max_per_tenant),
            1,
            100_000,
        )?;
        within(
            "domains.signer_cache_secs",
            self.signer_cache_secs,
            1,
            3_600,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_name_the_key() {
        DomainsConfig::default().validate().unwrap();
        let bad = DomainsConfig {
            keygen_concurrency: 0,
            ..DomainsConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("domains.keygen_concurrency"), "{err}");
    }
}
