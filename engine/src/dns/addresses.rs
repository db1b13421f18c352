//! Which addresses a delivery may connect to for one destination: resolved by
//! the node's [`MxResolver`] (hickory under `[delivery.dns]`, never the OS
//! resolver), then vetted by [`super::routable`].
//!
//! Called by the delivery workers for each destination of [`super::destinations`]
//! before any connection is opened. Guarantees:
//! - an address that is not globally routable is never returned for a host a
//!   recipient's DNS chose (an MX target, or the domain itself as implicit MX):
//!   it is listed in [`Vetted::refused`] instead, so the job can fail naming it;
//! - a configured `[[delivery.routes]]` is the operator's choice: a routed
//!   destination, and any host some route names, keeps every address;
//! - at most [`MAX_ADDRESSES_PER_HOST`] addresses per host, in resolver order,
//!   duplicates removed (a host publishing hundreds of records costs no more).

use std::net::IpAddr;

use super::routable::{NonGlobal, non_global};
use super::{DnsError, MxResolver};
use crate::route::{Destination, RouteTable};

/// Most MX hosts tried in one attempt (the best ones by preference).
pub const MAX_MX_HOSTS: usize = 5;

/// Most addresses of one host tried in one attempt.
pub const MAX_ADDRESSES_PER_HOST: usize = 4;

/// One address refused for not being globally routable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The host (MX target) that resolved to it.
    pub host: String,
    pub address: IpAddr,
    pub kind: NonGlobal,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}) of {}", self.address, self.kind, self.host)
    }
}

/// The addresses of one destination, split by policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vetted {
    /// May be connected to, in order.
    pub allowed: Vec<IpAddr>,
    /// Resolved but refused: never connected to.
    pub refused: Vec<Refused>,
}

/// Resolves `dest.host` (an IP literal is taken as is) and vets the addresses.
/// A host some route names (every routed destination's is) is exempt.
pub async fn vetted_addresses(
    resolver: &dyn MxResolver,
    routes: &RouteTable,
    dest: &Destination,
) -> Result<Vetted, DnsError> {
    let resolved = resolver.resolve_addresses(&dest.host).await?;
    let exempt = routes.names_host(&dest.host);
    Ok(vet(&dest.host, resolved, exempt))
}

/// The pure policy of [`vetted_addresses`].
pub fn vet(host: &str, resolved: Vec<IpAddr>, exempt: bool) -> Vetted {
    let mut vetted = Vetted::default();
    for address in resolved {
        if vetted.allowed.contains(&address) || vetted.refused.iter().any(|r| r.address == address)
        {
            continue;
        }
        match non_global(address).filter(|_| !exempt) {
            Some(kind) => vetted.refused.push(Refused {
                host: host.to_owned(),
                address,
                kind,
            }),
            None if vetted.allowed.len() < MAX_ADDRESSES_PER_HOST => vetted.allowed.push(address),
            None => {}
        }
    }
    vetted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::FakeResolver;
    use penguin_config::Route;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn private_addresses_are_refused_and_public_ones_kept() {
        let vetted = vet(
            "mx.mixed.test",
            ips(&["10.0.0.1", "8.8.8.8", "::1", "8.8.8.8", "2001:4860::1"]),
            false,
        );
        assert_eq!(vetted.allowed, ips(&["8.8.8.8", "2001:4860::1"]));
        let refused: Vec<String> = vetted.refused.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            refused,
            [
                "10.0.0.1 (private) of mx.mixed.test",
                "::1 (loopback) of mx.mixed.test"
            ]
        );
    }

    #[test]
    fn an_exempt_host_keeps_every_address_and_hosts_are_capped() {
        let vetted = vet("relay.internal", ips(&["127.0.0.1", "10.1.1.1"]), true);
        assert_eq!(vetted.allowed, ips(&["127.0.0.1", "10.1.1.1"]));
        assert!(vetted.refused.is_empty());
        let many: Vec<String> = (1..=20).map(|n| format!("8.8.8.{n}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            vet("big.test", ips(&many), false).allowed.len(),
            MAX_ADDRESSES_PER_HOST
        );
    }

    #[tokio::test]
    async fn a_host_named_by_a_route_is_exempt_even_as_an_mx() {
        let resolver = FakeResolver::new()
            .with_addresses("relay.internal", &ips(&["10.0.0.7"]))
            .with_addresses("mx.evil.test", &ips(&["10.0.0.7"]));
        let routes = RouteTable::new(&[Route {
            domain: "corp.test".into(),
            host: "relay.internal".into(),
            port: 25,
        }]);
        let dest = |host: &str| Destination {
            host: host.into(),
            port: 25,
        };
        let relay = vetted_addresses(&resolver, &routes, &dest("relay.internal"))
            .await
            .unwrap();
        assert_eq!(relay.allowed, ips(&["10.0.0.7"]));
        let evil = vetted_addresses(&resolver, &routes, &dest("mx.evil.test"))
            .await
            .unwrap();
        assert!(evil.allowed.is_empty());
        assert_eq!(evil.refused[0].kind, NonGlobal::Private);
        let literal = vetted_addresses(&resolver, &routes, &dest("169.254.169.254"))
            .await
            .unwrap();
        assert_eq!(literal.refused[0].kind, NonGlobal::CloudMetadata);
    }
}
