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
//! - `site:<host>,<host>,…` otherwise: the MX hosts the delivery uses (the best
//!   [`crate::dns::MAX_MX_HOSTS`]), lower-cased, without trailing dots, sorted,
//!   duplicates removed, joined by `,`.
//!
//! Keys of sites are unbounded in number: never use them as metric labels (the
//! provider name is the label).

use crate::provider::Provider;
use crate::route::Destination;

/// Where the key of a named provider ends and a site's begins.
pub const SITE_PREFIX: &str = "site:";
/// The key prefix of a unit chosen by a route.
pub const ROUTE_PREFIX: &str = "route:";

/// One unit of shaping: its key, and the provider whose limits apply to it (the
/// `default` provider's limits apply to each site on its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapingUnit {
    /// See the module doc for the format.
    pub key: String,
    pub provider: Provider,
}

impl ShapingUnit {
    /// The unit of a destination: `provider` classifies its first host,
    /// `default_name` is the fallback provider's name, `route` is the route host
    /// when a route applied, `hosts` the destinations in delivery order.
    pub fn of(
        provider: &Provider,
        default_name: &str,
        route: Option<&str>,
        hosts: &[Destination],
    ) -> Self {
        let key = if provider.name != default_name {
            provider.name.clone()
        } else if let Some(host) = route {
            format!("{ROUTE_PREFIX}{}", normalize(host))
        } else {
            site_key(hosts.iter().map(|d| d.host.as_str()))
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
/// by `,`.
pub fn site_key<'a>(hosts: impl IntoIterator<Item = &'a str>) -> String {
    let mut names: Vec<String> = hosts.into_iter().map(normalize).collect();
    names.sort();
    names.dedup();
    format!("{SITE_PREFIX}{}", names.join(","))
}

fn normalize(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderTable;

    fn dests(hosts: &[&str]) -> Vec<Destination> {
        hosts
            .iter()
            .map(|h| Destination {
                host: (*h).to_owned(),
                port: 25,
            })
            .collect()
    }

    fn unit(table: &ProviderTable, route: Option<&str>, hosts: &[&str]) -> String {
        let dests = dests(hosts);
        let first = route.unwrap_or(hosts[0]);
        let provider = table.classify(first);
        ShapingUnit::of(provider, &table.default_provider().name, route, &dests).key
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
