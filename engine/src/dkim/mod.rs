//! DKIM (RFC 6376, RFC 8463) for sending domains (issue 16): key generation, the
//! TXT record to publish, and signing rendered messages. Built on `mail-auth`
//! 0.12 with its pure-Rust crypto (`rust-crypto`). Its `ring` backend swaps in
//! key types with the same constructors and signs RSA ≈ 2.7× faster (see
//! BENCHMARKS.md); it also turns on hickory's TLS and DNSSEC features.
//!
//! - [`keys`]: [`generate`] a 2048-bit RSA or an Ed25519 key as PKCS#8, and
//!   [`txt_value`], the record for `<selector>._domainkey.<domain>`. RSA public keys
//!   are published as SubjectPublicKeyInfo (`MIIBIj…`), the form every verifier
//!   reads, not the PKCS#1 form `mail-auth` generates.
//! - [`sign`]: a [`DkimSigner`] per key (parsed once, shared across messages) and
//!   [`sign()`](sign::sign), which prepends one `DKIM-Signature` per signer, RSA
//!   first, relaxed/relaxed, `h=` the [`SIGNED_HEADERS`] present in the message.
//!
//! Both generation and signing are CPU work (release build: RSA-2048 keygen
//! ≈ 200 ms; an RSA signature of a 10 KB message ≈ 1.8 ms, Ed25519 ≈ 0.1 ms; see
//! BENCHMARKS.md): callers run them on blocking threads, never on the async
//! runtime. Private keys never appear in `Debug` output or errors.

pub mod keys;
pub mod sign;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

pub use keys::{GeneratedKey, generate, txt_value};
pub use sign::{DkimSigner, sign};

/// The headers signed when present (the list). From is required.
pub const SIGNED_HEADERS: [&str; 10] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
];

/// A DKIM signing algorithm (the `a=` tag), stored as [`DkimAlgorithm::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DkimAlgorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl DkimAlgorithm {
    /// `"rsa-sha256"` or `"ed25519-sha256"`: the `a=` tag and the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa-sha256",
            DkimAlgorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    /// The `k=` tag of the TXT record: `"rsa"` or `"ed25519"`.
    pub fn key_type(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa",
            DkimAlgorithm::Ed25519Sha256 => "ed25519",
        }
    }
}

impl fmt::Display for DkimAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DkimAlgorithm {
    type Err = DkimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rsa-sha256" => Ok(DkimAlgorithm::RsaSha256),
            "ed25519-sha256" => Ok(DkimAlgorithm::Ed25519Sha256),
            other => Err(DkimError::UnknownAlgorithm(other.to_owned())),
        }
    }
}

#[derive(Debug, Error)]
pub enum DkimError {
    #[error("unknown DKIM algorithm {0:?} (expected rsa-sha256 or ed25519-sha256)")]
    UnknownAlgorithm(String),
    /// The private key does not parse as a PKCS#8 key of the algorithm. The
    /// reason comes from the DER parser and never holds key bytes.
    #[error("invalid {algorithm} private key: not a PKCS#8 {algorithm} key ({reason})")]
    InvalidKey {
        algorithm: DkimAlgorithm,
        reason: String,
    },
    #[error("invalid DKIM {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("generating a {0} key failed: {1}")]
    Generate(DkimAlgorithm, String),
    #[error("cannot sign: {0}")]
    Message(&'static str),
    #[error("signing with {0} failed: {1}")]
    Sign(DkimAlgorithm, String),
}
