//! Signed tokens for the public tracking and unsubscribe links (`/u/{token}`,
//! `/t/o/{token}`, `/t/c/{token}`): the tenant and job ids plus an HMAC-SHA256 tag
//! over the link kind and both ids, so a forged or altered token is refused without
//! a lookup, and the lookup it allows stays inside one tenant (keys lead with
//! `tenant_id`, DESIGN.md §3a).
//!
//! A click token also carries the link's target URL after the tag, and the tag
//! covers it: a token with another URL (an open redirect) is refused like a
//! forged one. Unsubscribe and open tokens sign no URL, which keeps their tags
//! exactly what they were before click tokens existed (links already in inboxes
//! keep working). Called by the delivery path (`message`, `tracking_html`) to
//! build links and by the API's public routes to check them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the tag kept in a token (128 bits).
const TAG_LEN: usize = 16;
/// Tenant id, job id and tag: the fixed head of every token.
const HEAD_LEN: usize = 32 + TAG_LEN;
/// Longest target URL a click token carries; longer links are not tracked.
pub const MAX_CLICK_URL_LEN: usize = 2048;
/// Longest token accepted (a click token with the longest URL, base64).
const MAX_TOKEN_LEN: usize = (HEAD_LEN + MAX_CLICK_URL_LEN).div_ceil(3) * 4;

/// What a link does; part of the signed data so tokens cannot be swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Unsubscribe,
    Open,
    /// Signed with its target URL: see [`sign_click`] and [`verify_click`].
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

/// The tag input is `label | tenant | job | url`: the label and ids have fixed
/// lengths and the URL is the rest, so no two inputs are confused.
fn mac(secret: &str, kind: LinkKind, tenant: Uuid, job: Uuid, url: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(kind.label());
    mac.update(tenant.as_bytes());
    mac.update(job.as_bytes());
    mac.update(url.as_bytes());
    mac
}

fn sign_with(secret: &str, kind: LinkKind, tenant: Uuid, job: Uuid, url: &str) -> String {
    let tag = mac(secret, kind, tenant, job, url).finalize().into_bytes();
    let mut bytes = Vec::with_capacity(HEAD_LEN + url.len());
    bytes.extend_from_slice(tenant.as_bytes());
    bytes.extend_from_slice(job.as_bytes());
    bytes.extend_from_slice(&tag[..TAG_LEN]);
    bytes.extend_from_slice(url.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes and checks a token of `kind`: `(tenant, job, url)`.
fn verify_with(secret: &str, kind: LinkKind, token: &str) -> Option<(Uuid, Uuid, String)> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    if bytes.len() < HEAD_LEN {
        return None;
    }
    let tenant = Uuid::from_slice(&bytes[..16]).ok()?;
    let job = Uuid::from_slice(&bytes[16..32]).ok()?;
    let url = std::str::from_utf8(&bytes[HEAD_LEN..]).ok()?;
    mac(secret, kind, tenant, job, url)
        .verify_truncated_left(&bytes[32..HEAD_LEN])
        .ok()?;
    Some((tenant, job, url.to_owned()))
}

/// A URL-safe token naming `(tenant, job)` for a link of `kind` (unsubscribe or
/// open; a click token needs its URL, [`sign_click`]).
pub fn sign(secret: &str, kind: LinkKind, tenant: Uuid, job: Uuid) -> String {
    sign_with(secret, kind, tenant, job, "")
}

/// The `(tenant, job)` a token names, if the token is authentic for `kind` and
/// carries no URL.
pub fn verify(secret: &str, kind: LinkKind, token: &str) -> Option<(Uuid, Uuid)> {
    match verify_with(secret, kind, token)? {
        (tenant, job, url) if url.is_empty() => Some((tenant, job)),
        _ => None,
    }
}

/// Whether a click token may carry `url`: http(s), at most
/// [`MAX_CLICK_URL_LEN`] bytes, visible ASCII only (it becomes a `Location`
/// header as is).
pub fn is_trackable_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://"))
        && url.len() <= MAX_CLICK_URL_LEN
        && url.bytes().all(|b| b.is_ascii_graphic())
}

/// A click token for `(tenant, job)` that redirects to `url`; `None` when the
/// URL cannot be tracked ([`is_trackable_url`]).
pub fn sign_click(secret: &str, tenant: Uuid, job: Uuid, url: &str) -> Option<String> {
    is_trackable_url(url).then(|| sign_with(secret, LinkKind::Click, tenant, job, url))
}

/// The `(tenant, job, url)` of an authentic click token.
pub fn verify_click(secret: &str, token: &str) -> Option<(Uuid, Uuid, String)> {
    let (tenant, job, url) = verify_with(secret, LinkKind::Click, token)?;
    is_trackable_url(&url).then_some((tenant, job, url))
}

fn link(base_url: &str, path: &str, token: &str) -> String {
    format!("{}/{path}/{token}", base_url.trim_end_matches('/'))
}

/// The `List-Unsubscribe` URL of a job.
pub fn unsubscribe_url(base_url: &str, secret: &str, tenant: Uuid, job: Uuid) -> String {
    link(
        base_url,
        "u",
        &sign(secret, LinkKind::Unsubscribe, tenant, job),
    )
}

/// The open-pixel URL of a job (`/t/o/{token}`).
pub fn open_url(base_url: &str, secret: &str, tenant: Uuid, job: Uuid) -> String {
    link(base_url, "t/o", &sign(secret, LinkKind::Open, tenant, job))
}

