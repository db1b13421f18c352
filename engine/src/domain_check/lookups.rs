//! [`Lookups`]: the DNS lookups of one verification, counted against a cap and
//! remembered, over any [`DomainDns`].
//!
//! Guarantees: at most `cap` queries reach the [`DomainDns`] (further lookups
//! fail with [`LookupError::Cap`] without asking); a name asked twice is asked
//! once (answers and failures are both remembered); "no such records" in any
//! form (NXDOMAIN, NODATA, no address, null MX) is an empty answer.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{DomainDns, TEMPORARY_FAILURE};
use crate::dns::DnsError;

/// Why a lookup gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// Timeout, SERVFAIL, the network: the answer may come later.
    Temporary(String),
    /// The name can never be looked up (empty label, too long, …).
    Invalid(String),
    /// The verification used its whole lookup cap.
    Cap(usize),
}

impl LookupError {
    /// The `found` text of a check that stopped on this error.
    pub(crate) fn found(&self) -> String {
        match self {
            LookupError::Temporary(reason) => format!("{TEMPORARY_FAILURE}: {reason}"),
            LookupError::Invalid(reason) => format!("invalid name: {reason}"),
            LookupError::Cap(cap) => {
                format!(
                    "not checked to the end: this verification reached its cap of {cap} DNS lookups"
                )
            }
        }
    }
}

type Memo<K, V> = Mutex<HashMap<K, Result<V, LookupError>>>;

/// Counted, remembered lookups (see the module doc).
pub(crate) struct Lookups<'d> {
    dns: &'d dyn DomainDns,
    cap: usize,
    used: AtomicUsize,
    txt: Memo<String, Vec<String>>,
    addresses: Memo<String, Vec<IpAddr>>,
    mx: Memo<String, Vec<String>>,
    ptr: Memo<IpAddr, Vec<String>>,
}

impl<'d> Lookups<'d> {
    pub(crate) fn new(dns: &'d dyn DomainDns, cap: usize) -> Self {
        Self {
            dns,
            cap,
            used: AtomicUsize::new(0),
            txt: Memo::default(),
            addresses: Memo::default(),
            mx: Memo::default(),
            ptr: Memo::default(),
        }
    }

    pub(crate) async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let key = key(name);
        self.remembered(&self.txt, key.clone(), || self.dns.txt(&key))
            .await
    }

    pub(crate) async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let key = key(name);
        self.remembered(&self.addresses, key.clone(), || self.dns.addresses(&key))
            .await
    }

    pub(crate) async fn mx_hosts(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let key = key(name);
        self.remembered(&self.mx, key.clone(), || self.dns.mx_hosts(&key))
            .await
    }

    pub(crate) async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, LookupError> {
        self.remembered(&self.ptr, ip, || self.dns.ptr(ip)).await
    }

    async fn remembered<K, V, F, Fut>(
        &self,
        memo: &Memo<K, V>,
        key: K,
        ask: F,
    ) -> Result<V, LookupError>
    where
        K: Eq + Hash,
        V: Clone + Default,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, DnsError>>,
    {
        if let Some(known) = memo.lock().expect("lookup memo lock").get(&key) {
            return known.clone();
        }
        if self.used.fetch_add(1, Ordering::Relaxed) >= self.cap {
            return Err(LookupError::Cap(self.cap));
        }
        let answer = match ask().await {
            Ok(answer) => Ok(answer),
            Err(err) => no_records(err),
        };
        memo.lock()
            .expect("lookup memo lock")
            .insert(key, answer.clone());
        answer
    }
}

/// Every form of "no such records" is an empty answer; the rest is an error.
fn no_records<V: Default>(err: DnsError) -> Result<V, LookupError> {
    match err {
        DnsError::NoSuchDomain { .. }
        | DnsError::NoAddresses { .. }
        | DnsError::NoMailHost { .. }
        | DnsError::NullMx { .. } => Ok(V::default()),
        DnsError::InvalidName { .. } => Err(LookupError::Invalid(err.to_string())),
        DnsError::Temporary { name, reason } => {
            Err(LookupError::Temporary(format!("{name}: {reason}")))
        }
    }
}

fn key(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}
