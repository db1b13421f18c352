//! `[public]`: the internet-facing listener of the signed links (`/t/*`, `/u/*`),
//! apart from the operators' `[api] listen` (DESIGN.md §10 "Two listeners"), and
//! [`HttpLimits`], the connection limits both listeners take from their section.
//!
//! Guarantees checked here, once, at start:
//! - the two listeners are different addresses unless the operator sets
//!   `public.share_api_listener = true` (port 0, "any free port", is never the
//!   same address: each listener gets its own);
//! - every limit is positive.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, positive};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublicConfig {
    /// Address of the public listener: only `/t/*` (open pixel, click redirect)
    /// and `/u/*` (unsubscribe). `tracking.base_url` should lead here.
    pub listen: String,
    /// Lets `listen` equal `api.listen` (one listener serving every route).
    /// Without it, the same address is a configuration error.
    pub share_api_listener: bool,
    /// Most connections open at once; past it a new connection is closed at once.
    pub max_connections: usize,
    /// A request line and headers must arrive within this, in ms.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight is closed after this, in ms.
    pub idle_timeout_ms: u64,
}

impl Default for PublicConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8026".into(),
            share_api_listener: false,
            max_connections: 512,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
        }
    }
}

/// The largest `max_connections` a listener takes (far above any file limit).
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// What one HTTP listener allows a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once; the next is refused.
    pub max_connections: usize,
    /// From the moment the server waits for a request (accept, or the end of
    /// the previous response) to its last header byte.
    pub header_read_timeout: Duration,
    /// A connection without a request in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl HttpLimits {
    pub(crate) fn new(max_connections: usize, header_read_ms: u64, idle_ms: u64) -> Self {
        Self {
            max_connections,
            header_read_timeout: Duration::from_millis(header_read_ms),
            idle_timeout: Duration::from_millis(idle_ms),
        }
    }

    /// Checks the limits of `section` (`api` or `public`), naming the key.
    pub(crate) fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let key = format!("{section}.max_connections");
        positive(&key, self.max_connections as u64)?;
        if self.max_connections > MAX_CONNECTIONS {
            return Err(ConfigError::invalid(
                key,
                format!("must be at most {MAX_CONNECTIONS}"),
            ));
        }
        positive(
            &format!("{section}.header_read_timeout_ms"),
            self.header_read_timeout.as_millis() as u64,
        )?;
        positive(
            &format!("{section}.idle_timeout_ms"),
            self.idle_timeout.as_millis() as u64,
        )
    }
}

impl PublicConfig {
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits::new(
            self.max_connections,
            self.header_read_timeout_ms,
            self.idle_timeout_ms,
        )
    }

    /// True when one listener at `api.listen` serves every route.
    pub fn shares(&self, api_listen: &str) -> bool {
        self.share_api_listener && self.listen == api_listen
    }

    /// Checks `listen`, the limits, and that it does not take `api_listen`'s
    /// address unless sharing is asked for.
    pub(crate) fn validate(&self, api_listen: &str) -> Result<(), ConfigError> {
        let public: SocketAddr = self.listen.parse().map_err(|e| {
            ConfigError::invalid("public.listen", format!("not a socket address: {e}"))
        })?;
        self.http_limits().validate("public")?;
        let Ok(api) = api_listen.parse::<SocketAddr>() else {
            return Ok(()); // `api.listen` names its own error.
        };
        if !self.shares(api_listen) && overlap(public, api) {
            return Err(ConfigError::invalid(
                "public.listen",
                format!(
                    "{public} is also api.listen: the public links and the control API \
                     need different addresses (set public.share_api_listener = true to \
                     serve both on one listener on purpose)"
                ),
            ));
        }
        Ok(())
    }
}

/// Whether two listen addresses would take the same port on some interface
/// (an unspecified address, `0.0.0.0` or `::`, takes every interface's).
/// Port 0 asks the system for a free port: it never collides.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() || a.is_ipv4() != b.is_ipv4() {
        return false;
    }
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(listen: &str, share: bool) -> PublicConfig {
        PublicConfig {
            listen: listen.into(),
            share_api_listener: share,
            ..PublicConfig::default()
        }
    }

    #[test]
    fn the_same_address_needs_the_explicit_flag() {
        let err = public("127.0.0.1:8025", false)
            .validate("127.0.0.1:8025")
            .unwrap_err()
            .to_string();
        assert!(err.contains("public.listen"), "{err}");
        assert!(err.contains("share_api_listener"), "{err}");
        public("127.0.0.1:8025", true)
            .validate("127.0.0.1:8025")
            .expect("shared on purpose");
        assert!(public("127.0.0.1:8025", true).shares("127.0.0.1:8025"));
        assert!(!public("127.0.0.1:8026", true).shares("127.0.0.1:8025"));
    }

    #[test]
    fn an_unspecified_address_overlaps_every_interface() {
        for (p, a) in [
            ("0.0.0.0:8025", "127.0.0.1:8025"),
            ("127.0.0.1:8025", "0.0.0.0:8025"),
            ("[::]:8025", "[::1]:8025"),
        ] {
            assert!(public(p, false).validate(a).is_err(), "{p} vs {a}");
        }
        for (p, a) in [
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("127.0.0.1:8026", "127.0.0.1:8025"),
            ("127.0.0.2:8025", "127.0.0.1:8025"),
        ] {
            public(p, false).validate(a).expect("apart");
        }
    }

    #[test]
    fn limits_are_positive_and_named() {
        let mut config = PublicConfig {
            max_connections: 0,
            ..PublicConfig::default()
        };
        let err = config.validate("127.0.0.1:8025").unwrap_err().to_string();
        assert!(err.contains("public.max_connections"), "{err}");
        config.max_connections = 1;
        config.header_read_timeout_ms = 0;
        let err = config.validate("127.0.0.1:8025").unwrap_err().to_string();
        assert!(err.contains("public.header_read_timeout_ms"), "{err}");
    }
}
