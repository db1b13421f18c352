//! [`HickoryResolver`]: the real [`MxResolver`], on hickory-resolver (tokio).
//!
//! Built once per node from `[delivery.dns]` and shared: the cache lives in it.
//! Its TXT and PTR lookups ([`HickoryResolver::lookup_txt`],
//! [`HickoryResolver::lookup_ptr`]) serve `crate::domain_check` with the same
//! settings, cache and error mapping.
//!
//! Caching is hickory's own response cache, configured here:
//! - bounded: at most `cache_size` answers (one per name and record type), least
//!   recently used evicted first;
//! - positive answers are kept until the smallest TTL of their records, never
//!   longer (hickory caps TTLs at one day);
//! - negative answers (NXDOMAIN, NODATA) for the zone's SOA negative TTL, capped at
//!   `negative_ttl_secs`; a negative answer without an SOA is not cached;
//! - errors (timeouts, SERVFAIL, REFUSED) are never cached: the next attempt asks
//!   again.
//!
//! Names are queried fully qualified (a trailing dot), so resolv.conf `search`
//! domains never turn a missing domain into somebody else's. Unicode domains are
//! queried in their IDNA (punycode) form.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};
use penguin_config::DnsConfig;
use thiserror::Error;

use super::{DnsError, MxRecord, MxResolver, normalize_name};

/// The resolver could not be built (e.g. an unreadable resolv.conf).
#[derive(Debug, Error)]
#[error("cannot set up the DNS resolver: {0}")]
pub struct DnsSetupError(String);

/// MX and address lookups through hickory-resolver, with its bounded TTL cache.
#[derive(Clone)]
pub struct HickoryResolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryResolver").finish_non_exhaustive()
    }
}

impl HickoryResolver {
    /// Builds the resolver: the configured nameservers (UDP, TCP on truncation or
    /// UDP failure), or the system's resolv.conf when none are configured.
    pub fn from_config(config: &DnsConfig) -> Result<Self, DnsSetupError> {
        let nameservers = config.nameserver_addrs();
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsSetupError(e.to_string()))?
        } else {
            let servers = nameservers
                .iter()
                .map(|addr| {
                    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                    for connection in &mut server.connections {
                        connection.port = addr.port();
                    }
                    server
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let options = builder.options_mut();
        options.timeout = Duration::from_millis(config.timeout_ms);
        options.cache_size = config.cache_size;
        options.negative_max_ttl = Some(Duration::from_secs(config.negative_ttl_secs));
        // Source IPs are mostly IPv4: A records first, AAAA after, both asked at once.
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.try_tcp_on_error = true;
        let inner = builder.build().map_err(|e| DnsSetupError(e.to_string()))?;
        Ok(Self { inner })
    }
}

#[async_trait]
impl MxResolver for HickoryResolver {
    async fn lookup_mx(&self, domain: &str) -> Result<Option<Vec<MxRecord>>, DnsError> {
        let (normalized, name) = fqdn(domain)?;
        let lookup = match self.inner.mx_lookup(name).await {
            Ok(lookup) => lookup,
            Err(err) => return no_records(&normalized, err).map(|()| None),
        };
        let records: Vec<MxRecord> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some(MxRecord {
                    preference: mx.preference,
                    exchange: mx
                        .exchange
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                }),
                _ => None,
            })
            .collect();
        // Only CNAMEs and no MX at the end of the chain: the same as NODATA.
        Ok((!records.is_empty()).then_some(records))
    }

    async fn resolve_addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let literal = host.trim().trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let (normalized, name) = fqdn(host)?;
        let addresses: Vec<IpAddr> = match self.inner.lookup_ip(name).await {
            Ok(lookup) => lookup.iter().collect(),
            Err(err) => {
                no_records(&normalized, err)?;
                Vec::new()
            }
        };
        if addresses.is_empty() {
            return Err(DnsError::NoAddresses { host: normalized });
        }
        Ok(addresses)
    }
}

impl HickoryResolver {
    /// The TXT records at `name`, each record's character-strings joined without
    /// a separator (RFC 7208 §3.3, RFC 6376 §3.6.2.2); bytes that are not UTF-8
    /// are replaced. NODATA is an empty list; NXDOMAIN is
    /// [`DnsError::NoSuchDomain`]; the rest maps as for MX lookups.
    pub async fn lookup_txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let (normalized, fqdn_name) = fqdn(name)?;
        let lookup = match self.inner.txt_lookup(fqdn_name).await {
            Ok(lookup) => lookup,
            Err(err) => return no_records(&normalized, err).map(|()| Vec::new()),
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::TXT(txt) => {
                    let joined: Vec<u8> = txt
                        .txt_data
                        .iter()
                        .flat_map(|s| s.iter())
                        .copied()
                        .collect();
                    Some(String::from_utf8_lossy(&joined).into_owned())
                }
                _ => None,
            })
            .collect())
    }

    /// The PTR names of `ip` (lower case, no trailing dot), from its
    /// `in-addr.arpa` / `ip6.arpa` name. NODATA and NXDOMAIN are an empty list:
    /// an address without reverse DNS is common and not an error here.
    pub async fn lookup_ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        let mut reverse = Name::from(ip);
        reverse.set_fqdn(true);
        let label = reverse.to_ascii();
        let lookup = match self.inner.reverse_lookup(reverse).await {
            Ok(lookup) => lookup,
            Err(err) => {
                return match no_records(&label, err) {
                    Ok(()) | Err(DnsError::NoSuchDomain { .. }) => Ok(Vec::new()),
                    Err(other) => Err(other),
                };
            }
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::PTR(ptr) => {
                    Some(ptr.0.to_ascii().trim_end_matches('.').to_ascii_lowercase())
                }
                _ => None,
            })
            .collect())
    }
}

/// The normalized name and its fully qualified, IDNA-encoded DNS form.
fn fqdn(name: &str) -> Result<(String, Name), DnsError> {
    let normalized = normalize_name(name)?;
    let mut parsed = Name::from_utf8(&normalized).map_err(|e| DnsError::InvalidName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    parsed.set_fqdn(true);
    Ok((normalized, parsed))
}

/// Maps a failed lookup: `Ok(())` for NODATA (the name exists, no such records),
/// NXDOMAIN → [`DnsError::NoSuchDomain`], anything else → [`DnsError::Temporary`].
fn no_records(name: &str, err: NetError) -> Result<(), DnsError> {
    match &err {
        NetError::Dns(HickoryDnsError::NoRecordsFound(no_records)) => {
            match no_records.response_code {
                ResponseCode::NoError => Ok(()),
                ResponseCode::NXDomain => Err(DnsError::NoSuchDomain {
                    name: name.to_owned(),
                }),
                _ => Err(temporary(name, &err)),
            }
        }
        _ => Err(temporary(name, &err)),
    }
}

fn temporary(name: &str, err: &NetError) -> DnsError {
    DnsError::Temporary {
        name: name.to_owned(),
        reason: err.to_string(),
    }
}
