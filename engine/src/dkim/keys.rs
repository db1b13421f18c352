//! DKIM key pairs: generation and the TXT record that publishes the public half.
//!
//! Guarantees:
//! - private keys come out as PKCS#8 DER (RSA wrapped from the PKCS#1 that
//!   `mail-auth` generates), in a [`Zeroizing`] buffer; `Debug` never shows them;
//! - the public key is base64 ready for `p=`: SubjectPublicKeyInfo for RSA
//!   (RFC 6376 §3.6.1; OpenSSL-based verifiers read only this form), the raw 32
//!   bytes for Ed25519 (RFC 8463);
//! - RSA keys are 2048 bits. Generation is CPU heavy: call it from a blocking
//!   thread.

use std::fmt;

use base64::Engine as _;
use mail_auth::dkim::generate::DkimKeyPair;
use zeroize::Zeroizing;

use super::{DkimAlgorithm, DkimError};

/// RSA modulus size of generated keys.
pub const RSA_BITS: usize = 2048;

/// DER AlgorithmIdentifier of rsaEncryption (1.2.840.113549.1.1.1) with NULL
/// parameters, shared by PKCS#8 and SubjectPublicKeyInfo.
const RSA_ALGORITHM_ID: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// A fresh key pair: seal `private_pkcs8` before storing it; publish
/// `public_key_b64` with [`txt_value`].
pub struct GeneratedKey {
    pub algorithm: DkimAlgorithm,
    pub private_pkcs8: Zeroizing<Vec<u8>>,
    pub public_key_b64: String,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("algorithm", &self.algorithm)
            .field("private_pkcs8", &"<redacted>")
            .field("public_key_b64", &self.public_key_b64)
            .finish()
    }
}

/// Generates a key pair (RSA: 2048 bits). CPU heavy: use `spawn_blocking`.
pub fn generate(algorithm: DkimAlgorithm) -> Result<GeneratedKey, DkimError> {
    let failed = |e: mail_auth::Error| DkimError::Generate(algorithm, e.to_string());
    let (private_pkcs8, public_key) = match algorithm {
        DkimAlgorithm::RsaSha256 => {
            let (pkcs1_private, pkcs1_public) = DkimKeyPair::generate_rsa(RSA_BITS)
                .map_err(failed)?
                .into_inner();
            let pkcs1_private = Zeroizing::new(pkcs1_private);
            (
                Zeroizing::new(rsa_pkcs8_from_pkcs1(&pkcs1_private)),
                rsa_spki_from_pkcs1(&pkcs1_public),
            )
        }
        DkimAlgorithm::Ed25519Sha256 => {
            let (pkcs8, public) = DkimKeyPair::generate_ed25519()
                .map_err(failed)?
                .into_inner();
            (Zeroizing::new(pkcs8), public)
        }
    };
    Ok(GeneratedKey {
        algorithm,
        private_pkcs8,
        public_key_b64: base64::engine::general_purpose::STANDARD.encode(public_key),
    })
}

/// The TXT value to publish at `<selector>._domainkey.<domain>`:
/// `v=DKIM1; k=rsa; p=<b64>` (`k=ed25519` for Ed25519).
pub fn txt_value(algorithm: DkimAlgorithm, public_key_b64: &str) -> String {
    format!("v=DKIM1; k={}; p={public_key_b64}", algorithm.key_type())
}

/// PKCS#8 PrivateKeyInfo: SEQUENCE { INTEGER 0, rsaEncryption, OCTET STRING pkcs1 }.
fn rsa_pkcs8_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    let mut body = Zeroizing::new(vec![0x02, 0x01, 0x00]);
    body.extend_from_slice(&RSA_ALGORITHM_ID);
    der_push(&mut body, 0x04, pkcs1);
    let mut out = Vec::with_capacity(body.len() + 4);
    der_push(&mut out, 0x30, &body);
    out
}

/// SubjectPublicKeyInfo: SEQUENCE { rsaEncryption, BIT STRING (0 unused bits) pkcs1 }.
fn rsa_spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(pkcs1.len() + 1);
    bits.push(0x00);
    bits.extend_from_slice(pkcs1);
    let mut body = RSA_ALGORITHM_ID.to_vec();
    der_push(&mut body, 0x03, &bits);
    let mut out = Vec::with_capacity(body.len() + 4);
    der_push(&mut out, 0x30, &body);
    out
}

/// Appends one DER TLV (definite length, short or long form).
fn der_push(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_use_the_short_and_long_forms() {
        let mut out = Vec::new();
        der_push(&mut out, 0x04, &[7; 5]);
        assert_eq!(out[..2], [0x04, 5]);
        let mut out = Vec::new();
        der_push(&mut out, 0x04, &[7; 200]);
        assert_eq!(out[..3], [0x04, 0x81, 200]);
        let mut out = Vec::new();
        der_push(&mut out, 0x30, &[7; 1190]);
        assert_eq!(out[..4], [0x30, 0x82, 0x04, 0xa6]);
        assert_eq!(out.len(), 4 + 1190);
    }

    #[test]
    fn txt_values_name_the_key_type() {
        assert_eq!(
            txt_value(DkimAlgorithm::RsaSha256, "QUJD"),
            "v=DKIM1; k=rsa; p=QUJD"
        );
        assert_eq!(
            txt_value(DkimAlgorithm::Ed25519Sha256, "QUJD"),
            "v=DKIM1; k=ed25519; p=QUJD"
        );
    }

    #[test]
    fn ed25519_keys_are_pkcs8_with_a_raw_public_key() {
        let key = generate(DkimAlgorithm::Ed25519Sha256).unwrap();
        assert_eq!(key.algorithm, DkimAlgorithm::Ed25519Sha256);
        let public = base64::engine::general_purpose::STANDARD
            .decode(&key.public_key_b64)
            .unwrap();
        assert_eq!(public.len(), 32);
        assert_eq!(key.private_pkcs8[0], 0x30, "a DER SEQUENCE");
        let shown = format!("{key:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_ne!(
            generate(DkimAlgorithm::Ed25519Sha256)
                .unwrap()
                .public_key_b64,
            key.public_key_b64
        );
    }
}
