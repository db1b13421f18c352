//! Shaping units: what one source IP shapes its traffic towards.
//!
//! The IP actors ask [`ShapingUnit::of`] for every destination. A named provider
//! (google, outlook, yahoo, icloud, or any `[[delivery.providers]]` entry other
//! than `default`) is one unit, because its MX hosts share one reputation. A
//! destination that falls to the `default` provider is its own unit: its MX site
//! (the set of its MX hosts, as KumoMTA's `site_name`), or the route host when a
//! `[[delivery.routes]]` entry sends it elsewhere. So one small server's
//! greylisting or block list never shapes the IP's mail to every other domain.
//!
//! The key ([`ShapingUnit::key`]) is a plain string, safe to store and compare:
//! - `<provider name>` for a named provider (e.g. `google`);
//! - `route:<host>` when a route applies (host lower-cased, without a trailing dot);
//! - `site:<host>,<host>,…` otherwise: every MX host of the domain (not only
//!   the best [`crate::dns::MAX_MX_HOSTS`] tried, which vary when more share a
//!   preference), lower-cased, without trailing dots, sorted, duplicates
//!   removed, joined by `,`; past [`MAX_SITE_KEY`] bytes the list is cut after
//!   a host and `,+<hosts left out>` appended, so a key stays short and stable.
//!
//! Keys of sites are unbounded in number: never use them as metric labels (the
//! provider name is the label).

use crate::dns::{DnsError, MAX_MX_HOSTS, MxResolver, SMTP_PORT};
use crate::provider::Provider;
use crate::route::{Destination, RouteTable};

/// Where the key of a named provider ends and a site's begins.
pub const SITE_PREFIX: &str = "site:";
/// The key prefix of a unit chosen by a route.
pub const ROUTE_PREFIX: &str = "route:";
/// The longest host list a `site:` key spells out.
pub const MAX_SITE_KEY: usize = 512;

/// Where a domain's mail goes ([`crate::dns::destinations`]), and what its site
/// is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The route's destination, or the best MX hosts on port 25, in order.
    pub dests: Vec<Destination>,
    /// The route's host, when a route applies.
    pub route: Option<String>,
    /// Every MX host of the domain (empty with a route).
    pub mx_hosts: Vec<String>,
}

/// [`crate::dns::destinations`], keeping every MX host for the site key: one
/// MX lookup.
pub async fn resolve(
    routes: &RouteTable,
    resolver: &dyn MxResolver,
    domain: &str,
) -> Result<Resolved, DnsError> {
    if let Some(route) = routes.lookup(domain) {
        return Ok(Resolved {
            route: Some(route.host.clone()),
            dests: vec![route],
            mx_hosts: Vec::new(),
        });
    }
    let hosts = resolver.resolve(domain).await?;
    Ok(Resolved {
        mx_hosts: hosts.iter().map(|mx| mx.host.clone()).collect(),
        dests: hosts
            .into_iter()
            .take(MAX_MX_HOSTS)
            .map(|mx| Destination {
                host: mx.host,
                port: SMTP_PORT,
            })
            .collect(),
        route: None,
    })
}

/// One unit of shaping: its key, and the provider whose limits apply to it (the
/// `default` provider's limits apply to each site on its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapingUnit {
    /// See the module doc for the format.
    pub key: String,
    pub provider: Provider,
}

impl ShapingUnit {
    /// The unit of a resolved destination: `provider` classifies its first
    /// host, `default_name` is the fallback provider's name.
    pub fn of(provider: &Provider, default_name: &str, resolved: &Resolved) -> Self {
        let key = if provider.name != default_name {
            provider.name.clone()
        } else if let Some(host) = &resolved.route {
            format!("{ROUTE_PREFIX}{}", normalize(host))
        } else {
            site_key(resolved.mx_hosts.iter().map(String::as_str))
        };
        Self {
            key,
            provider: provider.clone(),
        }
    }

    /// True for an MX site or a route host (a unit of the `default` provider).
    pub fn is_site(&self) -> bool {
        self.key.starts_with(SITE_PREFIX) || self.key.starts_with(ROUTE_PREFIX)
    }
}

