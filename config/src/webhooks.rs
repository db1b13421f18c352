//! `[webhooks]`: where tenants' webhooks may point and what delivering them may
//! cost. `POST /v1/webhooks` refuses an address that resolves to a non-public
//! IP unless its host is listed in `allow_hosts` (exact, e.g. `"127.0.0.1"`),
//! and a tenant past `max_per_tenant`; the dispatcher of each node sends at most
//! `concurrency` requests at once (at most `tenant_concurrency` for one tenant,
//! one per webhook), each cut after `timeout_ms`, with at most `batch_size`
//! events per request, and retries a failed delivery with exponential backoff
//! (`backoff_base_ms` doubling up to `backoff_max_ms`) until `max_age_secs`
//! after its event, when it turns `dead`.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, within};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Hosts (as written in the URL: a name or an IP literal) exempt from the
    /// public-address check.
    pub allow_hosts: Vec<String>,
    /// Most webhooks of one tenant.
    pub max_per_tenant: u32,
    /// Most events in one POST to a receiver.
    pub batch_size: u32,
    /// Longest wait for a receiver's answer (connect, send, headers and body).
    pub timeout_ms: u64,
    /// How long after its event a delivery is retried before it is `dead`.
    pub max_age_secs: u64,
    /// First retry delay; each further retry waits twice the one before.
    pub backoff_base_ms: u64,
    /// Longest delay between two retries.
    pub backoff_max_ms: u64,
    /// Most requests in flight on one node.
    pub concurrency: u32,
    /// Most requests in flight for one tenant on one node.
    pub tenant_concurrency: u32,
    /// Most bytes of a receiver's answer read (kept in `last_error` when it failed).
    pub max_response_bytes: u64,
    /// Longest wait between two looks for due deliveries (events recorded on
    /// other nodes are seen within it).
    pub poll_ms: u64,
    /// Delivered and dead deliveries (with their attempts) are deleted this long
    /// after their event.
    pub retention_secs: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            max_per_tenant: 10,
            batch_size: 100,
            timeout_ms: 10_000,
            max_age_secs: 86_400,
            backoff_base_ms: 5_000,
            backoff_max_ms: 3_600_000,
            concurrency: 32,
            tenant_concurrency: 4,
            max_response_bytes: 4_096,
            poll_ms: 1_000,
            retention_secs: 7 * 86_400,
        }
    }
}

impl WebhooksConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        within(
            "webhooks.max_per_tenant",
            u64::from(self.max_per_tenant),
            1,
            1_000,
        )?;
        within("webhooks.batch_size", u64::from(self.batch_size), 1, 1_000)?;
        within("webhooks.timeout_ms", self.timeout_ms, 100, 600_000)?;
        within("webhooks.max_age_secs", self.max_age_secs, 1, 30 * 86_400)?;
        within(
            "webhooks.backoff_base_ms",
            self.backoff_base_ms,
            10,
            3_600_000,
        )?;
        within(
            "webhooks.backoff_max_ms",
            self.backoff_max_ms,
            self.backoff_base_ms,
            86_400_000,
        )?;
        within(
            "webhooks.concurrency",
            u64::from(self.concurrency),
            1,
            1_024,
        )?;
        within(
            "webhooks.tenant_concurrency",
            u64::from(self.tenant_concurrency),
            1,
            u64::from(self.concurrency),
        )?;
        within(
            "webhooks.max_response_bytes",
            self.max_response_bytes,
            0,
            1_048_576,
        )?;
        within("webhooks.poll_ms", self.poll_ms, 10, 60_000)?;
        within(
            "webhooks.retention_secs",
            self.retention_secs,
            self.max_age_secs,
            366 * 86_400,
        )?;
        for host in &self.allow_hosts {
            if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace()) {
                return Err(ConfigError::invalid(
                    "webhooks.allow_hosts",
                    format!("{host:?} is not a host name or address"),
                ));
            }
        }
        Ok(())
    }

    /// Whether `host` (as written in a webhook URL) is exempt from the
    /// public-address check.
    pub fn allows(&self, host: &str) -> bool {
        self.allow_hosts.iter().any(|allowed| allowed == host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_name_the_key() {
        WebhooksConfig::default().validate().unwrap();
        let cases: [(&str, WebhooksConfig); 5] = [
            (
                "webhooks.batch_size",
                WebhooksConfig {
                    batch_size: 0,
                    ..WebhooksConfig::default()
                },
            ),
            (
                "webhooks.timeout_ms",
                WebhooksConfig {
                    timeout_ms: 1,
                    ..WebhooksConfig::default()
                },
            ),
            (
                "webhooks.backoff_max_ms",
                WebhooksConfig {
                    backoff_max_ms: 1,
                    ..WebhooksConfig::default()
                },
            ),
            (
                "webhooks.tenant_concurrency",
                WebhooksConfig {
                    tenant_concurrency: 33,
                    ..WebhooksConfig::default()
                },
            ),
            (
                "webhooks.allow_hosts",
                WebhooksConfig {
                    allow_hosts: vec!["a b".into()],
                    ..WebhooksConfig::default()
                },
            ),
        ];
        for (key, bad) in cases {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn allow_hosts_match_exactly() {
        let config = WebhooksConfig {
            allow_hosts: vec!["127.0.0.1".into()],
            ..WebhooksConfig::default()
        };
        assert!(config.allows("127.0.0.1"));
        assert!(!config.allows("127.0.0.2"));
        assert!(!config.allows("localhost"));
    }
}
