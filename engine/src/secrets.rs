//! Sealing secrets at rest (issue 16): DKIM private keys are stored only as
//! AES-256-GCM ciphertext under the node's `[secrets] master_key`.
//!
//! Guarantees:
//! - [`Sealer::seal`] draws a fresh random 96-bit nonce per call and binds the
//!   ciphertext to `aad` (callers pass the row's identity, e.g.
//!   `"<tenant>/<domain_id>/<selector>"`), so a sealed blob copied into another row
//!   does not open there.
//! - A sealed blob is `[FORMAT_AES256GCM] || nonce (12 bytes) || ciphertext+tag`;
//!   the master key's [`Sealer::version`] is stored by the caller beside it, so a
//!   node given the new key as `master_key` and the old one in
//!   `previous_master_keys` opens both until `penguin secrets rotate` re-seals.
//! - [`Sealer::open`] never panics: a wrong key, an unknown version, a tampered or
//!   truncated blob or another `aad` is a [`SecretsError`]. The plaintext comes
//!   back in a [`Zeroizing`] buffer, wiped when dropped.
//! - No key material is ever printed: `Debug` shows versions only, and errors name
//!   versions and reasons, never bytes.

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use penguin_config::{MASTER_KEY_BYTES, SecretsConfig};
use sha2::{Digest, Sha256};
use thiserror::Error;
pub use zeroize::Zeroizing;

/// First byte of every sealed blob: AES-256-GCM with a 12-byte random nonce.
/// A new algorithm would get a new tag; unknown tags are refused.
const FORMAT_AES256GCM: u8 = 1;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

#[derive(Debug, Error)]
pub enum SecretsError {
    /// The `[secrets]` configuration is unusable (the reason names the key).
    #[error("{0}")]
    Config(String),
    /// Sealed under a master key this node was not given.
    #[error(
        "sealed under master key version {0}, which is neither [secrets] master_key \
         nor one of previous_master_keys"
    )]
    UnknownVersion(String),
    /// Not a blob [`Sealer::seal`] produced (too short or unknown format).
    #[error("sealed value is malformed: {0}")]
    Malformed(&'static str),
    /// Authentication failed: wrong key, tampered bytes, or another row's aad.
    #[error(
        "sealed value does not open under master key version {0} (tampered, or bound to another row)"
    )]
    Open(String),
}

/// Seals and opens secrets with the configured master keys. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    inner: Arc<Keys>,
}

struct Keys {
    current: VersionedKey,
    previous: Vec<VersionedKey>,
}

struct VersionedKey {
    version: String,
    cipher: Aes256Gcm,
}

impl VersionedKey {
    fn new(key: &[u8; MASTER_KEY_BYTES]) -> VersionedKey {
        VersionedKey {
            version: version_of(key),
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)),
        }
    }
}

/// `"k"` + the first 8 hex digits of SHA-256 over a label and the key: names a
/// key without revealing anything usable about it.
fn version_of(key: &[u8; MASTER_KEY_BYTES]) -> String {
    let digest = Sha256::new()
        .chain_update(b"penguin master key id\0")
        .chain_update(key)
        .finalize();
    format!("k{}", crate::hex::lower(&digest[..4]))
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<&str> = self
            .inner
            .previous
            .iter()
            .map(|k| k.version.as_str())
            .collect();
        f.debug_struct("Sealer")
            .field("version", &self.inner.current.version)
            .field("previous", &previous)
            .finish()
    }
}

impl Sealer {
    /// The sealer of `[secrets]`; `None` when `master_key` is absent.
    pub fn from_config(config: &SecretsConfig) -> Result<Option<Sealer>, SecretsError> {
        let bad = |e: penguin_config::ConfigError| SecretsError::Config(e.to_string());
        let Some(current) = config.master_key_bytes().map_err(bad)? else {
            return Ok(None);
        };
        let current = Zeroizing::new(current);
        let previous = Zeroizing::new(config.previous_key_bytes().map_err(bad)?);
        Ok(Some(Sealer::from_keys(*current, &previous)))
    }

