//! Erasure on request (issue 23): the keyed pseudonym that replaces an erased
//! address wherever a row that must stay (a delivery event) held it, and the
//! pattern that finds the address in free text.
//!
//! Called by `store::erasure` (the rewrite) and the API's erasure routes (the
//! `email_hash` they answer and audit). Guarantees:
//! - the pseudonym is `erased:` + the first 16 hex digits of HMAC-SHA256 over
//!   the normalised address, keyed with a key derived from `tracking.secret`
//!   under its own label ([`LABEL`]), so it is stable (the same address always
//!   gives the same pseudonym, events of one address stay linkable), reveals
//!   nothing without the secret, and is never the key of another use of that
//!   secret (the tracking links sign other inputs under the secret itself);
//! - [`text_pattern`] matches the address itself, case-insensitively, as a
//!   Postgres regular expression (every ASCII character that is not a letter
//!   or a digit escaped, so nothing in an address acts as an operator).
//!
//! A rotated `tracking.secret` gives new pseudonyms from then on; rows already
//! rewritten keep theirs (they never hold the address again either way).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Domain separation of the erasure key from every other use of the secret.
pub const LABEL: &[u8] = b"penguin-engine/erasure-pseudonym/v1";

/// Every pseudonym starts with this.
pub const PREFIX: &str = "erased:";

/// Hex digits of the HMAC kept in a pseudonym (64 bits).
const HEX_DIGITS: usize = 16;

/// The erasure key: HMAC-SHA256(secret, [`LABEL`]).
fn key(secret: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(LABEL);
    mac.finalize().into_bytes().into()
}

/// The pseudonym of `email` (already normalised: trimmed, lower-cased) under
/// `secret` (`tracking.secret`): `erased:<16 hex digits>`.
pub fn pseudonym(secret: &str, email: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(&key(secret)).expect("HMAC takes any key length");
    mac.update(email.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("{PREFIX}{}", crate::hex::lower(&digest[..HEX_DIGITS / 2]))
}

/// A Postgres regular expression (ARE) matching `email` literally; used with
/// the case-insensitive flag. Non-ASCII characters are literal in an ARE and
/// stay as they are; an escaped ASCII punctuation character is literal too.
pub fn text_pattern(email: &str) -> String {
    let mut out = String::with_capacity(email.len() * 2);
    for c in email.chars() {
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_short() {
        let a = pseudonym("secret-one-0123456789abcdef", "ann@example.com");
        assert_eq!(
            a,
            pseudonym("secret-one-0123456789abcdef", "ann@example.com")
        );
        assert!(a.starts_with(PREFIX));
        assert_eq!(a.len(), PREFIX.len() + 16);
        assert!(a[PREFIX.len()..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(
            a,
            pseudonym("secret-two-0123456789abcdef", "ann@example.com")
        );
        assert_ne!(
            a,
            pseudonym("secret-one-0123456789abcdef", "bob@example.com")
        );
        assert!(!a.contains("ann"));
    }

    #[test]
    fn the_key_is_not_the_secret() {
        // Domain separation: the pseudonym is not HMAC(secret, email).
        let mut plain = HmacSha256::new_from_slice(b"s3cret-0123456789abcdef").unwrap();
        plain.update(b"ann@example.com");
        let plain = plain.finalize().into_bytes();
        let hex = crate::hex::lower(&plain[..8]);
        assert_ne!(
            pseudonym("s3cret-0123456789abcdef", "ann@example.com"),
            format!("{PREFIX}{hex}")
        );
    }

    #[test]
    fn patterns_escape_every_operator() {
        assert_eq!(text_pattern("a.b+c@x-y.io"), r"a\.b\+c\@x\-y\.io");
        assert_eq!(text_pattern("ü*$^{}|?@é.de"), r"ü\*\$\^\{\}\|\?\@é\.de");
    }
}
