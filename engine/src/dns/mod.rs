//! MX resolution: which SMTP servers take mail for a recipient domain.
//!
//! The IP actors ask [`destinations`] for every recipient domain: a configured
//! route ([`RouteTable::lookup`]) wins; otherwise the domain's MX hosts, best first,
//! on port 25. The lookups sit behind the object-safe [`MxResolver`] trait:
//! [`HickoryResolver`] is the real adapter (one per node, shared in an `Arc`: it
//! owns the cache), [`FakeResolver`] the in-memory one for tests.
//!
//! Guarantees of [`MxResolver::resolve`] (shared by every adapter, which only
//! supplies raw lookups):
//! - MX hosts ordered by preference, equal preferences in random order (RFC 5321
//!   §5.1 load spreading), duplicates removed;
//! - no MX records (NODATA) → the domain itself as an implicit MX, only if it has
//!   an A/AAAA record (RFC 5321 §5.1), else [`DnsError::NoMailHost`];
//! - a null MX (`0 .`, RFC 7505) → [`DnsError::NullMx`]; NXDOMAIN →
//!   [`DnsError::NoSuchDomain`]: both permanent, the job bounces;
//! - timeouts, SERVFAIL, REFUSED, network errors → [`DnsError::Temporary`]: the job
//!   is deferred, never bounced.
//!
//! [`destinations`] keeps the best [`MAX_MX_HOSTS`] hosts; [`addresses`] resolves
//! each host through the same resolver and refuses what is not globally routable
//! ([`routable`]) unless a configured route names it.

pub mod addresses;
mod fake;
mod hickory;
pub mod routable;

use std::net::IpAddr;

use async_trait::async_trait;
use rand::seq::SliceRandom;
use thiserror::Error;

use crate::route::{Destination, RouteTable};

pub use addresses::{MAX_ADDRESSES_PER_HOST, MAX_MX_HOSTS, Refused, Vetted, vetted_addresses};
pub use fake::FakeResolver;
pub use hickory::{DnsSetupError, HickoryResolver};

/// The SMTP port of every MX host (RFC 5321 §4.5.4.2 uses the well-known port).
pub const SMTP_PORT: u16 = 25;

/// One mail exchanger for a domain, in delivery order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MxHost {
    /// Lower-case host name without the trailing dot.
    pub host: String,
    pub preference: u16,
}

/// One MX record as the DNS returned it (before policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRecord {
    pub preference: u16,
    /// Lower-case, without the trailing dot; empty for the root (`.`, a null MX).
    pub exchange: String,
}

/// Why a domain or host has no usable answer. Callers match on the variant
/// (or [`DnsError::is_permanent`]); the message is the bounce/deferral reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DnsError {
    /// RFC 7505: the domain declares that it accepts no mail.
    #[error("{domain} publishes a null MX (RFC 7505): it accepts no mail")]
    NullMx { domain: String },
    /// NXDOMAIN: the name does not exist.
    #[error("{name} does not exist (NXDOMAIN)")]
    NoSuchDomain { name: String },
    /// The domain exists but has neither MX nor A/AAAA records.
    #[error("{domain} has no MX and no A/AAAA record: no mail server")]
    NoMailHost { domain: String },
    /// A host (an MX target or a route host) exists but has no A/AAAA record.
    #[error("{host} has no A/AAAA record")]
    NoAddresses { host: String },
    /// Not a valid domain name; retrying cannot help.
    #[error("{name:?} is not a valid domain name: {reason}")]
    InvalidName { name: String, reason: String },
    /// Timeout, SERVFAIL, REFUSED, or the network: try again later.
    #[error("temporary DNS failure for {name}: {reason}")]
    Temporary { name: String, reason: String },
}

impl DnsError {
    /// True when retrying cannot change the answer (the job should bounce).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, DnsError::Temporary { .. })
    }
}

/// DNS lookups for mail delivery. Adapters implement the two raw lookups;
/// [`MxResolver::resolve`] applies the RFC 5321/7505 policy on top of them.
#[async_trait]
pub trait MxResolver: Send + Sync {
    /// The MX records of `domain`: `Ok(None)` when the domain exists but has no MX
    /// records (NODATA); NXDOMAIN is [`DnsError::NoSuchDomain`].
    async fn lookup_mx(&self, domain: &str) -> Result<Option<Vec<MxRecord>>, DnsError>;

