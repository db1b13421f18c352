//! Signing rendered messages: one [`DkimSigner`] per DKIM key, built once and
//! shared (it is `Send + Sync`), and [`sign`], which prepends the signatures.
//!
//! Guarantees:
//! - relaxed/relaxed canonicalisation, `d=` the signer's domain, `s=` its
//!   selector, `a=` its algorithm; with several signers RSA signs first and its
//!   header comes first;
//! - `h=` lists exactly the [`SIGNED_HEADERS`] present in the message, each as
//!   often as it occurs (`mail-auth` would append absent ones too; we never ask it
//!   to sign a header the message lacks). A message without From is refused: DKIM
//!   requires From to be signed (RFC 6376 §5.4);
//! - the message bytes are returned unchanged after the `DKIM-Signature` headers;
//! - the private key is parsed once in [`DkimSigner::new`]: a key that is not
//!   PKCS#8 of the stated algorithm is a [`DkimError::InvalidKey`] there, not a
//!   failure per message.

use std::fmt;
use std::sync::Arc;

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{Canonicalization, Done, Signature};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use super::{DkimAlgorithm, DkimError, SIGNED_HEADERS};

/// Bit of `From` in a presence mask over [`SIGNED_HEADERS`].
const FROM: u16 = 1;
/// Every header of [`SIGNED_HEADERS`] present.
const ALL: u16 = (1 << SIGNED_HEADERS.len()) - 1;

/// Signs for one (domain, selector, key). Build once per key, reuse for every
/// message; `Debug` shows no key.
pub struct DkimSigner {
    domain: String,
    selector: String,
    algorithm: DkimAlgorithm,
    /// Kept to build a signer for a message that lacks some of the headers.
    private_pkcs8: Zeroizing<Vec<u8>>,
    /// The signer for messages carrying every header (what rendering produces).
    all_headers: KeySigner,
}

enum KeySigner {
    Rsa(mail_auth::dkim::DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(mail_auth::dkim::DkimSigner<Ed25519Key, Done>),
}

impl fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimSigner")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl DkimSigner {
    /// Parses the PKCS#8 `private_pkcs8` of `algorithm` and checks the names.
    pub fn new(
        domain: &str,
        selector: &str,
        algorithm: DkimAlgorithm,
        private_pkcs8: &[u8],
    ) -> Result<DkimSigner, DkimError> {
        check_name("domain", domain, 253)?;
        check_name("selector", selector, 63)?;
        let all_headers = KeySigner::build(algorithm, private_pkcs8, domain, selector, ALL)?;
        Ok(DkimSigner {
            domain: domain.to_owned(),
            selector: selector.to_owned(),
            algorithm,
            private_pkcs8: Zeroizing::new(private_pkcs8.to_vec()),
            all_headers,
        })
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn algorithm(&self) -> DkimAlgorithm {
        self.algorithm
    }

    /// The signature over `message`, whose present headers are `present`.
    fn signature(&self, message: &[u8], present: u16) -> Result<Signature, DkimError> {
        let built;
        let signer = if present == ALL {
            &self.all_headers
        } else {
            built = KeySigner::build(
                self.algorithm,
                &self.private_pkcs8,
                &self.domain,
                &self.selector,
                present,
            )?;
            &built
        };
        signer
            .sign(message)
            .map_err(|e| DkimError::Sign(self.algorithm, e.to_string()))
    }
}

impl KeySigner {
    /// A `mail-auth` signer whose `h=` is the headers of `present`.
    fn build(
        algorithm: DkimAlgorithm,
        pkcs8: &[u8],
        domain: &str,
        selector: &str,
        present: u16,
    ) -> Result<KeySigner, DkimError> {
        let invalid = |e: mail_auth::Error| DkimError::InvalidKey {
            algorithm,
            reason: e.to_string(),
        };
        let headers = SIGNED_HEADERS
            .iter()
            .enumerate()
            .filter(|(i, _)| present & (1 << i) != 0)
            .map(|(_, name)| *name);
        Ok(match algorithm {
            DkimAlgorithm::RsaSha256 => {
                let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(
                    PrivatePkcs8KeyDer::from(pkcs8),
                ))
                .map_err(invalid)?;
                KeySigner::Rsa(
                    mail_auth::dkim::DkimSigner::from_key(key)
                        .domain(domain)
                        .selector(selector)
                        .headers(headers)
                        .header_canonicalization(Canonicalization::Relaxed)
                        .body_canonicalization(Canonicalization::Relaxed),
                )
            }
            DkimAlgorithm::Ed25519Sha256 => {
                let key = Ed25519Key::from_pkcs8_der(pkcs8).map_err(invalid)?;
                KeySigner::Ed25519(
                    mail_auth::dkim::DkimSigner::from_key(key)
                        .domain(domain)
                        .selector(selector)
                        .headers(headers)
                        .header_canonicalization(Canonicalization::Relaxed)
                        .body_canonicalization(Canonicalization::Relaxed),
                )
            }
        })
    }

    fn sign(&self, message: &[u8]) -> mail_auth::Result<Signature> {
        match self {
            KeySigner::Rsa(signer) => signer.sign(message),
            KeySigner::Ed25519(signer) => signer.sign(message),
        }
    }
}

/// Signs `message` with every signer, RSA first, and returns it with one
/// `DKIM-Signature` header per signer prepended (in signing order).
pub fn sign(message: &[u8], signers: &[Arc<DkimSigner>]) -> Result<Vec<u8>, DkimError> {
    if signers.is_empty() {
        return Err(DkimError::Message("no DKIM key to sign with"));
    }
    let present = present_headers(message);
    if present & FROM == 0 {
        return Err(DkimError::Message(
            "the message has no From header (DKIM must sign it)",
        ));
    }
    let mut ordered: Vec<&DkimSigner> = signers.iter().map(Arc::as_ref).collect();
    ordered.sort_by_key(|signer| signer.algorithm); // stable: RSA first
    let mut out = Vec::with_capacity(message.len() + 700 * ordered.len());
    for signer in ordered {
        signer.signature(message, present)?.write_header(&mut out);
    }
    out.extend_from_slice(message);
    Ok(out)
}

/// Which of [`SIGNED_HEADERS`] occur in the message's header block (bit i for
/// `SIGNED_HEADERS[i]`): the text before the first `:` of each unfolded line,
/// compared ASCII case-insensitively, as `mail-auth` compares them. Should the
/// two ever disagree, `mail-auth` lists a header it did not find as absent,
/// which verifiers accept: only `h=` would differ, never the verdict.
fn present_headers(message: &[u8]) -> u16 {
    let mut present = 0;
    for line in message.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break; // end of the header block
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            continue; // folded continuation
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = &line[..colon];
        if let Some(i) = SIGNED_HEADERS
            .iter()
            .position(|wanted| name.eq_ignore_ascii_case(wanted.as_bytes()))
        {
            present |= 1 << i;
        }
    }
    present
}

/// A domain or selector: ASCII letters, digits, `-`, `_` and inner dots, at
/// most `max` bytes; anything else could not sit in a DNS name or a tag value.
fn check_name(what: &'static str, value: &str, max: usize) -> Result<(), DkimError> {
    let reason = if value.is_empty() {
        Some("is empty")
    } else if value.len() > max {
        Some("is too long")
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Some("must be ASCII letters, digits, '-', '_' or '.' (use punycode for IDNs)")
    } else if value.starts_with('.') || value.ends_with('.') || value.contains("..") {
        Some("has an empty label")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DkimError::InvalidName {
            what,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}