/// `site:` followed by the sorted, de-duplicated, lower-cased host names joined
/// by `,` (cut as the module doc says past [`MAX_SITE_KEY`]).
pub fn site_key<'a>(hosts: impl IntoIterator<Item = &'a str>) -> String {
    let mut names: Vec<String> = hosts.into_iter().map(normalize).collect();
    names.sort();
    names.dedup();
    let mut key = String::from(SITE_PREFIX);
    for (i, name) in names.iter().enumerate() {
        if key.len() + name.len() + 1 > MAX_SITE_KEY {
            key.push_str(&format!(",+{}", names.len() - i));
            break;
        }
        if i > 0 {
            key.push(',');
        }
        key.push_str(name);
    }
    key
}

fn normalize(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderTable;

    fn unit(table: &ProviderTable, route: Option<&str>, hosts: &[&str]) -> String {
        let resolved = Resolved {
            dests: Vec::new(),
            route: route.map(Into::into),
            mx_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        };
        let first = route.unwrap_or(hosts[0]);
        let provider = table.classify(first);
        ShapingUnit::of(provider, &table.default_provider().name, &resolved).key
    }

    #[test]
    fn a_long_host_list_is_cut_the_same_way_every_time() {
        let hosts: Vec<String> = (0..100)
            .map(|i| format!("mx{i:03}.big-host.test"))
            .collect();
        let forward = site_key(hosts.iter().map(String::as_str));
        let backward = site_key(hosts.iter().rev().map(String::as_str));
        assert_eq!(forward, backward);
        assert!(forward.len() <= MAX_SITE_KEY + 8, "{}", forward.len());
        assert!(
            forward.starts_with("site:mx000.big-host.test,mx001."),
            "{forward}"
        );
        let kept = forward.matches(".big-host.test").count();
        assert!(forward.ends_with(&format!(",+{}", 100 - kept)), "{forward}");
    }

    #[tokio::test]
    async fn resolve_keeps_every_mx_host_and_tries_the_best() {
        use crate::dns::FakeResolver;
        let records: Vec<(u16, String)> =
            (0..8).map(|i| (10, format!("mx{i}.wide.test"))).collect();
        let refs: Vec<(u16, &str)> = records.iter().map(|(p, h)| (*p, h.as_str())).collect();
        let resolver = FakeResolver::new().with_mx("wide.test", &refs);
        let routes = RouteTable::default();
        let first = resolve(&routes, &resolver, "wide.test").await.unwrap();
        assert_eq!(first.dests.len(), MAX_MX_HOSTS);
        assert_eq!(first.mx_hosts.len(), 8);
        let again = resolve(&routes, &resolver, "wide.test").await.unwrap();
        let key = |r: &Resolved| site_key(r.mx_hosts.iter().map(String::as_str));
        assert_eq!(
            key(&first),
            key(&again),
            "equal preferences shuffle, the key stays"
        );
    }

    #[test]
    fn named_providers_keep_one_unit() {
        let table = ProviderTable::default();
        assert_eq!(unit(&table, None, &["aspmx.l.google.com"]), "google");
        assert_eq!(
            unit(
                &table,
                None,
                &["alt1.aspmx.l.google.com", "aspmx.l.google.com"]
            ),
            "google"
        );
        assert_eq!(unit(&table, Some("aspmx.l.google.com"), &["x"]), "google");
    }

    #[test]
    fn default_destinations_are_their_mx_site() {
        let table = ProviderTable::default();
        let a = unit(&table, None, &["MX2.Example.org.", "mx1.example.org"]);
        assert_eq!(a, "site:mx1.example.org,mx2.example.org");
        assert_eq!(
            a,
            unit(&table, None, &["mx1.example.org", "mx2.example.org"]),
            "order and case do not matter"
        );
        assert_ne!(a, unit(&table, None, &["mx.other.test"]));
        assert_eq!(
            unit(&table, None, &["mx.a.test", "mx.a.test"]),
            "site:mx.a.test"
        );
        let key = unit(&table, None, &["mx.a.test"]);
        assert!(
            ShapingUnit {
                key,
                provider: table.default_provider().clone()
            }
            .is_site()
        );
    }

    #[test]
    fn a_route_names_its_host() {
        let table = ProviderTable::default();
        assert_eq!(
            unit(&table, Some("Relay.Corp.Test."), &["relay.corp.test"]),
            "route:relay.corp.test"
        );
    }
}
