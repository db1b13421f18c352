//! Checking a sending domain's DNS before mail is sent as it.
//!
//! [`verify`] looks up what a tenant was asked to publish for a domain and
//! reports one [`Check`] per record; [`status`] turns the checks into
//! `verified` / `pending` / `failed`. The API's `POST /v1/domains/{id}/verify`
//! and the daily re-check call it with the node's [`HickoryResolver`] (the
//! `[delivery.dns]` settings and cache); tests use [`FakeResolver`].
//!
//! What is checked (check names in quotes):
//! - `"dkim:<selector>"` (required), per expected selector: a TXT record at
//!   `<selector>._domainkey.<domain>` whose `p=` is the expected public key,
//!   compared as tag-value lists (whitespace inside values ignored, the
//!   character-strings of a long record joined); `k=` must agree (absent means
//!   `rsa`, RFC 6376 §3.6.1), `v=`, when present, is `DKIM1`; an empty `p=`
//!   (a revoked key) never matches.
//! - `"spf"` (required): exactly one `v=spf1` TXT record at the domain, and every
//!   tenant IP gets `pass` from it (RFC 7208 evaluation, see [`spf`] for the
//!   subset: no macros, `ptr` never matches). At most 10 DNS-querying terms and 2
//!   void lookups per evaluation, as RFC 7208 §4.6.4 says; more is a permerror.
//! - `"dmarc"` (required): one `v=DMARC1` record at `_dmarc.<domain>` with a
//!   valid `p=` (none, quarantine or reject). Without one, the parent domains are
//!   asked (a DMARC policy of the organizational domain covers its subdomains;
//!   there is no public-suffix list here, so the walk stops at two labels).
//! - `"ptr:<ip>"` (not required, reported only): forward-confirmed reverse DNS —
//!   a PTR name of the IP whose A/AAAA records include the IP.
//!
//! Limits, so that a hostile domain cannot make a verification expensive:
//! - the DKIM, SPF and DMARC checks share a cap of [`MAX_LOOKUPS_PER_VERIFY`]
//!   DNS lookups, answers remembered for the verification (so evaluating SPF for
//!   each IP does not ask again); DKIM and DMARC run before SPF, so a runaway SPF
//!   record cannot starve them; a check that hits the cap fails and says so;
//! - each PTR check has its own small cap (one PTR lookup, at most
//!   [`ptr::MAX_PTR_NAMES`] forward lookups): the IP owner controls those records;
//! - at most [`MAX_CONCURRENT_CHECKS`] checks run at once;
//! - each lookup has the resolver's timeout; a temporary DNS failure fails only
//!   its check, with `found` starting `temporary DNS failure:`.
//!
//! The values to publish come from here too: [`spf_value`] (ends `~all`, see its
//! doc) and [`dmarc_value`] (`p=none` without `rua`: a safe start that changes no
//! delivery; tighten it once the domain's mail is known to pass).

mod adapters;
mod dkim_record;
mod dmarc;
mod lookups;
pub mod ptr;
pub mod spf;
mod spf_record;

use std::net::IpAddr;

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::BoxFuture;

use crate::dns::DnsError;
#[cfg(doc)]
use crate::dns::{FakeResolver, HickoryResolver};
use lookups::Lookups;

pub use dmarc::dmarc_value;
pub use spf::spf_value;

/// `found` of a check whose record is simply absent (the status is `pending`).
pub const NO_RECORD: &str = "no record";
/// `found` of a check that could not get an answer; the status is `pending`.
pub const TEMPORARY_FAILURE: &str = "temporary DNS failure";
/// Most DNS lookups the DKIM, SPF and DMARC checks of one verification may make.
pub const MAX_LOOKUPS_PER_VERIFY: usize = 40;
/// Most checks of one verification in flight at once.
pub const MAX_CONCURRENT_CHECKS: usize = 4;

