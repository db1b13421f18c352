//! The plain sections of the configuration: database, redis, api, node, queue, tracking.
//! Delivery (routes, timeouts, retries) lives in `delivery.rs`; the public
//! listener and the connection limits of both listeners in `public.rs`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, positive};
use crate::public::HttpLimits;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:pass@host:port/db` or a key=value string; `DATABASE_URL`
    /// overrides. TLS with libpq's `sslmode` and `sslrootcert` (see `db_tls.rs`).
    pub url: String,
    /// Upper bound of the engine's connection pool of this node (actors: feeder,
    /// status writes, outcomes, leases). The control API never draws from it.
    pub max_connections: u32,
    /// Upper bound of the control API's own connection pool of this node, apart
    /// from the engine's, so no number of API requests can stop sending.
    pub api_max_connections: u32,
    /// How long a caller waits for a pooled connection before failing, in ms
    /// (an API request then answers 503 `unavailable`).
    pub acquire_timeout_ms: u64,
    /// A timed store operation (the hot path: ledger transitions, the Feeder's
    /// claim, event and rollup writes, the backlog count) taking at least this
    /// long, in ms, counts in `penguin_db_slow_queries_total{op}` and logs a
    /// warning. 0 counts every timed operation (a test of the alert path).
    pub slow_query_ms: u64,
}

/// Largest `database.slow_query_ms`: an hour.
pub const MAX_SLOW_QUERY_MS: u64 = 3_600_000;

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/penguin".into(),
            max_connections: 16,
            api_max_connections: 8,
            acquire_timeout_ms: 5_000,
            slow_query_ms: 2_000,
        }
    }
}

impl DatabaseConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.url.trim().is_empty() {
            return Err(ConfigError::invalid("database.url", "must not be empty"));
        }
        self.tls()?;
        positive("database.max_connections", self.max_connections.into())?;
        positive(
            "database.api_max_connections",
            self.api_max_connections.into(),
        )?;
        positive("database.acquire_timeout_ms", self.acquire_timeout_ms)?;
        if self.slow_query_ms > MAX_SLOW_QUERY_MS {
            return Err(ConfigError::invalid(
                "database.slow_query_ms",
                format!("must be at most {MAX_SLOW_QUERY_MS} (an hour)"),
            ));
        }
        Ok(())
    }

    /// The settings of the control API's pool: these, sized
    /// `api_max_connections` instead of `max_connections`.
    pub fn api_pool(&self) -> DatabaseConfig {
        DatabaseConfig {
            max_connections: self.api_max_connections,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address the control API listens on: `/v1/*`, `/metrics`, `/health/*`,
    /// `/openapi.json`, `/docs` (the public links are on `public.listen`).
    pub listen: String,
    /// Bearer token of the operator (manages tenants, IPs, nodes). Required: no
    /// default, at least 32 characters, never a published example.
    pub admin_token: String,
    /// Largest accepted request body, in bytes (larger answers 413).
    pub max_body_bytes: usize,
    /// Largest streamed lead import (JSON or `text/csv`), in bytes (larger answers 413).
    pub max_import_bytes: usize,
    /// Longest time a request may take before it answers 503, in ms.
    pub request_timeout_ms: u64,
    /// How long `pause` waits for SMTP transactions already under way, in ms.
    pub pause_drain_timeout_ms: u64,
    /// Requests each authenticated token (the admin's too) may make per minute,
    /// on average; 0 = no limit. Tokens that fail to authenticate count
    /// against `auth_failures_*` of their address instead.
    pub rate_limit_per_minute: u32,
    /// Requests a token may make at once before the per-minute rate applies.
    pub rate_limit_burst: u32,
    /// Failed authentications (no, malformed, unknown or revoked token) one
    /// client address may make per minute, on average; past them every request
    /// from it that needs a token answers 429 before any token lookup. 0 = off.
    pub auth_failures_per_minute: u32,
    /// Failed authentications an address may make at once before the
    /// per-minute rate applies.
    pub auth_failures_burst: u32,
    /// Most live (unrevoked) API tokens one tenant may hold; issuing another
    /// answers 409 `too_many_tokens`.
    pub max_tokens_per_tenant: u32,
    /// Most lead imports one tenant may run at once on this node; another
    /// answers 429 `too_many_imports`.
    pub max_concurrent_imports_per_tenant: u32,
    /// Slowest upload an import may send, in bytes per second, measured over
    /// `import_rate_window_ms` of waiting for the body; slower ones are cut off
    /// (408 `upload_too_slow`) and roll back. 0 = off.
    pub import_min_bytes_per_sec: u64,
    /// The window over which `import_min_bytes_per_sec` is measured, in ms.
    pub import_rate_window_ms: u64,
    /// Most connections open at once on `listen`; past it a new connection is
    /// closed at once.
    pub max_connections: usize,
    /// A request line and headers must arrive within this, in ms.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight is closed after this, in ms.
    pub idle_timeout_ms: u64,
    /// How often one background task per node asks the SMTP routes for their
    /// greeting; `/health/email` reports the last result, in ms.
    pub email_health_interval_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8025".into(),
            admin_token: String::new(),
            max_body_bytes: 64 * 1024 * 1024,
            max_import_bytes: 1024 * 1024 * 1024,
            request_timeout_ms: 120_000,
            pause_drain_timeout_ms: 30_000,
            rate_limit_per_minute: 6_000,
            rate_limit_burst: 1_000,
            auth_failures_per_minute: 60,
            auth_failures_burst: 30,
            max_tokens_per_tenant: 100,
            max_concurrent_imports_per_tenant: 2,
            import_min_bytes_per_sec: 1_024,
            import_rate_window_ms: 10_000,
            max_connections: 256,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            email_health_interval_ms: 30_000,
        }
    }
}

impl ApiConfig {
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits::new(
            self.max_connections,
            self.header_read_timeout_ms,
            self.idle_timeout_ms,
        )
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.listen.parse::<SocketAddr>().map_err(|e| {
            ConfigError::invalid("api.listen", format!("not a socket address: {e}"))
        })?;
        positive("api.max_body_bytes", self.max_body_bytes as u64)?;
        positive("api.max_import_bytes", self.max_import_bytes as u64)?;
        positive("api.request_timeout_ms", self.request_timeout_ms)?;
        positive("api.pause_drain_timeout_ms", self.pause_drain_timeout_ms)?;
        if self.rate_limit_per_minute > 0 {
            positive("api.rate_limit_burst", self.rate_limit_burst.into())?;
        }
        if self.auth_failures_per_minute > 0 {
            positive("api.auth_failures_burst", self.auth_failures_burst.into())?;
        }
        positive(
            "api.max_tokens_per_tenant",
            self.max_tokens_per_tenant.into(),
        )?;
        positive(
            "api.max_concurrent_imports_per_tenant",
            self.max_concurrent_imports_per_tenant.into(),
        )?;
        if self.import_min_bytes_per_sec > 0 {
            positive("api.import_rate_window_ms", self.import_rate_window_ms)?;
            if self.import_rate_window_ms >= self.request_timeout_ms {
                return Err(ConfigError::invalid(
                    "api.import_rate_window_ms",
                    "must be less than api.request_timeout_ms (a trickle must be cut off before the request times out)",
                ));
            }
        }
        self.http_limits().validate("api")?;
        positive(
            "api.email_health_interval_ms",
            self.email_health_interval_ms,
        )?;
        if self.pause_drain_timeout_ms >= self.request_timeout_ms {
            return Err(ConfigError::invalid(
                "api.pause_drain_timeout_ms",
                "must be less than api.request_timeout_ms (a pause must answer before the request times out)",
            ));
        }
        Ok(())
    }
}

/// The most partitions a cluster may have: a fencing token keeps the partition
/// in its low 16 bits (`engine::store::fences`).
pub const MAX_PARTITIONS: u32 = 4_096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Unique name of this node in the cluster (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// How long a tenant lease lives without renewal, in ms.
    pub lease_ttl_ms: u64,
    /// How often leases are renewed and membership is refreshed, in ms.
    pub heartbeat_ms: u64,
    /// How many partitions the tenants hash into (`engine::partition`). Nodes
    /// lease partitions, not tenants, so lease and membership traffic follows
    /// this number, not the number of tenants. Fixed for a cluster's life: the
    /// first node to start records it in Postgres and every node checks it.
    pub partitions: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: "node-1".into(),
            lease_ttl_ms: 10_000,
            heartbeat_ms: 2_000,
            partitions: 512,
        }
    }
}

impl NodeConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let valid = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(ConfigError::invalid(
                "node.id",
                "must be 1-64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        positive("node.lease_ttl_ms", self.lease_ttl_ms)?;
        positive("node.heartbeat_ms", self.heartbeat_ms)?;
        if self.heartbeat_ms * 2 > self.lease_ttl_ms {
            return Err(ConfigError::invalid(
                "node.heartbeat_ms",
                "must be at most half of node.lease_ttl_ms",
            ));
        }
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(ConfigError::invalid(
                "node.partitions",
                format!("must be 1..={MAX_PARTITIONS}"),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Most jobs one tenant holds in Redis at once (the rest waits in Postgres).
    pub window: usize,
    /// Most jobs moved Postgres → Redis per tenant per feed.
    pub feed_batch: usize,
    /// Longest feeder (and tenant) sleep when nothing is due, in ms: a safety net
    /// only; due times, control notifications and returned jobs wake it earlier.
    pub feed_idle_ms: u64,
    /// How long a popped job may stay unclaimed before the reaper re-queues it, in ms.
    pub inflight_deadline_ms: u64,
    /// How long a job may stay `sending` before the reaper returns it, in ms.
    pub sending_timeout_ms: u64,
    /// How long a tenant with nothing to send keeps its Tenant actor (and its
    /// IPs their Ip actors), in ms. An idle tenant costs no timer, Redis
    /// command or query; a start, an import or a retry coming due wakes it.
    pub tenant_idle_ms: u64,
    /// How often the reaper runs, in ms.
    pub reaper_interval_ms: u64,
    /// Longest delay before a batch of status transitions is written, in ms.
    pub status_flush_ms: u64,
    /// Most transitions written in one statement.
    pub status_batch: usize,
    /// How often the node refreshes the gauges it reads from Postgres and its
    /// pools, in ms: `penguin_backlog_jobs` (one query for the partitions it
    /// owns), the per-IP gauges of the IPs it owns, pool gauges. A node that
    /// owns no partition runs no query.
    pub gauges_refresh_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            window: 2_000,
            feed_batch: 500,
            feed_idle_ms: 5_000,
            inflight_deadline_ms: 60_000,
            sending_timeout_ms: 600_000,
            tenant_idle_ms: 30_000,
            reaper_interval_ms: 5_000,
            status_flush_ms: 20,
            status_batch: 2_000,
            gauges_refresh_ms: 15_000,
        }
    }
}

impl QueueConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        positive("queue.window", self.window as u64)?;
        positive("queue.feed_batch", self.feed_batch as u64)?;
        positive("queue.feed_idle_ms", self.feed_idle_ms)?;
        positive("queue.inflight_deadline_ms", self.inflight_deadline_ms)?;
        positive("queue.sending_timeout_ms", self.sending_timeout_ms)?;
        positive("queue.tenant_idle_ms", self.tenant_idle_ms)?;
        positive("queue.reaper_interval_ms", self.reaper_interval_ms)?;
        positive("queue.status_flush_ms", self.status_flush_ms)?;
        positive("queue.status_batch", self.status_batch as u64)?;
        positive("queue.gauges_refresh_ms", self.gauges_refresh_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Public base URL of the public listener (`[public] listen`), used in
    /// List-Unsubscribe and tracking links: `https://`, or `http://` only to a
    /// loopback host.
    pub base_url: String,
    /// Secret for signing tracking and unsubscribe tokens. Required: no default, at
    /// least 32 characters, never a published example.
    pub secret: String,
    /// Add an open pixel (`/t/o/{token}`) to every HTML part.
    pub opens: bool,
    /// Rewrite the http(s) links of every HTML part to click redirects (`/t/c/{token}`).
    pub clicks: bool,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8026".into(),
            secret: String::new(),
            opens: true,
            clicks: true,
        }
    }
}

impl TrackingConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        crate::secrets::check_public_url("tracking.base_url", &self.base_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_limits_are_validated_by_name() {
        let valid = || ApiConfig {
            admin_token: "unit-test-admin-token-0123456789abcdef".into(),
            ..ApiConfig::default()
        };
        valid().validate().expect("the defaults are valid");
        let invalid = |tweak: fn(&mut ApiConfig)| {
            let mut api = valid();
            tweak(&mut api);
            api.validate().unwrap_err().to_string()
        };
        let err = invalid(|api| api.max_tokens_per_tenant = 0);
        assert!(err.contains("api.max_tokens_per_tenant"), "{err}");
        let err = invalid(|api| api.max_concurrent_imports_per_tenant = 0);
        assert!(
            err.contains("api.max_concurrent_imports_per_tenant"),
            "{err}"
        );
        let err = invalid(|api| api.auth_failures_burst = 0);
        assert!(err.contains("api.auth_failures_burst"), "{err}");
        let err = invalid(|api| api.import_rate_window_ms = api.request_timeout_ms);
        assert!(err.contains("api.import_rate_window_ms"), "{err}");
        // Off switches need no companion.
        let off = ApiConfig {
            auth_failures_per_minute: 0,
            auth_failures_burst: 0,
            import_min_bytes_per_sec: 0,
            import_rate_window_ms: 0,
            ..valid()
        };
        off.validate().expect("limits off are valid");
    }

    #[test]
    fn the_api_pool_differs_only_in_size() {
        let database = DatabaseConfig::default();
        let api = database.api_pool();
        assert_eq!(api.max_connections, database.api_max_connections);
        assert_eq!(api.url, database.url);
        assert_eq!(api.acquire_timeout_ms, database.acquire_timeout_ms);
        let err = DatabaseConfig {
            api_max_connections: 0,
            ..DatabaseConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("database.api_max_connections"), "{err}");
    }

    #[test]
    fn slow_query_ms_is_bounded() {
        assert_eq!(DatabaseConfig::default().slow_query_ms, 2_000);
        let zero = DatabaseConfig {
            slow_query_ms: 0,
            ..DatabaseConfig::default()
        };
        assert!(zero.validate().is_ok(), "0 counts every operation");
        let err = DatabaseConfig {
            slow_query_ms: MAX_SLOW_QUERY_MS + 1,
            ..DatabaseConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("database.slow_query_ms"), "{err}");
    }
}
