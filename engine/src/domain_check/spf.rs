//! The `spf` check: does every tenant IP get `pass` from the domain's SPF
//! record? And [`spf_value`], the record to publish.
//!
//! Evaluation is RFC 7208 `check_host()` without the parts a sending-domain
//! check does not need:
//! - mechanisms `all`, `ip4`, `ip6` (with CIDR), `a` and `mx` (with dual CIDR,
//!   at most 10 MX hosts), `include` (matches on the included record's `pass`),
//!   `exists`, and the `redirect=` modifier, each with its qualifier;
//! - `ptr` is never evaluated and never matches (RFC 7208 §5.5 says not to use
//!   it); when an IP does not pass, `found` says that a `ptr` was skipped;
//! - macros (`%{i}` …) are not expanded: reaching one ends the evaluation as
//!   "unsupported", and `found` says so;
//! - at most 10 DNS-querying terms (`include`, `a`, `mx`, `ptr`, `exists`,
//!   `redirect`) and at most 2 void lookups (no records, NXDOMAIN) per
//!   evaluation, else permerror (§4.6.4); an `include` or `redirect` loop
//!   ends on the same limit;
//! - two `v=spf1` records at one name are a permerror (§4.5).
//!
//! Every IP is evaluated on its own (its own term count), over lookups shared by
//! the verification, so the second IP asks DNS nothing new.

use std::fmt;
use std::net::IpAddr;

use futures::future::BoxFuture;

use super::lookups::{LookupError, Lookups};
use super::spf_record::{Mechanism, Qualifier, in_network, in_v4, in_v6, is_spf, parse};
use super::{Check, NO_RECORD};

/// RFC 7208 §4.6.4: DNS-querying terms per evaluation.
pub const MAX_DNS_TERMS: usize = 10;
/// RFC 7208 §4.6.4: lookups with no answer per evaluation.
pub const MAX_VOID_LOOKUPS: usize = 2;
/// RFC 7208 §4.6.4: MX hosts looked up for one `mx` term.
pub const MAX_MX_HOSTS: usize = 10;

/// The SPF record to publish at the domain: the tenant's IPs, then `~all`.
///
/// `~all` (softfail), not `-all`: the record replaces whatever the domain had,
/// and a domain usually also sends from elsewhere (its own mail server, a
/// helpdesk, a CRM). With `-all` those would be refused the moment the record is
/// published; with `~all` they are only marked, and DMARC still decides. Owners
/// who send from nowhere else can make it `-all`; the check passes either way.
pub fn spf_value(ips: &[IpAddr]) -> String {
    let mut value = String::from("v=spf1");
    let mut seen = Vec::new();
    for ip in ips {
        if seen.contains(ip) {
            continue;
        }
        seen.push(*ip);
        match ip {
            IpAddr::V4(ip) => value.push_str(&format!(" ip4:{ip}")),
            IpAddr::V6(ip) => value.push_str(&format!(" ip6:{ip}")),
        }
    }
    value.push_str(" ~all");
    value
}

/// RFC 7208 §2.6 results, plus the two ways this check stops early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpfResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    PermError,
    TempError,
    /// A macro was reached.
    Unsupported,
    /// The verification's lookup cap was reached.
    Capped,
}

impl fmt::Display for SpfResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::PermError => "permerror",
            SpfResult::TempError => "temperror",
            SpfResult::Unsupported => "unsupported",
            SpfResult::Capped => "not evaluated to the end",
        })
    }
}

/// A result and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub result: SpfResult,
    pub why: String,
}

impl Outcome {
    fn new(result: SpfResult, why: impl Into<String>) -> Self {
        Self {
            result,
            why: why.into(),
        }
    }

    fn from_lookup(err: LookupError) -> Self {
        let result = match err {
            LookupError::Temporary(_) => SpfResult::TempError,
            LookupError::Invalid(_) => SpfResult::PermError,
            LookupError::Cap(_) => SpfResult::Capped,
        };
        Self::new(result, err.found())
    }
}

pub(crate) async fn check(lookups: &Lookups<'_>, domain: &str, ips: &[IpAddr]) -> Check {
    let (ok, found) = judge(lookups, domain, ips).await;
    Check {
        name: "spf".to_owned(),
        ok,
        expected: spf_value(ips),
        found,
        required: true,
    }
}