/// The click-redirect URL (`/t/c/{token}`) standing for `target` in a job's
/// message; `None` when `target` cannot be tracked.
pub fn click_url(
    base_url: &str,
    secret: &str,
    tenant: Uuid,
    job: Uuid,
    target: &str,
) -> Option<String> {
    let token = sign_click(secret, tenant, job, target)?;
    Some(link(base_url, "t/c", &token))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef";

    fn flip(token: &str, at: usize) -> String {
        let mut bytes = token.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

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
        assert_eq!(
            verify(SECRET, LinkKind::Unsubscribe, &flip(&token, 3)),
            None
        );
        assert_eq!(verify(SECRET, LinkKind::Unsubscribe, "not-base64!"), None);
    }

    #[test]
    fn unsubscribe_tokens_are_unchanged_by_click_tokens() {
        // The token the first version of this module issued: links already in
        // inboxes must keep verifying.
        let token = sign(
            SECRET,
            LinkKind::Unsubscribe,
            Uuid::from_u128(7),
            Uuid::from_u128(42),
        );
        assert_eq!(
            token,
            "AAAAAAAAAAAAAAAAAAAABwAAAAAAAAAAAAAAAAAAACrA-3k48lYAhFU3KH-g_oYu"
        );
    }

    #[test]
    fn click_tokens_carry_their_signed_url() {
        let tenant = Uuid::from_u128(7);
        let job = Uuid::from_u128(42);
        let target = "https://shop.example.com/offer?id=5&ref=mail#top";
        let token = sign_click(SECRET, tenant, job, target).unwrap();
        assert_eq!(
            verify_click(SECRET, &token),
            Some((tenant, job, target.to_owned()))
        );
        assert_eq!(verify_click("another-secret-xyz", &token), None);
        for at in [0, 20, 40, 60, token.len() - 1] {
            assert_eq!(verify_click(SECRET, &flip(&token, at)), None, "byte {at}");
        }
        // Not usable as another kind, and other kinds are not click tokens.
        assert_eq!(verify(SECRET, LinkKind::Click, &token), None);
        assert_eq!(verify(SECRET, LinkKind::Open, &token), None);
        let open = sign(SECRET, LinkKind::Open, tenant, job);
        assert_eq!(verify_click(SECRET, &open), None);
        let bare = sign(SECRET, LinkKind::Click, tenant, job);
        assert_eq!(verify_click(SECRET, &bare), None, "a click needs a URL");
    }

    #[test]
    fn a_swapped_or_extended_url_is_refused() {
        let tenant = Uuid::from_u128(7);
        let job = Uuid::from_u128(42);
        let token = sign_click(SECRET, tenant, job, "https://good.example/").unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for evil in [
            &b"https://evil.example/"[..],
            b"https://good.example/x",
            b"",
        ] {
            let mut swapped = bytes[..HEAD_LEN].to_vec();
            swapped.extend_from_slice(evil);
            let swapped = URL_SAFE_NO_PAD.encode(swapped);
            assert_eq!(verify_click(SECRET, &swapped), None, "{evil:?}");
        }
        // Another job's tag with this URL.
        let other =
            sign_click(SECRET, tenant, Uuid::from_u128(43), "https://good.example/").unwrap();
        let mut mixed = bytes[..32].to_vec();
        mixed.extend_from_slice(&URL_SAFE_NO_PAD.decode(&other).unwrap()[32..]);
        assert_eq!(verify_click(SECRET, &URL_SAFE_NO_PAD.encode(mixed)), None);
    }

    #[test]
    fn only_http_urls_are_tracked() {
        let (t, j) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(sign_click(SECRET, t, j, "HTTPS://Example.com/A").is_some());
        assert!(sign_click(SECRET, t, j, "http://example.com").is_some());
        for bad in [
            "mailto:a@example.com",
            "javascript:alert(1)",
            "ftp://example.com/",
            "https://example.com/a b",
            "https://example.com/\r\nSet-Cookie: x",
            "https://example.com/é",
            "",
        ] {
            assert!(sign_click(SECRET, t, j, bad).is_none(), "{bad:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_CLICK_URL_LEN));
        assert!(sign_click(SECRET, t, j, &long).is_none());
        let longest = format!("https://example.com/{}", "a".repeat(MAX_CLICK_URL_LEN - 20));
        let token = sign_click(SECRET, t, j, &longest).unwrap();
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert_eq!(verify_click(SECRET, &token).unwrap().2, longest);
        assert_eq!(verify_click(SECRET, &"A".repeat(MAX_TOKEN_LEN + 4)), None);
    }

    #[test]
    fn urls_are_under_base() {
        let (t, j) = (Uuid::from_u128(2), Uuid::from_u128(1));
        let base = "https://t.example.com/";
        assert!(unsubscribe_url(base, SECRET, t, j).starts_with("https://t.example.com/u/"));
        assert!(open_url(base, SECRET, t, j).starts_with("https://t.example.com/t/o/"));
        let click = click_url(base, SECRET, t, j, "https://a.example/").unwrap();
        let token = click.strip_prefix("https://t.example.com/t/c/").unwrap();
        assert_eq!(verify_click(SECRET, token).unwrap().2, "https://a.example/");
    }
}
