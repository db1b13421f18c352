//! [`DomainDns`] for the two resolvers of [`crate::dns`]: the real
//! [`HickoryResolver`] (its `[delivery.dns]` settings and cache) and the
//! in-memory [`FakeResolver`]. Both share the MX and address lookups of
//! [`MxResolver`]; TXT and PTR are their own additions.

use std::net::IpAddr;

use async_trait::async_trait;

use super::DomainDns;
use crate::dns::{DnsError, FakeResolver, HickoryResolver, MxResolver};

#[async_trait]
impl DomainDns for HickoryResolver {
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        self.lookup_txt(name).await
    }

    async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        addresses(self, name).await
    }

    async fn mx_hosts(&self, name: &str) -> Result<Vec<String>, DnsError> {
        mx_hosts(self, name).await
    }

    async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        self.lookup_ptr(ip).await
    }
}

#[async_trait]
impl DomainDns for FakeResolver {
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        self.txt_records(name)
    }

    async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        addresses(self, name).await
    }

    async fn mx_hosts(&self, name: &str) -> Result<Vec<String>, DnsError> {
        mx_hosts(self, name).await
    }

    async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        self.ptr_names(ip)
    }
}

/// A/AAAA records; none (or no such name) is an empty list.
async fn addresses(resolver: &dyn MxResolver, name: &str) -> Result<Vec<IpAddr>, DnsError> {
    match resolver.resolve_addresses(name).await {
        Ok(addresses) => Ok(addresses),
        Err(DnsError::NoAddresses { .. } | DnsError::NoSuchDomain { .. }) => Ok(Vec::new()),
        Err(other) => Err(other),
    }
}

/// MX hosts by preference; no MX, no such name or a null MX is an empty list.
async fn mx_hosts(resolver: &dyn MxResolver, name: &str) -> Result<Vec<String>, DnsError> {
    match resolver.lookup_mx(name).await {
        Ok(Some(mut records)) => {
            records.sort_by_key(|r| r.preference);
            Ok(records
                .into_iter()
                .filter(|r| !r.exchange.is_empty())
                .map(|r| r.exchange)
                .collect())
        }
        Ok(None) | Err(DnsError::NoSuchDomain { .. }) => Ok(Vec::new()),
        Err(other) => Err(other),
    }
}
