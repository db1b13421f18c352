//! `[redis]`: one server (`url`) or a Redis Cluster (`cluster`, its masters as
//! seeds), the node's pool size, and the CA a `rediss://` server's certificate
//! must chain to.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, positive};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db`, `rediss://host:port/db` (TLS) or
    /// `redis+unix:///path`; `REDIS_URL` overrides.
    pub url: String,
    /// Upper bound of the connection pool of this node (one server; on a
    /// cluster the node shares one multiplexed connection).
    pub pool_size: usize,
    /// PEM file of the CA certificates a `rediss://` server's certificate must
    /// chain to; unset: the operating system's trust store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Seeds of a Redis Cluster (`redis://host:port` or `rediss://…`, any of
    /// its masters): when set, the node uses the cluster and `url` is unused.
    /// Empty: one server, at `url`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster: Vec<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            pool_size: 16,
            ca_file: None,
            cluster: Vec::new(),
        }
    }
}

impl RedisConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|s| self.url.starts_with(s));
        if !scheme_ok {
            return Err(ConfigError::invalid(
                "redis.url",
                "must start with redis://, rediss://, redis+unix:// or unix://",
            ));
        }
        for (i, seed) in self.cluster.iter().enumerate() {
            if !["redis://", "rediss://"]
                .iter()
                .any(|s| seed.starts_with(s))
            {
                return Err(ConfigError::invalid(
                    format!("redis.cluster[{i}]"),
                    "must start with redis:// or rediss://",
                ));
            }
        }
        if self.cluster.iter().any(|s| s.starts_with("rediss://"))
            && self.cluster.iter().any(|s| s.starts_with("redis://"))
        {
            return Err(ConfigError::invalid(
                "redis.cluster",
                "mixes redis:// and rediss:// seeds",
            ));
        }
        let tls = match self.cluster.first() {
            Some(seed) => seed.starts_with("rediss://"),
            None => self.url.starts_with("rediss://"),
        };
        if self.ca_file.is_some() && !tls {
            return Err(ConfigError::invalid(
                "redis.ca_file",
                "is only used with a rediss:// url",
            ));
        }
        positive("redis.pool_size", self.pool_size as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(seeds: &[&str]) -> RedisConfig {
        RedisConfig {
            cluster: seeds.iter().map(|s| s.to_string()).collect(),
            ..RedisConfig::default()
        }
    }

    #[test]
    fn cluster_seeds_are_redis_urls_of_one_kind() {
        cluster(&["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
            .validate()
            .expect("plain seeds");
        let err = cluster(&["redis://127.0.0.1:7000", "http://x:1"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis.cluster[1]"), "{err}");
        let err = cluster(&["redis+unix:///tmp/r.sock"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis.cluster[0]"), "{err}");
        let err = cluster(&["rediss://a:1", "redis://b:1"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("mixes"), "{err}");
    }

    #[test]
    fn a_ca_file_needs_tls_seeds_on_a_cluster() {
        let mut config = cluster(&["redis://a:1"]);
        config.url = "rediss://ignored:1".into();
        config.ca_file = Some("/etc/ca.pem".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("redis.ca_file"), "{err}");
        let mut config = cluster(&["rediss://a:1"]);
        config.ca_file = Some("/etc/ca.pem".into());
        config.validate().expect("TLS seeds with a CA");
    }
}