    /// A sealer from raw keys (tests and tools). Previous keys equal to the
    /// current one are dropped.
    pub fn from_keys(current: [u8; 32], previous: &[[u8; 32]]) -> Sealer {
        let current = VersionedKey::new(&Zeroizing::new(current));
        let mut others: Vec<VersionedKey> = Vec::with_capacity(previous.len());
        for key in previous {
            let key = VersionedKey::new(key);
            let seen = key.version == current.version
                || others.iter().any(|other| other.version == key.version);
            if !seen {
                others.push(key);
            }
        }
        Sealer {
            inner: Arc::new(Keys {
                current,
                previous: others,
            }),
        }
    }

    /// The id of the current master key; store it beside every sealed value.
    pub fn version(&self) -> &str {
        &self.inner.current.version
    }

    /// Seals `plaintext` under the current master key, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let ciphertext = self
            .inner
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encrypts any input shorter than 64 GiB");
        let mut sealed = Vec::with_capacity(1 + NONCE_BYTES + ciphertext.len());
        sealed.push(FORMAT_AES256GCM);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens a blob sealed under the master key named `version` with this `aad`.
    pub fn open(
        &self,
        sealed: &[u8],
        version: &str,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        let key = std::iter::once(&self.inner.current)
            .chain(&self.inner.previous)
            .find(|key| key.version == version)
            .ok_or_else(|| SecretsError::UnknownVersion(version.to_owned()))?;
        let Some((&format, rest)) = sealed.split_first() else {
            return Err(SecretsError::Malformed("empty"));
        };
        if format != FORMAT_AES256GCM {
            return Err(SecretsError::Malformed("unknown format tag"));
        }
        if rest.len() < NONCE_BYTES + TAG_BYTES {
            return Err(SecretsError::Malformed("too short"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce).map_err(|_| SecretsError::Malformed("nonce"))?;
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SecretsError::Open(version.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAD: &[u8] = b"tenant/domain/s1";
    const SECRET: &[u8] = b"-----PKCS8 private key bytes, 0123456789abcdef-----";

    #[test]
    fn seal_then_open_round_trips_with_a_fresh_nonce() {
        let sealer = Sealer::from_keys([1; 32], &[]);
        let a = sealer.seal(SECRET, AAD);
        let b = sealer.seal(SECRET, AAD);
        assert_ne!(a, b, "every seal draws a new nonce");
        assert_eq!(a.len(), 1 + NONCE_BYTES + SECRET.len() + TAG_BYTES);
        for sealed in [a, b] {
            let opened = sealer.open(&sealed, sealer.version(), AAD).unwrap();
            assert_eq!(opened.as_slice(), SECRET);
        }
        assert_eq!(
            sealer
                .open(&sealer.seal(b"", AAD), sealer.version(), AAD)
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn version_names_the_key() {
        let one = Sealer::from_keys([1; 32], &[]);
        let two = Sealer::from_keys([2; 32], &[]);
        assert_ne!(one.version(), two.version());
        assert_eq!(one.version(), Sealer::from_keys([1; 32], &[]).version());
        assert_eq!(one.version().len(), 9);
        assert!(one.version().starts_with('k'));
    }

    #[test]
    fn a_wrong_master_key_fails_even_under_the_same_version_label() {
        let sealer = Sealer::from_keys([1; 32], &[]);
        let sealed = sealer.seal(SECRET, AAD);
        let other = Sealer::from_keys([2; 32], &[]);
        let err = other.open(&sealed, other.version(), AAD).unwrap_err();
        assert!(matches!(err, SecretsError::Open(_)), "{err}");
        let err = other.open(&sealed, sealer.version(), AAD).unwrap_err();
        assert!(matches!(err, SecretsError::UnknownVersion(_)), "{err}");
    }

    #[test]
    fn a_previous_key_opens_what_it_sealed_and_new_seals_use_the_current() {
        let old = Sealer::from_keys([1; 32], &[]);
        let sealed = old.seal(SECRET, AAD);
        let rotated = Sealer::from_keys([2; 32], &[[1; 32], [2; 32]]);
        assert_ne!(rotated.version(), old.version());
        let opened = rotated.open(&sealed, old.version(), AAD).unwrap();
        assert_eq!(opened.as_slice(), SECRET);
        let resealed = rotated.seal(&opened, AAD);
        assert!(old.open(&resealed, rotated.version(), AAD).is_err());
        assert_eq!(
            rotated
                .open(&resealed, rotated.version(), AAD)
                .unwrap()
                .as_slice(),
            SECRET
        );
        let shown = format!("{rotated:?}");
        assert!(shown.contains(old.version()) && shown.contains(rotated.version()));
        assert_eq!(
            rotated.inner.previous.len(),
            1,
            "the current key is not kept twice"
        );
    }

    #[test]
    fn every_tampered_byte_fails() {
        let sealer = Sealer::from_keys([1; 32], &[]);
        let sealed = sealer.seal(SECRET, AAD);
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            let err = sealer.open(&tampered, sealer.version(), AAD).unwrap_err();
            let expected = if i == 0 {
                matches!(err, SecretsError::Malformed(_))
            } else {
                matches!(err, SecretsError::Open(_))
            };
            assert!(expected, "byte {i}: {err}");
        }
        for len in [0, 1, 1 + NONCE_BYTES, 1 + NONCE_BYTES + TAG_BYTES - 1] {
            let err = sealer
                .open(&sealed[..len], sealer.version(), AAD)
                .unwrap_err();
            assert!(matches!(err, SecretsError::Malformed(_)), "{len}: {err}");
        }
    }

    #[test]
    fn another_rows_aad_fails() {
        let sealer = Sealer::from_keys([1; 32], &[]);
        let sealed = sealer.seal(SECRET, AAD);
        for aad in [&b"tenant/domain/s2"[..], b"", b"tenant/domain/s1 "] {
            let err = sealer.open(&sealed, sealer.version(), aad).unwrap_err();
            assert!(matches!(err, SecretsError::Open(_)), "{err}");
        }
    }

    #[test]
    fn an_unknown_version_fails() {
        let sealer = Sealer::from_keys([1; 32], &[[3; 32]]);
        let sealed = sealer.seal(SECRET, AAD);
        for version in ["", "k00000000", "whatever"] {
            let err = sealer.open(&sealed, version, AAD).unwrap_err();
            assert!(matches!(err, SecretsError::UnknownVersion(_)), "{err}");
        }
    }

    #[test]
    fn the_plaintext_never_appears_in_the_sealed_bytes() {
        let sealer = Sealer::from_keys([1; 32], &[]);
        let sealed = sealer.seal(SECRET, AAD);
        for window in SECRET.windows(8) {
            assert!(
                !sealed.windows(8).any(|w| w == window),
                "plaintext bytes {window:?} in the sealed blob"
            );
        }
    }

    #[test]
    fn from_config_is_none_without_a_key_and_never_shows_one() {
        use base64::Engine as _;
        let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
        assert!(
            Sealer::from_config(&SecretsConfig::default())
                .unwrap()
                .is_none()
        );
        let config = SecretsConfig {
            master_key: Some(b64(2)),
            previous_master_keys: vec![b64(1)],
        };
        let sealer = Sealer::from_config(&config).unwrap().unwrap();
        assert_eq!(sealer.version(), Sealer::from_keys([2; 32], &[]).version());
        let old = Sealer::from_keys([1; 32], &[]);
        let sealed = old.seal(SECRET, AAD);
        assert!(sealer.open(&sealed, old.version(), AAD).is_ok());
        let shown = format!("{sealer:?}");
        assert!(
            !shown.contains(&b64(2)[..16]) && !shown.contains("[2, 2"),
            "{shown}"
        );
        let bad = SecretsConfig {
            master_key: Some("short".into()),
            previous_master_keys: vec![],
        };
        let err = Sealer::from_config(&bad).unwrap_err().to_string();
        assert!(err.contains("secrets.master_key"), "{err}");
    }
}
