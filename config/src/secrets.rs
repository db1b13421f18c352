//! The secrets a node must be given and never defaults: `api.admin_token` (the
//! operator's bearer token) and `tracking.secret` (signs unsubscribe, open and
//! click links). A published value — one printed in the README, an example
//! config or an earlier default — lets anyone who read it administer the node or
//! forge links for every tenant, so [`check`] refuses it, an empty value, and
//! anything shorter than [`MIN_SECRET_CHARS`]. Tools that start throwaway nodes
//! (`penguin demo`, `penguin bench`, `penguin faults`, the tests) fill what is
//! missing with [`random_secret`].
//!
//! Also here: `tracking.base_url` must be `https://` unless it is a loopback URL,
//! because the links it builds carry those signed tokens over the internet.

use rand::Rng as _;

use crate::error::ConfigError;

/// The shortest secret accepted.
pub const MIN_SECRET_CHARS: usize = 32;

/// Values that were published as examples or defaults: always refused, whatever
/// their length.
pub const PUBLISHED_SECRETS: &[&str] = &[
    "change-me-admin-token",
    "change-me-tracking-secret",
    "faults-rehearsal-admin-token",
    "test-admin-token-0123456789",
];

/// Refuses a missing, published, placeholder-looking or short secret, naming `key`.
pub(crate) fn check(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "is required and has no default: set it to at least 32 random characters \
             (e.g. the output of `openssl rand -hex 32`)",
        ));
    }
    let folded = value.to_ascii_lowercase();
    if PUBLISHED_SECRETS.contains(&value)
        || folded.contains("change-me")
        || folded.contains("changeme")
    {
        return Err(ConfigError::invalid(
            key,
            "is a published example value: anyone who has read it could use it; \
             set a random one (e.g. `openssl rand -hex 32`)",
        ));
    }
    if value.chars().count() < MIN_SECRET_CHARS {
        return Err(ConfigError::invalid(
            key,
            format!("must be at least {MIN_SECRET_CHARS} characters"),
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            key,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

/// A fresh secret: 32 random bytes as 64 lowercase hex digits.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `https://…`, or `http://` to a loopback host (`localhost`, 127.0.0.0/8, `[::1]`).
pub(crate) fn check_public_url(key: &str, url: &str) -> Result<(), ConfigError> {
    if let Some(rest) = url.strip_prefix("https://") {
        return non_empty_host(key, rest);
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(ConfigError::invalid(key, "must start with https://"));
    };
    non_empty_host(key, rest)?;
    if is_loopback_authority(rest) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key,
        "must be https:// (plain http:// only to a loopback host): its links carry signed tokens",
    ))
}

fn non_empty_host(key: &str, rest: &str) -> Result<(), ConfigError> {
    if authority(rest).is_empty() {
        return Err(ConfigError::invalid(key, "has no host"));
    }
    Ok(())
}

/// The `host[:port]` part of what follows the scheme.
fn authority(rest: &str) -> &str {
    rest.split(['/', '?', '#']).next().unwrap_or("")
}

fn is_loopback_authority(rest: &str) -> bool {
    let authority = authority(rest);
    if authority.contains('@') {
        return false; // userinfo: `http://127.0.0.1@evil.example` is not loopback
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, _)) => host,
            None => return false,
        }
    } else {
        authority.split(':').next().unwrap_or("")
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_published_and_short_secrets_are_refused_naming_the_key() {
        for (value, why) in [
            ("", "required"),
            ("change-me-admin-token", "published"),
            ("change-me-tracking-secret", "published"),
            ("faults-rehearsal-admin-token", "published"),
            ("CHANGE-ME-please-0123456789abcdef0123456789", "published"),
            ("0123456789abcdef0123456789abcde", "at least 32"),
            ("0123456789abcdef 0123456789abcdef", "whitespace"),
        ] {
            let err = check("api.admin_token", value).unwrap_err().to_string();
            assert!(err.contains("api.admin_token"), "{value:?}: {err}");
            assert!(err.contains(why), "{value:?}: {err}");
        }
    }

    #[test]
    fn a_random_secret_is_accepted_and_fresh() {
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        check("tracking.secret", &a).unwrap();
    }

    #[test]
    fn base_url_is_https_unless_loopback() {
        for ok in [
            "https://links.example.com",
            "https://links.example.com:8443/base",
            "http://127.0.0.1:8026",
            "http://127.5.0.1",
            "http://localhost:8026/",
            "http://[::1]:8026",
        ] {
            check_public_url("tracking.base_url", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://links.example.com",
            "http://10.0.0.1:8026",
            "http://127.0.0.1@evil.example",
            "http://localhost.evil.example",
            "ftp://127.0.0.1",
            "https://",
            "127.0.0.1:8026",
        ] {
            let err = check_public_url("tracking.base_url", bad).unwrap_err();
            assert!(
                err.to_string().contains("tracking.base_url"),
                "{bad}: {err}"
            );
        }
    }
}
