//! Signed tokens for the public tracking and unsubscribe links (`/u/{token}`,
//! `/t/o/{token}`, `/t/c/{token}`): the tenant and job ids plus an HMAC-SHA256 tag
//! over the link kind and both ids, so a forged or altered token is refused without
//! a lookup, and the lookup it allows stays inside one tenant (keys lead with
//! `tenant_id`, DESIGN.md §3a).

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

fn mac(secret: &str, kind: LinkKind, tenant: Uuid, job: Uuid) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(kind.label());
    mac.update(tenant.as_bytes());
    mac.update(job.as_bytes());
    mac
}

/// A URL-safe token naming `(tenant, job)` for a link of `kind`.
pub fn sign(secret: &str, kind: LinkKind, tenant: Uuid, job: Uuid) -> String {
    let tag = mac(secret, kind, tenant, job).finalize().into_bytes();
    let mut bytes = Vec::with_capacity(32 + TAG_LEN);
    bytes.extend_from_slice(tenant.as_bytes());
    bytes.extend_from_slice(job.as_bytes());
    bytes.extend_from_slice(&tag[..TAG_LEN]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The `(tenant, job)` a token names, if the token is authentic for `kind`.
pub fn verify(secret: &str, kind: LinkKind, token: &str) -> Option<(Uuid, Uuid)> {
    if token.len() > 128 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    if bytes.len() != 32 + TAG_LEN {
        return None;
    }
    let tenant = Uuid::from_slice(&bytes[..16]).ok()?;
    let job = Uuid::from_slice(&bytes[16..32]).ok()?;
    mac(secret, kind, tenant, job)
        .verify_truncated_left(&bytes[32..])
        .ok()?;
    Some((tenant, job))
}

/// The `List-Unsubscribe` URL of a job.
pub fn unsubscribe_url(base_url: &str, secret: &str, tenant: Uuid, job: Uuid) -> String {
    format!(
        "{}/u/{}",
        base_url.trim_end_matches('/'),
        sign(secret, LinkKind::Unsubscribe, tenant, job)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef";

    #[test]
    fn tokens_verify_and_forgeries_fail() {
        let tenant = Uuid::from_u128(7);
        let job = Uuid::from_u128(42);
        let token = sign(SECRET, LinkKind::Unsubscribe, tenant, job);
        assert_eq!(
            verify(SECRET, LinkKind::Unsubscribe, &token),
            Some((tenant, job))
        );
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
        let url = unsubscribe_url(
            "https://t.example.com/",
            SECRET,
            Uuid::from_u128(2),
            Uuid::from_u128(1),
        );
        assert!(url.starts_with("https://t.example.com/u/"), "{url}");
    }
}
