//! The route table: where an SMTP connection for a recipient domain goes.
//!
//! Built once from `[[delivery.routes]]` ([`penguin_config::Route`]) and asked by the
//! IP actors for every destination domain. Guarantees: an exact domain route
//! (case-insensitive) always wins over the `*` route, and [`RouteTable::resolve`]
//! always answers (it never fails and never blocks).
//!
//! Without a matching route, [`RouteTable::lookup`] answers `None` and the domain
//! goes to its MX hosts ([`crate::dns::destinations`]). Hosts a route names are
//! the operator's: [`RouteTable::names_host`] exempts them from the refusal of
//! non-global addresses ([`crate::dns::addresses`]).

use std::collections::{HashMap, HashSet};
use std::fmt;

use penguin_config::Route;

/// The SMTP server a connection is opened to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Host name or IP address literal.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            // An IPv6 literal needs brackets to be read back unambiguously.
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Domain → destination overrides, immutable once built.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Exact domains, lower-cased.
    exact: HashMap<String, Destination>,
    /// The `*` route, if configured.
    wildcard: Option<Destination>,
    /// Every host a route names, normalized.
    hosts: HashSet<String>,
}

impl RouteTable {
    /// Builds the table. When a domain appears twice, the first entry wins, like
    /// the order an operator reads the config in.
    pub fn new(routes: &[Route]) -> Self {
        let mut table = RouteTable::default();
        for route in routes {
            let destination = Destination {
                host: route.host.clone(),
                port: route.port,
            };
            table.hosts.insert(normalize_host(&route.host));
            if route.domain == "*" {
                table.wildcard.get_or_insert(destination);
            } else {
                table
                    .exact
                    .entry(normalize(&route.domain))
                    .or_insert(destination);
            }
        }
        table
    }

    /// Where to connect for `domain`: its exact route, else the `*` route, else the
    /// domain itself on port 25 (MX resolution comes later; see the module doc).
    pub fn resolve(&self, domain: &str) -> Destination {
        let domain = normalize(domain);
        if let Some(destination) = self.exact.get(&domain) {
            return destination.clone();
        }
        if let Some(destination) = &self.wildcard {
            return destination.clone();
        }
        Destination {
            host: domain,
            port: 25,
        }
    }

    /// The configured route for `domain` (its exact route, else the `*` route), or
    /// `None` when the domain goes to its MX ([`crate::dns::destinations`]).
    pub fn lookup(&self, domain: &str) -> Option<Destination> {
        self.exact
            .get(&normalize(domain))
            .or(self.wildcard.as_ref())
            .cloned()
    }

    /// True when some configured route names `host` (a name or an IP literal,
    /// compared case-insensitively, brackets and a trailing dot ignored).
    pub fn names_host(&self, host: &str) -> bool {
        self.hosts.contains(&normalize_host(host))
    }

    /// True when no route is configured at all.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_none()
    }
}

/// Hosts compare like domains, an IPv6 literal without its brackets.
fn normalize_host(host: &str) -> String {
    normalize(host.trim().trim_start_matches('[').trim_end_matches(']'))
}

/// Domains compare case-insensitively and without a trailing root dot.
fn normalize(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(domain: &str, host: &str, port: u16) -> Route {
        Route {
            domain: domain.to_owned(),
            host: host.to_owned(),
            port,
        }
    }

    fn dest(host: &str, port: u16) -> Destination {
        Destination {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn exact_match_wins_over_wildcard_regardless_of_order() {
        let table = RouteTable::new(&[
            route("*", "127.0.0.1", 2525),
            route("Example.COM", "10.0.0.1", 587),
        ]);
        assert_eq!(table.resolve("example.com"), dest("10.0.0.1", 587));
        assert_eq!(table.resolve("EXAMPLE.com."), dest("10.0.0.1", 587));
        assert_eq!(table.resolve("other.test"), dest("127.0.0.1", 2525));
    }

    #[test]
    fn no_route_falls_back_to_the_domain_on_port_25() {
        let table = RouteTable::new(&[route("example.com", "10.0.0.1", 587)]);
        assert_eq!(table.resolve("Gmail.com"), dest("gmail.com", 25));
        assert!(RouteTable::new(&[]).is_empty());
        assert_eq!(RouteTable::new(&[]).resolve("a.test"), dest("a.test", 25));
    }

    #[test]
    fn first_duplicate_entry_wins() {
        let table = RouteTable::new(&[
            route("a.test", "h1", 1),
            route("A.test", "h2", 2),
            route("*", "w1", 3),
            route("*", "w2", 4),
        ]);
        assert_eq!(table.resolve("a.test"), dest("h1", 1));
        assert_eq!(table.resolve("b.test"), dest("w1", 3));
    }

    #[test]
    fn names_host_knows_every_routed_host() {
        let table = RouteTable::new(&[
            route("a.test", "Relay.Internal.", 25),
            route("*", "::1", 2525),
        ]);
        assert!(table.names_host("relay.internal"));
        assert!(table.names_host("[::1]"));
        assert!(!table.names_host("mx.a.test"));
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(dest("::1", 25).to_string(), "[::1]:25");
        assert_eq!(dest("mx.a.test", 25).to_string(), "mx.a.test:25");
    }
}
