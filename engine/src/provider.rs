//! Providers: destinations grouped by MX host (google, outlook, yahoo, …) so that
//! each source IP shapes its traffic per mailbox provider, as production MTAs do.
//!
//! Built once per node from `[[delivery.providers]]` merged onto the built-ins
//! ([`penguin_config::resolve_providers`]) and asked by the IP actors for the MX
//! host of every destination. Guarantees: [`ProviderTable::classify`] always
//! answers (the `default` provider takes every host no pattern matches), never
//! blocks, and is case-insensitive and indifferent to a trailing dot. An exact
//! pattern beats a `*.` pattern; among `*.` patterns the longest suffix wins.

use std::collections::HashMap;

use penguin_config::{
    DEFAULT_PROVIDER, DeliveryConfig, ProviderLimits, ProviderSpec, builtin_providers,
    normalize_pattern, resolve_providers,
};

/// A mailbox provider and the limits one source IP keeps towards it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Lower-case, from a small configured set: safe as a metric label.
    pub name: String,
    pub limits: ProviderLimits,
}

/// MX host patterns → providers, immutable once built.
#[derive(Debug, Clone)]
pub struct ProviderTable {
    providers: Vec<Provider>,
    /// Exact host → index into `providers`.
    exact: HashMap<String, usize>,
    /// `*.suffix` patterns, keyed by the suffix without `*.`.
    suffixes: HashMap<String, usize>,
    default: usize,
}

impl ProviderTable {
    /// Builds the table. A pattern listed twice keeps its first provider (config
    /// validation rejects that anyway); without a `default` spec the built-in
    /// `default` is added.
    pub fn new(specs: &[ProviderSpec]) -> Self {
        let mut table = ProviderTable {
            providers: Vec::with_capacity(specs.len() + 1),
            exact: HashMap::new(),
            suffixes: HashMap::new(),
            default: 0,
        };
        let mut default = None;
        for spec in specs {
            let index = table.providers.len();
            table.providers.push(Provider {
                name: spec.name.clone(),
                limits: spec.limits,
            });
            if spec.name == DEFAULT_PROVIDER {
                default.get_or_insert(index);
                continue;
            }
            for pattern in &spec.mx_patterns {
                let pattern = normalize_pattern(pattern);
                match pattern.strip_prefix("*.") {
                    Some(suffix) => table.suffixes.entry(suffix.to_owned()),
                    None => table.exact.entry(pattern),
                }
                .or_insert(index);
            }
        }
        table.default = default.unwrap_or_else(|| {
            let builtin = builtin_providers()
                .into_iter()
                .find(|s| s.name == DEFAULT_PROVIDER)
                .expect("the built-ins include `default`");
            table.providers.push(Provider {
                name: builtin.name,
                limits: builtin.limits,
            });
            table.providers.len() - 1
        });
        table
    }

    /// The built-ins with the config's `[[delivery.providers]]` applied.
    pub fn from_config(delivery: &DeliveryConfig) -> Self {
        Self::new(&resolve_providers(&delivery.providers))
    }

    /// The provider `mx_host` belongs to; `default` when no pattern matches.
    pub fn classify(&self, mx_host: &str) -> &Provider {
        let host = normalize_pattern(mx_host);
        if let Some(&index) = self.exact.get(&host) {
            return &self.providers[index];
        }
        // Every proper suffix after a dot, longest first: the first hit is the
        // most specific `*.` pattern.
        let mut rest = host.as_str();
        while let Some((_, suffix)) = rest.split_once('.') {
            if let Some(&index) = self.suffixes.get(suffix) {
                return &self.providers[index];
            }
            rest = suffix;
        }
        self.default_provider()
    }

    /// The provider with this name, if configured.
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The fallback provider.
    pub fn default_provider(&self) -> &Provider {
        &self.providers[self.default]
    }

    /// Every provider (the bounded label set for metrics).
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }
}

impl Default for ProviderTable {
    /// The built-in providers only.
    fn default() -> Self {
        Self::new(&builtin_providers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use penguin_config::ProviderConfig;

    fn name_of<'a>(table: &'a ProviderTable, host: &str) -> &'a str {
        &table.classify(host).name
    }

