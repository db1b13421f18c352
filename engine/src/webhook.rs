//! Webhooks, the pure parts: which event kinds a webhook may subscribe to, what
//! a webhook URL may be, which addresses it may reach, the signing secret and
//! the `Penguin-Signature` header, and the JSON body a receiver gets.
//! The API (`api/src/routes/webhooks.rs`) checks with these at create; the
//! dispatcher (`actors/src/webhooks.rs`) at every send.
//!
//! Guarantees:
//! - [`check_events`] accepts only [`KINDS`], at least one, duplicates removed,
//!   and names the first unknown kind.
//! - [`parse_url`] accepts only absolute `http`/`https` URLs of at most
//!   [`MAX_URL_BYTES`] with a host, without credentials, fragment, or any
//!   control character or whitespace in the text as given.
//! - [`vet`] passes an address list only when every address is globally
//!   routable ([`crate::dns::routable::non_global`]) or the host is allowed by
//!   `[webhooks] allow_hosts`; otherwise it names the first refused address.
//! - [`signature`] is `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`,
//!   the secret being the exact text [`new_secret`] returned to the tenant.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::dns::routable::{NonGlobal, non_global};

/// Every event kind a webhook may subscribe to.
pub const KINDS: [&str; 11] = [
    "sent",
    "deferred",
    "bounced",
    "failed",
    "suppressed",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
    "replied",
    "campaign_completed",
];

/// The kind of the events `POST /v1/webhooks/{id}/test` sends.
pub const TEST_KIND: &str = "test";

/// Longest webhook URL.
pub const MAX_URL_BYTES: usize = 2_048;

/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Penguin-Signature";

/// The subscribed kinds, deduplicated in the order given; an error names the
/// first unknown kind.
pub fn check_events(events: &[String]) -> Result<Vec<String>, String> {
    if events.is_empty() {
        return Err(format!(
            "events must name at least one kind of: {}",
            KINDS.join(", ")
        ));
    }
    let mut kinds: Vec<String> = Vec::with_capacity(events.len());
    for kind in events {
        if !KINDS.contains(&kind.as_str()) {
            let shown: String = kind.chars().take(64).collect();
            return Err(format!(
                "unknown event kind {shown:?}; the kinds are: {}",
                KINDS.join(", ")
            ));
        }
        if !kinds.contains(kind) {
            kinds.push(kind.clone());
        }
    }
    Ok(kinds)
}

/// A webhook URL, checked; its host as written (IPv6 without brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub url: url::Url,
    pub host: String,
    /// The host when it is an IP literal.
    pub ip: Option<IpAddr>,
    pub port: u16,
}

/// Parses and checks a webhook URL (see the module doc).
pub fn parse_url(text: &str) -> Result<WebhookUrl, String> {
    if text.len() > MAX_URL_BYTES {
        return Err(format!("url is longer than {MAX_URL_BYTES} bytes"));
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("url must not contain whitespace or control characters".into());
    }
    let url = url::Url::parse(text).map_err(|e| format!("url is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url must be http:// or https://".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not carry credentials".into());
    }
    if url.fragment().is_some() {
        return Err("url must not have a fragment".into());
    }
    let (host, ip) = match url.host() {
        Some(url::Host::Domain(name)) => (name.to_string(), None),
        Some(url::Host::Ipv4(v4)) => (v4.to_string(), Some(IpAddr::V4(v4))),
        Some(url::Host::Ipv6(v6)) => (v6.to_string(), Some(IpAddr::V6(v6))),
        None => return Err("url must name a host".into()),
    };
    let Some(port) = url.port_or_known_default() else {
        return Err("url must name a port or use http/https".into());
    };
    Ok(WebhookUrl {
        url,
        host,
        ip,
        port,
    })
}

/// Why an address of a webhook's host is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub ip: IpAddr,
    pub range: NonGlobal,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is not a public address ({}); a private receiver's host must be listed in \
             [webhooks] allow_hosts",
            self.ip, self.range
        )
    }
}