async fn judge(lookups: &Lookups<'_>, domain: &str, ips: &[IpAddr]) -> (bool, String) {
    let records = match lookups.txt(domain).await {
        Ok(records) => records,
        Err(err) => return (false, err.found()),
    };
    let spf: Vec<&String> = records.iter().filter(|r| is_spf(r)).collect();
    let record = match spf.as_slice() {
        [] => return (false, NO_RECORD.to_owned()),
        [record] => record.as_str(),
        many => {
            let listed: Vec<&str> = many.iter().map(|r| r.as_str()).collect();
            return (
                false,
                format!(
                    "permerror: {} SPF records at {domain} (RFC 7208 §4.5 allows one): {}",
                    many.len(),
                    listed.join(" | ")
                ),
            );
        }
    };
    if let Err(syntax) = parse(record) {
        return (false, format!("{record} (permerror: {syntax})"));
    }
    for ip in ips {
        let outcome = evaluate(lookups, *ip, domain).await;
        if outcome.result == SpfResult::Pass {
            continue;
        }
        let found = match outcome.result {
            // `why` already starts with TEMPORARY_FAILURE (from the lookup error).
            SpfResult::TempError => format!("{} (evaluating {ip})", outcome.why),
            result => format!("{ip}: {result} ({}); record: {record}", outcome.why),
        };
        return (false, found);
    }
    (true, record.to_owned())
}

/// `check_host(ip, domain)` with a fresh term and void count.
pub(crate) async fn evaluate(lookups: &Lookups<'_>, ip: IpAddr, domain: &str) -> Outcome {
    let mut evaluation = Evaluation {
        lookups,
        ip,
        terms: 0,
        voids: 0,
        skipped_ptr: false,
    };
    let mut outcome = evaluation.check_host(domain.to_owned()).await;
    if evaluation.skipped_ptr && outcome.result != SpfResult::Pass {
        outcome
            .why
            .push_str("; a ptr mechanism was treated as not matching");
    }
    outcome
}

struct Evaluation<'l, 'd> {
    lookups: &'l Lookups<'d>,
    ip: IpAddr,
    terms: usize,
    voids: usize,
    skipped_ptr: bool,
}