    #[test]
    fn builtin_hosts_of_the_big_providers() {
        let table = ProviderTable::default();
        let cases = [
            ("aspmx.l.google.com", "google"),
            ("alt1.aspmx.l.google.com", "google"),
            ("gmail-smtp-in.l.google.com", "google"),
            ("aspmx2.googlemail.com", "google"),
            ("hotmail-com.olc.protection.outlook.com", "outlook"),
            ("eur.olc.protection.outlook.com", "outlook"),
            ("contoso-com.mail.protection.outlook.com", "office365"),
            ("contoso-com.o-v1.mx.microsoft", "office365"),
            ("mta5.am0.yahoodns.net", "yahoo"),
            ("mx-aol.mail.gm0.yahoodns.net", "yahoo"),
            ("mx01.mail.icloud.com", "icloud"),
            ("mx.example.org", "default"),
        ];
        for (host, provider) in cases {
            assert_eq!(name_of(&table, host), provider, "{host}");
        }
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter() {
        let table = ProviderTable::default();
        assert_eq!(name_of(&table, "ASPMX.L.Google.COM."), "google");
        assert_eq!(name_of(&table, " mta6.am0.YAHOODNS.net. "), "yahoo");
    }

    #[test]
    fn wildcard_needs_a_label_and_a_dot_boundary() {
        let table = ProviderTable::default();
        assert_eq!(name_of(&table, "google.com"), "default");
        assert_eq!(name_of(&table, "evilgoogle.com"), "default");
        assert_eq!(name_of(&table, "mx.google.com.evil.test"), "default");
        assert_eq!(name_of(&table, ""), "default");
        assert_eq!(name_of(&table, "."), "default");
    }

    #[test]
    fn exact_beats_wildcard_and_longest_suffix_wins() {
        let spec = |name: &str, patterns: &[&str]| ProviderSpec {
            name: name.to_owned(),
            mx_patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
            limits: ProviderTable::default().default_provider().limits,
        };
        let table = ProviderTable::new(&[
            spec("broad", &["*.example.net"]),
            spec("narrow", &["*.mx.example.net"]),
            spec("pinned", &["a.mx.example.net"]),
        ]);
        assert_eq!(name_of(&table, "b.example.net"), "broad");
        assert_eq!(name_of(&table, "b.mx.example.net"), "narrow");
        assert_eq!(name_of(&table, "a.mx.example.net"), "pinned");
        // No `default` spec given: the built-in one is added.
        assert_eq!(name_of(&table, "other.test"), "default");
        assert_eq!(table.providers().len(), 4);
    }

    #[test]
    fn config_overrides_limits_and_adds_providers() {
        let delivery = DeliveryConfig {
            providers: vec![
                ProviderConfig {
                    name: "google".to_owned(),
                    mx_patterns: None,
                    max_connections: Some(2),
                    max_messages_per_connection: None,
                    max_messages_per_hour: None,
                },
                ProviderConfig {
                    name: "corp".to_owned(),
                    mx_patterns: Some(vec!["*.Mail.Corp.Test".to_owned()]),
                    max_connections: None,
                    max_messages_per_connection: Some(7),
                    max_messages_per_hour: Some(0),
                },
            ],
            ..DeliveryConfig::default()
        };
        let table = ProviderTable::from_config(&delivery);
        let google = table.classify("aspmx.l.google.com");
        assert_eq!(google.limits.max_connections, 2);
        assert_eq!(google.limits.max_messages_per_connection, 50);
        let corp = table.classify("in1.mail.corp.test");
        assert_eq!(corp.name, "corp");
        assert_eq!(corp.limits.max_messages_per_connection, 7);
        assert_eq!(corp.limits.max_messages_per_hour, None);
        assert_eq!(
            corp.limits.max_connections,
            table.default_provider().limits.max_connections
        );
        assert_eq!(table.get("corp"), Some(corp));
        assert_eq!(table.default_provider().name, "default");
    }
}