    /// The addresses of `host`, IPv4 first; an IP literal is returned as is.
    /// No A/AAAA records is [`DnsError::NoAddresses`].
    async fn resolve_addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError>;

    /// The mail exchangers of `domain` in delivery order (see the module doc).
    async fn resolve(&self, domain: &str) -> Result<Vec<MxHost>, DnsError> {
        let domain = normalize_name(domain)?;
        match self.lookup_mx(&domain).await? {
            Some(records) => order_mx(&domain, records, &mut rand::rng()),
            None => implicit_mx(&domain, self.resolve_addresses(&domain).await),
        }
    }
}

/// Where to connect for `domain`: its configured route alone, else its best
/// [`MAX_MX_HOSTS`] MX hosts in delivery order, each on port 25. A routed domain
/// never touches DNS here (its host may still be resolved by [`addresses`]).
pub async fn destinations(
    routes: &RouteTable,
    resolver: &dyn MxResolver,
    domain: &str,
) -> Result<Vec<Destination>, DnsError> {
    if let Some(route) = routes.lookup(domain) {
        return Ok(vec![route]);
    }
    let hosts = resolver.resolve(domain).await?;
    Ok(hosts
        .into_iter()
        .take(MAX_MX_HOSTS)
        .map(|mx| Destination {
            host: mx.host,
            port: SMTP_PORT,
        })
        .collect())
}

/// Lower case, no surrounding spaces, no trailing root dot; rejects what can never
/// be a domain (empty, empty labels, spaces, `@`). IDNA is the adapter's job.
pub fn normalize_name(name: &str) -> Result<String, DnsError> {
    let normalized = name.trim().trim_end_matches('.').to_lowercase();
    let invalid = |reason: &str| DnsError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if normalized.is_empty() {
        return Err(invalid("empty"));
    }
    if normalized.len() > 253 {
        return Err(invalid("longer than 253 characters"));
    }
    if normalized.split('.').any(str::is_empty) {
        return Err(invalid("empty label"));
    }
    if normalized.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err(invalid("contains a space or `@`"));
    }
    Ok(normalized)
}

/// RFC 7505 and RFC 5321 §5.1 ordering of one MX answer: a lone null MX is
/// [`DnsError::NullMx`] (a null MX beside real ones is ignored as the broken
/// configuration it is); the rest sorted by preference, ties shuffled with `rng`.
pub fn order_mx(
    domain: &str,
    records: Vec<MxRecord>,
    rng: &mut impl rand::Rng,
) -> Result<Vec<MxHost>, DnsError> {
    let had_records = !records.is_empty();
    let mut hosts: Vec<MxHost> = Vec::with_capacity(records.len());
    for record in records {
        if record.exchange.is_empty() {
            continue;
        }
        // The same host listed twice keeps its best preference.
        match hosts.iter_mut().find(|h| h.host == record.exchange) {
            Some(known) => known.preference = known.preference.min(record.preference),
            None => hosts.push(MxHost {
                host: record.exchange,
                preference: record.preference,
            }),
        }
    }
    if hosts.is_empty() {
        return Err(if had_records {
            DnsError::NullMx {
                domain: domain.to_owned(),
            }
        } else {
            // An answer with no MX records at all is NODATA, which the adapter
            // reports as `None`; treat a stray empty answer the same way.
            DnsError::NoMailHost {
                domain: domain.to_owned(),
            }
        });
    }
    hosts.shuffle(rng);
    // Stable sort: the shuffle decides the order within one preference.
    hosts.sort_by_key(|h| h.preference);
    Ok(hosts)
}

/// RFC 5321 §5.1: without MX records the domain itself is the mail host, if it
/// has an address. `addresses` is the domain's own address lookup.
fn implicit_mx(
    domain: &str,
    addresses: Result<Vec<IpAddr>, DnsError>,
) -> Result<Vec<MxHost>, DnsError> {
    match addresses {
        Ok(addresses) if !addresses.is_empty() => Ok(vec![MxHost {
            host: domain.to_owned(),
            preference: 0,
        }]),
        Ok(_) | Err(DnsError::NoAddresses { .. }) => Err(DnsError::NoMailHost {
            domain: domain.to_owned(),
        }),
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests;
