//! Signed tokens for the public tracking and unsubscribe links (`/u/{token}`,
//! `/t/o/{token}`, `/t/c/{token}`): the job id plus an HMAC-SHA256 tag over the
//! link kind and the id, so a forged or altered token is refused without a lookup.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the tag kept in a token (128 bits).
const TAG_LEN: usize = 16;

/// What a link does; part of the signed data so tokens cannot be swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Unsubscribe,
    Open,
    Click,
}

impl LinkKind {
    fn label(self) -> &'static [u8] {
        match self {
            LinkKind::Unsubscribe => b"u",
            LinkKind::Open => b"o",
            LinkKind::Click => b"c",
        }
    }
}

fn tag(secret: &str, kind: LinkKind, job: Uuid) -> [u8; TAG_LEN] {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(kind.label());
    mac.update(job.as_bytes());
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// A URL-safe token naming `job` for a link of `kind`.
pub fn sign(secret: &str, kind: LinkKind, job: Uuid) -> String {
    let mut bytes = Vec::with_capacity(16 + TAG_LEN);
    bytes.extend_from_slice(job.as_bytes());
    bytes.extend_from_slice(&tag(secret, kind, job));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The job a token names, if the token is authentic for `kind`.
pub fn verify(secret: &str, kind: LinkKind, token: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    if bytes.len() != 16 + TAG_LEN {
        return None;
    }
    let job = Uuid::from_slice(&bytes[..16]).ok()?;
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(kind.label());
    mac.update(job.as_bytes());
    mac.verify_truncated_left(&bytes[16..]).ok()?;
    Some(job)
}

/// The `List-Unsubscribe` URL of a job.
pub fn unsubscribe_url(base_url: &str, secret: &str, job: Uuid) -> String {
    format!(
        "{}/u/{}",
        base_url.trim_end_matches('/'),
        sign(secret, LinkKind::Unsubscribe, job)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef";

    #[test]
    fn tokens_verify_and_forgeries_fail() {
        let job = Uuid::from_u128(42);
        let token = sign(SECRET, LinkKind::Unsubscribe, job);
        assert_eq!(verify(SECRET, LinkKind::Unsubscribe, &token), Some(job));
        assert_eq!(
            verify(SECRET, LinkKind::Open, &token),
            None,
            "kind is signed"
        );
        assert_eq!(
            verify("another-secret-xyz", LinkKind::Unsubscribe, &token),
            None
        );
        let mut altered = token.into_bytes();
        altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            verify(
                SECRET,
                LinkKind::Unsubscribe,
                &String::from_utf8(altered).unwrap()
            ),
            None
        );
        assert_eq!(verify(SECRET, LinkKind::Unsubscribe, "not-base64!"), None);
    }

    #[test]
    fn unsubscribe_url_is_under_base() {
        let url = unsubscribe_url("https://t.example.com/", SECRET, Uuid::from_u128(1));
        assert!(url.starts_with("https://t.example.com/u/"), "{url}");
    }
}
