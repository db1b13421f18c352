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
//! because the links it builds carry those signed tokens over the internet; and
//! `[secrets]` ([`SecretsConfig`]), the master key that seals DKIM private keys at
//! rest. It is optional (without it the node starts but cannot create sending
//! domains), but when set it must be exactly [`MASTER_KEY_BYTES`] bytes of
//! standard base64, and no error or `Debug` output ever shows it.

use std::fmt;

use base64::Engine as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

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

/// The length of a master key, in bytes (AES-256 / XChaCha20 key size).
pub const MASTER_KEY_BYTES: usize = 32;

/// `[secrets]`: the master key sealing DKIM private keys at rest
/// (`PENGUIN_SECRETS__MASTER_KEY`), and older master keys kept only to open what
/// they sealed until `penguin secrets rotate` has re-sealed it.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Base64 of 32 random bytes (`openssl rand -base64 32`); none: no sealing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<String>,
    /// Earlier master keys, same format; they open keys, never seal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub previous_master_keys: Vec<String>,
}

impl fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsConfig")
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "previous_master_keys",
                &vec!["<redacted>"; self.previous_master_keys.len()],
            )
            .finish()
    }
}

impl SecretsConfig {
    /// Every configured key decodes to exactly [`MASTER_KEY_BYTES`] bytes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.master_key_bytes()?;
        self.previous_key_bytes()?;
        Ok(())
    }

    /// The current master key, decoded; `None` when it is not configured.
    pub fn master_key_bytes(&self) -> Result<Option<[u8; MASTER_KEY_BYTES]>, ConfigError> {
        self.master_key
            .as_deref()
            .map(|key| decode_master_key("secrets.master_key", key))
            .transpose()
    }

    /// The previous master keys, decoded, in configuration order.
    pub fn previous_key_bytes(&self) -> Result<Vec<[u8; MASTER_KEY_BYTES]>, ConfigError> {
        self.previous_master_keys
            .iter()
            .enumerate()
            .map(|(i, key)| decode_master_key(&format!("secrets.previous_master_keys[{i}]"), key))
            .collect()
    }
}

/// Standard base64 (padding optional, surrounding whitespace ignored) of exactly
/// 32 bytes. The error names `key` and never repeats the value.
fn decode_master_key(key: &str, value: &str) -> Result<[u8; MASTER_KEY_BYTES], ConfigError> {
    const HOW: &str =
        "make one with `openssl rand -base64 32` or `head -c32 /dev/urandom | base64`";
    let value = value.trim();
    if value.is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("is empty: remove it, or set 32 random bytes in base64 ({HOW})"),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(value))
        .map_err(|_| ConfigError::invalid(key, format!("is not valid base64 ({HOW})")))?;
    bytes.as_slice().try_into().map_err(|_| {
        ConfigError::invalid(
            key,
            format!(
                "must decode to exactly {MASTER_KEY_BYTES} bytes, not {} ({HOW})",
                bytes.len()
            ),
        )
    })
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

    /// base64 of `byte` repeated `len` times.
    fn b64(byte: u8, len: usize) -> String {
        base64::engine::general_purpose::STANDARD.encode(vec![byte; len])
    }

    #[test]
    fn a_good_master_key_decodes_and_previous_keys_too() {
        let config = SecretsConfig {
            master_key: Some(b64(7, 32)),
            previous_master_keys: vec![
                b64(1, 32),
                format!(" {} ", b64(2, 32).trim_end_matches('=')),
            ],
        };
        config.validate().unwrap();
        assert_eq!(config.master_key_bytes().unwrap(), Some([7; 32]));
        assert_eq!(config.previous_key_bytes().unwrap(), vec![[1; 32], [2; 32]]);
        assert_eq!(SecretsConfig::default().master_key_bytes().unwrap(), None);
        SecretsConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_master_keys_are_refused_naming_the_key_never_the_value() {
        for (value, why) in [
            ("", "empty"),
            ("not base64 at all!", "base64"),
            (&b64(9, 31), "exactly 32 bytes, not 31"),
            (&b64(9, 33), "exactly 32 bytes, not 33"),
            (&b64(9, 64), "exactly 32 bytes, not 64"),
        ] {
            let config = SecretsConfig {
                master_key: Some(value.to_string()),
                previous_master_keys: vec![],
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("secrets.master_key:"), "{value:?}: {err}");
            assert!(err.contains(why), "{value:?}: {err}");
            assert!(err.contains("openssl rand -base64 32"), "{err}");
            if !value.is_empty() {
                assert!(!err.contains(value), "the error shows the key: {err}");
            }
        }
        let config = SecretsConfig {
            master_key: Some(b64(7, 32)),
            previous_master_keys: vec![b64(1, 32), b64(2, 16)],
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("secrets.previous_master_keys[1]"), "{err}");
        assert!(err.contains("not 16"), "{err}");
    }

    #[test]
    fn config_validate_checks_the_master_key_from_toml() {
        let key = b64(5, 32);
        let toml = format!("[secrets]\nmaster_key = \"{key}\"\nprevious_master_keys = []\n");
        let mut config = crate::Config::from_toml_str(&toml).unwrap();
        config.generate_missing_secrets();
        config.validate().unwrap();
        assert_eq!(config.secrets.master_key_bytes().unwrap(), Some([5; 32]));
        config.secrets.master_key = Some(b64(5, 24));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("secrets.master_key"), "{err}");
        let err = crate::Config::from_toml_str("[secrets]\nmaster_keys = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("master_keys"), "{err}");
    }

    #[test]
    fn debug_never_shows_a_master_key() {
        let config = SecretsConfig {
            master_key: Some(b64(0xab, 32)),
            previous_master_keys: vec![b64(0xcd, 32)],
        };
        let shown = format!("{config:?} {config:#?}");
        for key in [b64(0xab, 32), b64(0xcd, 32)] {
            assert!(!shown.contains(&key[..20]), "{shown}");
        }
        assert!(shown.contains("<redacted>"), "{shown}");
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