impl Evaluation<'_, '_> {
    fn check_host(&mut self, domain: String) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let records = match self.lookups.txt(&domain).await {
                Ok(records) => records,
                Err(err) => return Outcome::from_lookup(err),
            };
            let spf: Vec<&String> = records.iter().filter(|r| is_spf(r)).collect();
            let record = match spf.as_slice() {
                [] => return Outcome::new(SpfResult::None, format!("no SPF record at {domain}")),
                [record] => (*record).clone(),
                many => {
                    return Outcome::new(
                        SpfResult::PermError,
                        format!("{} SPF records at {domain}", many.len()),
                    );
                }
            };
            let record = match parse(&record) {
                Ok(record) => record,
                Err(syntax) => {
                    return Outcome::new(SpfResult::PermError, format!("{domain}: {syntax}"));
                }
            };
            for directive in &record.directives {
                match self.matches(&domain, &directive.mechanism).await {
                    Ok(false) => {}
                    Ok(true) => {
                        let result = match directive.qualifier {
                            Qualifier::Pass => SpfResult::Pass,
                            Qualifier::Fail => SpfResult::Fail,
                            Qualifier::SoftFail => SpfResult::SoftFail,
                            Qualifier::Neutral => SpfResult::Neutral,
                        };
                        let why = format!("matched {} at {domain}", directive.text);
                        return Outcome::new(result, why);
                    }
                    Err(outcome) => return outcome,
                }
            }
            let Some(redirect) = record.redirect else {
                return Outcome::new(
                    SpfResult::Neutral,
                    format!("nothing matched at {domain}, no redirect"),
                );
            };
            if let Err(outcome) = self.count_term().and_then(|()| target(&redirect)) {
                return outcome;
            }
            let outcome = self.check_host(redirect.clone()).await;
            if outcome.result == SpfResult::None {
                return Outcome::new(
                    SpfResult::PermError,
                    format!("redirect={redirect} at {domain}: {}", outcome.why),
                );
            }
            outcome
        })
    }

    /// Whether `mechanism` at `domain` matches the IP; `Err` ends the evaluation.
    async fn matches(&mut self, domain: &str, mechanism: &Mechanism) -> Result<bool, Outcome> {
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net, len) => {
                Ok(matches!(self.ip, IpAddr::V4(ip) if in_v4(ip, *net, *len)))
            }
            Mechanism::Ip6(net, len) => {
                Ok(matches!(self.ip, IpAddr::V6(ip) if in_v6(ip, *net, *len)))
            }
            Mechanism::A {
                domain: spec,
                v4,
                v6,
            } => {
                self.count_term()?;
                let name = spec
                    .as_deref()
                    .map(target)
                    .transpose()?
                    .unwrap_or_else(|| domain.to_owned());
                let addresses = self
                    .lookups
                    .addresses(&name)
                    .await
                    .map_err(Outcome::from_lookup)?;
                self.void_if_empty(addresses.is_empty(), &name)?;
                Ok(addresses
                    .iter()
                    .any(|net| in_network(self.ip, *net, *v4, *v6)))
            }
            Mechanism::Mx {
                domain: spec,
                v4,
                v6,
            } => {
                self.count_term()?;
                let name = spec
                    .as_deref()
                    .map(target)
                    .transpose()?
                    .unwrap_or_else(|| domain.to_owned());
                let hosts = self
                    .lookups
                    .mx_hosts(&name)
                    .await
                    .map_err(Outcome::from_lookup)?;
                self.void_if_empty(hosts.is_empty(), &name)?;
                if hosts.len() > MAX_MX_HOSTS {
                    return Err(Outcome::new(
                        SpfResult::PermError,
                        format!(
                            "mx at {name}: {} MX hosts, at most {MAX_MX_HOSTS}",
                            hosts.len()
                        ),
                    ));
                }
                for host in &hosts {
                    let addresses = self
                        .lookups
                        .addresses(host)
                        .await
                        .map_err(Outcome::from_lookup)?;
                    if addresses
                        .iter()
                        .any(|net| in_network(self.ip, *net, *v4, *v6))
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(_) => {
                self.count_term()?;
                self.skipped_ptr = true;
                Ok(false)
            }
            Mechanism::Exists(spec) => {
                self.count_term()?;
                let name = target(spec)?;
                let addresses = self
                    .lookups
                    .addresses(&name)
                    .await
                    .map_err(Outcome::from_lookup)?;
                self.void_if_empty(addresses.is_empty(), &name)?;
                Ok(!addresses.is_empty())
            }
            Mechanism::Include(spec) => {
                self.count_term()?;
                let name = target(spec)?;
                let outcome = self.check_host(name.clone()).await;
                match outcome.result {
                    SpfResult::Pass => Ok(true),
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                    SpfResult::None => Err(Outcome::new(
                        SpfResult::PermError,
                        format!("include:{name} at {domain}: {}", outcome.why),
                    )),
                    _ => Err(outcome),
                }
            }
        }
    }

    fn count_term(&mut self) -> Result<(), Outcome> {
        self.terms += 1;
        if self.terms > MAX_DNS_TERMS {
            return Err(Outcome::new(
                SpfResult::PermError,
                format!(
                    "more than {MAX_DNS_TERMS} DNS-querying terms (include, a, mx, ptr, exists, \
                     redirect; RFC 7208 §4.6.4), or an include/redirect loop"
                ),
            ));
        }
        Ok(())
    }

    fn void_if_empty(&mut self, empty: bool, name: &str) -> Result<(), Outcome> {
        if !empty {
            return Ok(());
        }
        self.voids += 1;
        if self.voids > MAX_VOID_LOOKUPS {
            return Err(Outcome::new(
                SpfResult::PermError,
                format!(
                    "more than {MAX_VOID_LOOKUPS} lookups found nothing (the last at {name}; RFC 7208 §4.6.4)"
                ),
            ));
        }
        Ok(())
    }
}

/// A domain-spec to look up; macros are not expanded here.
fn target(spec: &str) -> Result<String, Outcome> {
    if spec.contains('%') {
        return Err(Outcome::new(
            SpfResult::Unsupported,
            format!("{spec} uses an SPF macro, which this check does not expand"),
        ));
    }
    Ok(spec.trim_end_matches('.').to_owned())
}

#[cfg(test)]
#[path = "spf_tests.rs"]
mod tests;