/// The raw lookups a domain check needs. NXDOMAIN and NODATA may be returned as
/// `Ok(vec![])` or as the matching permanent [`DnsError`]: both mean "no records".
/// [`DnsError::Temporary`] means "no answer now".
#[async_trait]
pub trait DomainDns: Send + Sync {
    /// The TXT records at `name`, each with its character-strings joined.
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError>;
    /// The A and AAAA records of `name`.
    async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, DnsError>;
    /// The MX hosts of `name`, best first (a null MX is no host).
    async fn mx_hosts(&self, name: &str) -> Result<Vec<String>, DnsError>;
    /// The PTR names of `ip`.
    async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError>;
}

/// One record checked: what should be published and what DNS had.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    /// `dkim:<selector>`, `spf`, `dmarc` or `ptr:<ip>`.
    pub name: String,
    pub ok: bool,
    /// The value to publish (or, for PTR, what is wanted).
    pub expected: String,
    /// What DNS had: the record, [`NO_RECORD`], or why it does not do.
    pub found: String,
    /// False for checks that are reported only (PTR).
    pub required: bool,
}

/// What a domain should publish.
pub struct Expected<'a> {
    pub domain: &'a str,
    /// `(selector, TXT value)` for each DKIM key to find, e.g. from `dkim::txt_value`.
    pub dkim: Vec<(String, String)>,
    /// The tenant's sending IPs: each must pass SPF and gets a PTR check.
    pub ips: Vec<IpAddr>,
}

/// Runs every check for `expected`, in the order dkim (per selector), spf,
/// dmarc, ptr (per IP). Never fails: a lookup failure is a check that is not ok.
pub async fn verify(dns: &dyn DomainDns, expected: &Expected<'_>) -> Vec<Check> {
    let shared = Lookups::new(dns, MAX_LOOKUPS_PER_VERIFY);
    let domain = expected.domain;

    // Phase 1, cheap and bounded: DKIM per selector, then DMARC.
    let mut first: Vec<BoxFuture<'_, Check>> = expected
        .dkim
        .iter()
        .map(|(selector, value)| -> BoxFuture<'_, Check> {
            Box::pin(dkim_record::check(&shared, domain, selector, value))
        })
        .collect();
    first.push(Box::pin(dmarc::check(&shared, domain)));
    let mut first = run_bounded(first).await;
    let dmarc = first.pop().expect("the dmarc check ran");

    // Phase 2: SPF with what is left of the shared cap; PTR with their own caps.
    let mut second: Vec<BoxFuture<'_, Check>> =
        vec![Box::pin(spf::check(&shared, domain, &expected.ips))];
    for ip in &expected.ips {
        second.push(Box::pin(async move {
            let own = Lookups::new(dns, ptr::MAX_PTR_NAMES + 1);
            ptr::check(&own, *ip).await
        }));
    }
    let second = run_bounded(second).await;

    let mut checks = first;
    let mut second = second.into_iter();
    checks.extend(second.next());
    checks.push(dmarc);
    checks.extend(second);
    checks
}

/// Runs `checks` at most [`MAX_CONCURRENT_CHECKS`] at a time, keeping their order.
async fn run_bounded(checks: Vec<BoxFuture<'_, Check>>) -> Vec<Check> {
    futures::stream::iter(checks)
        .buffered(MAX_CONCURRENT_CHECKS)
        .collect()
        .await
}

/// `"verified"` when every required check is ok; `"failed"` when a required
/// record exists but is wrong (or a lookup cap was hit); `"pending"` when the
/// required records that are not ok are simply absent or could not be looked up
/// now (a temporary DNS failure proves nothing either way).
pub fn status(checks: &[Check]) -> &'static str {
    let mut pending = false;
    for check in checks.iter().filter(|c| c.required && !c.ok) {
        if check.found == NO_RECORD || check.found.starts_with(TEMPORARY_FAILURE) {
            pending = true;
        } else {
            return "failed";
        }
    }
    if pending { "pending" } else { "verified" }
}

#[cfg(test)]
mod tests;
