//! [`FakeResolver`]: an in-memory [`MxResolver`] for unit and actor tests.
//!
//! It holds a tiny zone (MX, address, TXT and PTR records, missing names, failing
//! names) and counts lookups, so a test can assert that a routed domain never
//! reached DNS, or how many lookups a domain check cost.
//! The RFC policy in [`MxResolver::resolve`] runs on top of it unchanged.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use super::{DnsError, MxRecord, MxResolver};

/// Names are stored normalized; everything not listed exists with no records.
#[derive(Debug, Default)]
pub struct FakeResolver {
    zone: Mutex<Zone>,
    lookups: AtomicUsize,
}

#[derive(Debug, Default)]
struct Zone {
    mx: HashMap<String, Vec<MxRecord>>,
    addresses: HashMap<String, Vec<IpAddr>>,
    txt: HashMap<String, Vec<String>>,
    ptr: HashMap<IpAddr, Vec<String>>,
    missing: HashSet<String>,
    failing: HashMap<String, String>,
}

impl FakeResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds MX records `(preference, exchange)`; `"."` as exchange is a null MX.
    pub fn with_mx(self, domain: &str, records: &[(u16, &str)]) -> Self {
        let records = records
            .iter()
            .map(|(preference, exchange)| MxRecord {
                preference: *preference,
                exchange: key(exchange),
            })
            .collect::<Vec<_>>();
        self.zone()
            .mx
            .entry(key(domain))
            .or_default()
            .extend(records);
        self
    }

    /// Gives `host` A/AAAA records.
    pub fn with_addresses(self, host: &str, addresses: &[IpAddr]) -> Self {
        self.zone()
            .addresses
            .entry(key(host))
            .or_default()
            .extend_from_slice(addresses);
        self
    }

    /// Adds TXT records at `name`, one record per element.
    pub fn with_txt(self, name: &str, records: &[&str]) -> Self {
        self.zone()
            .txt
            .entry(key(name))
            .or_default()
            .extend(records.iter().map(|r| (*r).to_owned()));
        self
    }

    /// Adds one TXT record at `name` made of several character-strings (as a
    /// record longer than 255 bytes must be); it is served joined, without a
    /// separator, as the real adapter joins them.
    pub fn with_txt_strings(self, name: &str, strings: &[&str]) -> Self {
        self.zone()
            .txt
            .entry(key(name))
            .or_default()
            .push(strings.concat());
        self
    }

    /// Gives `ip` PTR records (reverse DNS names).
    pub fn with_ptr(self, ip: IpAddr, names: &[&str]) -> Self {
        self.zone()
            .ptr
            .entry(ip)
            .or_default()
            .extend(names.iter().map(|n| key(n)));
        self
    }

    /// The TXT records at `name` (counted as a lookup); NXDOMAIN and failures as
    /// configured, NODATA as an empty list.
    pub fn txt_records(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let (mut zone, name) = self.check(name)?;
        Ok(zone.txt.remove(&name).unwrap_or_default())
    }

    /// The PTR names of `ip` (counted as a lookup); a failure configured for the
    /// address's text form applies.
    pub fn ptr_names(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let zone = self.zone();
        if let Some(reason) = zone.failing.get(&ip.to_string()) {
            return Err(DnsError::Temporary {
                name: ip.to_string(),
                reason: reason.clone(),
            });
        }
        Ok(zone.ptr.get(&ip).cloned().unwrap_or_default())
    }

    /// Makes `name` answer NXDOMAIN.
    pub fn with_nxdomain(self, name: &str) -> Self {
        self.zone().missing.insert(key(name));
        self
    }

    /// Makes every lookup of `name` fail temporarily (a timeout, SERVFAIL).
    pub fn with_failure(self, name: &str, reason: &str) -> Self {
        self.zone().failing.insert(key(name), reason.to_owned());
        self
    }

    /// Lookups made so far (MX, address, TXT and PTR lookups alike).
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::Relaxed)
    }

    fn zone(&self) -> std::sync::MutexGuard<'_, Zone> {
        self.zone.lock().expect("fake zone lock")
    }

    /// The checks both lookups share: counting, failures, NXDOMAIN.
    fn check(&self, name: &str) -> Result<(Zone, String), DnsError> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let name = key(name);
        let zone = self.zone();
        if let Some(reason) = zone.failing.get(&name) {
            return Err(DnsError::Temporary {
                name,
                reason: reason.clone(),
            });
        }
        if zone.missing.contains(&name) {
            return Err(DnsError::NoSuchDomain { name });
        }
        // Copy out only what this name needs, so no lock is held by the caller.
        let mut subset = Zone::default();
        if let Some(mx) = zone.mx.get(&name) {
            subset.mx.insert(name.clone(), mx.clone());
        }
        if let Some(addresses) = zone.addresses.get(&name) {
            subset.addresses.insert(name.clone(), addresses.clone());
        }
        if let Some(txt) = zone.txt.get(&name) {
            subset.txt.insert(name.clone(), txt.clone());
        }
        Ok((subset, name))
    }
}

#[async_trait]
impl MxResolver for FakeResolver {
    async fn lookup_mx(&self, domain: &str) -> Result<Option<Vec<MxRecord>>, DnsError> {
        let (mut zone, name) = self.check(domain)?;
        Ok(zone.mx.remove(&name))
    }

    async fn resolve_addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.trim().parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let (mut zone, name) = self.check(host)?;
        match zone.addresses.remove(&name) {
            Some(addresses) if !addresses.is_empty() => Ok(addresses),
            _ => Err(DnsError::NoAddresses { host: name }),
        }
    }
}

fn key(name: &str) -> String {
    name.trim().trim_end_matches('.').to_lowercase()
}