/// `addresses` when the host may be reached at all of them: every one is
/// globally routable, or the host is `allowed` (`[webhooks] allow_hosts`).
pub fn vet(addresses: &[IpAddr], allowed: bool) -> Result<&[IpAddr], Refused> {
    if !allowed {
        for ip in addresses {
            if let Some(range) = non_global(*ip) {
                return Err(Refused { ip: *ip, range });
            }
        }
    }
    Ok(addresses)
}

/// A fresh signing secret, as shown once to the tenant: `whsec_` and 64 hex digits.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", crate::hex::lower(&bytes))
}

/// The aad binding a sealed secret to its webhook row.
pub fn secret_aad(tenant: Uuid, webhook: Uuid) -> String {
    format!("{tenant}/{webhook}/webhook")
}

/// The `Penguin-Signature` value of `body` sent at unix second `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={t},v1={}",
        crate::hex::lower(&mac.finalize().into_bytes())
    )
}

/// One event as a receiver gets it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Stable per event: a receiver drops an id it has seen.
    pub id: i64,
    pub kind: String,
    pub tenant_id: Uuid,
    pub campaign_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub recipient: Option<String>,
    pub smtp_code: Option<i32>,
    pub enhanced_code: Option<String>,
    pub reply: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The body of one POST: `{"events": [...]}`.
pub fn body(events: &[Event]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        events: &'a [Event],
    }
    serde_json::to_vec(&Body { events }).expect("events serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked_and_deduplicated() {
        let given = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            check_events(&given(&["sent", "opened", "sent"])).unwrap(),
            given(&["sent", "opened"])
        );
        assert!(check_events(&[]).unwrap_err().contains("at least one"));
        let err = check_events(&given(&["sent", "open"])).unwrap_err();
        assert!(err.contains("\"open\""), "{err}");
        for kind in KINDS {
            check_events(&given(&[kind])).unwrap();
        }
    }

    #[test]
    fn urls_are_checked() {
        let ok = parse_url("https://hooks.example.com/in?x=1").unwrap();
        assert_eq!(ok.host, "hooks.example.com");
        assert_eq!(ok.port, 443);
        assert_eq!(ok.ip, None);
        let local = parse_url("http://127.0.0.1:8080/hook").unwrap();
        assert_eq!(local.ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(local.host, "127.0.0.1");
        let v6 = parse_url("http://[::1]:9/").unwrap();
        assert_eq!(v6.host, "::1");
        for bad in [
            "ftp://example.com/",
            "example.com/hook",
            "http://user:pw@example.com/",
            "http://example.com/#frag",
            "http://example.com/\r\nX: 1",
            "http://exa mple.com/",
            "http://example.com/\0",
            "",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(parse_url(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn non_public_addresses_are_refused_unless_allowed() {
        let public: Vec<IpAddr> = vec!["8.8.8.8".parse().unwrap()];
        assert!(vet(&public, false).is_ok());
        let mixed: Vec<IpAddr> = vec!["8.8.8.8".parse().unwrap(), "10.0.0.1".parse().unwrap()];
        let refused = vet(&mixed, false).unwrap_err();
        assert_eq!(refused.range, NonGlobal::Private);
        assert!(refused.to_string().contains("allow_hosts"));
        assert!(vet(&mixed, true).is_ok());
        let metadata: Vec<IpAddr> = vec!["169.254.169.254".parse().unwrap()];
        assert_eq!(
            vet(&metadata, false).unwrap_err().range,
            NonGlobal::CloudMetadata
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_t_dot_body() {
        // Computed independently: python3 -c 'import hmac, hashlib;
        // print(hmac.new(b"whsec_test", b"1700000000.{}", hashlib.sha256).hexdigest())'
        let header = signature(b"whsec_test", 1_700_000_000, b"{}");
        assert_eq!(
            header,
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(header, signature(b"whsec_other", 1_700_000_000, b"{}"));
        assert_ne!(header, signature(b"whsec_test", 1_700_000_001, b"{}"));
        let secret = new_secret();
        assert!(secret.starts_with("whsec_") && secret.len() == 6 + 64);
        assert_ne!(secret, new_secret());
    }
}
