//! `[[delivery.providers]]`: mailbox providers, recognised by their MX host names,
//! and the shaping limits every source IP keeps towards each of them.
//!
//! The built-in table ([`builtin_providers`]) ships values close to what production
//! MTAs ship (KumoMTA's `policy-extras/shaping.toml`, see the per-entry comments).
//! A config entry whose `name` matches a built-in (or `default`) changes only the
//! keys it sets; an entry with a new name adds a provider, needs `mx_patterns`, and
//! takes the limits it leaves out from `default`. [`resolve_providers`] applies the
//! entries; `penguin_engine::provider::ProviderTable` matches MX hosts against them.
//!
//! A pattern is an exact host (`aspmx.l.google.com`) or `*.` followed by a suffix
//! (`*.google.com` matches every host below `google.com`, not `google.com` itself).
//! Matching is case-insensitive and ignores a trailing dot; the longest matching
//! pattern wins, so one pattern may not appear in two providers.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The provider every MX host that matches no pattern belongs to.
pub const DEFAULT_PROVIDER: &str = "default";

/// One `[[delivery.providers]]` entry; every key but `name` is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Lower-case name (`[a-z0-9_-]`), used in logs and metric labels.
    pub name: String,
    /// MX host patterns; replaces the built-in list when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mx_patterns: Option<Vec<String>>,
    /// Concurrent SMTP connections from one source IP to this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Messages over one connection before it is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages_per_connection: Option<usize>,
    /// Messages from one source IP to this provider per hour; 0 = no cap of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages_per_hour: Option<u32>,
}

/// Shaping limits towards one provider, per source IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderLimits {
    pub max_connections: usize,
    pub max_messages_per_connection: usize,
    /// `None`: only the IP's own hourly allowance applies.
    pub max_messages_per_hour: Option<u32>,
}

/// A provider after built-ins and config entries are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    pub name: String,
    /// Lower-case patterns without a trailing dot; empty for `default`.
    pub mx_patterns: Vec<String>,
    pub limits: ProviderLimits,
}

fn spec(name: &str, patterns: &[&str], conns: usize, per_conn: usize, hour: u32) -> ProviderSpec {
    ProviderSpec {
        name: name.to_owned(),
        mx_patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        limits: ProviderLimits {
            max_connections: conns,
            max_messages_per_connection: per_conn,
            max_messages_per_hour: (hour > 0).then_some(hour),
        },
    }
}

/// The built-in providers, `default` last.
///
/// Connections and messages per connection follow KumoMTA's shipped shaping
/// (google/outlook/office365: 5 and 50; yahoo: 20 per connection, by Yahoo's own
/// guidance; apple/icloud: 10 and 5; default: 10 and 100). KumoMTA ships no hourly
/// rates; the hourly caps here are deliberately conservative picks for cold outreach
/// from one warmed IP, and `default` has none (the IP's allowance governs).
pub fn builtin_providers() -> Vec<ProviderSpec> {
    vec![
        spec("google", &["*.google.com", "*.googlemail.com"], 5, 50, 500),
        // Consumer Outlook/Hotmail; Office 365 tenants have their own edge below.
        spec(
            "outlook",
            &[
                "*.olc.protection.outlook.com",
                "*.outlook.com",
                "*.hotmail.com",
            ],
            5,
            50,
            500,
        ),
        spec(
            "office365",
            &["*.mail.protection.outlook.com", "*.mx.microsoft"],
            5,
            50,
            500,
        ),
        // Yahoo's MX also serve AOL and other Yahoo-hosted domains.
        spec("yahoo", &["*.yahoodns.net", "*.yahoo.com"], 10, 20, 300),
        spec("icloud", &["*.icloud.com", "*.me.com"], 10, 5, 300),
        spec(DEFAULT_PROVIDER, &[], 10, 100, 0),
    ]
}

/// Built-ins with the config `entries` applied, in a stable order (built-ins first,
/// `default` last). Call on validated entries; see the module doc for the rules.
pub fn resolve_providers(entries: &[ProviderConfig]) -> Vec<ProviderSpec> {
    let mut specs = builtin_providers();
    let default_limits = |specs: &[ProviderSpec]| {
        specs
            .iter()
            .find(|s| s.name == DEFAULT_PROVIDER)
            .map(|s| s.limits)
            .expect("the built-ins include `default`")
    };
    // `default` first, so new providers inherit the configured default limits.
    let mut ordered: Vec<&ProviderConfig> = entries.iter().collect();
    ordered.sort_by_key(|e| e.name != DEFAULT_PROVIDER);
    for entry in ordered {
        let index = match specs.iter().position(|s| s.name == entry.name) {
            Some(index) => index,
            None => {
                let limits = default_limits(&specs);
                // New providers go before `default`, in config order.
                let at = specs.len() - 1;
                specs.insert(
                    at,
                    ProviderSpec {
                        name: entry.name.clone(),
                        mx_patterns: Vec::new(),
                        limits,
                    },
                );
                at
            }
        };
        let target = &mut specs[index];
        if let Some(patterns) = &entry.mx_patterns {
            target.mx_patterns = patterns.iter().map(|p| normalize_pattern(p)).collect();
        }
        if let Some(n) = entry.max_connections {
            target.limits.max_connections = n;
        }
        if let Some(n) = entry.max_messages_per_connection {
            target.limits.max_messages_per_connection = n;
        }
        if let Some(n) = entry.max_messages_per_hour {
            target.limits.max_messages_per_hour = (n > 0).then_some(n);
        }
    }
    specs
}

/// Patterns compare in lower case and without a trailing root dot.
pub fn normalize_pattern(pattern: &str) -> String {
    pattern.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Checks the entries and the merged table; errors name `delivery.providers[i].key`.
pub(crate) fn validate_providers(entries: &[ProviderConfig]) -> Result<(), ConfigError> {
    let builtin: Vec<String> = builtin_providers().into_iter().map(|s| s.name).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let key = |field: &str| format!("delivery.providers[{i}].{field}");
        let name_ok = !entry.name.is_empty()
            && entry
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
        if !name_ok {
            return Err(ConfigError::invalid(
                key("name"),
                "must be non-empty lower-case letters, digits, `_` or `-`",
            ));
        }
        if let Some(first) = seen.insert(entry.name.as_str(), i) {
            return Err(ConfigError::invalid(
                key("name"),
                format!(
                    "`{}` is already configured by delivery.providers[{first}]",
                    entry.name
                ),
            ));
        }
        match &entry.mx_patterns {
            Some(patterns) if entry.name == DEFAULT_PROVIDER && !patterns.is_empty() => {
                return Err(ConfigError::invalid(
                    key("mx_patterns"),
                    "`default` takes every MX host no pattern matches; it has no patterns",
                ));
            }
            Some(patterns) => {
                for pattern in patterns {
                    if !pattern_ok(pattern) {
                        return Err(ConfigError::invalid(
                            key("mx_patterns"),
                            format!("`{pattern}` must be a host name or `*.` and a domain"),
                        ));
                    }
                }
            }
            None => {}
        }
        let is_new = !builtin.contains(&entry.name);
        if is_new && entry.mx_patterns.as_ref().is_none_or(|p| p.is_empty()) {
            return Err(ConfigError::invalid(
                key("mx_patterns"),
                "a provider that is not built in needs at least one pattern",
            ));
        }
        if entry.max_connections == Some(0) {
            return Err(ConfigError::invalid(
                key("max_connections"),
                "must be greater than 0",
            ));
        }
        if entry.max_messages_per_connection == Some(0) {
            return Err(ConfigError::invalid(
                key("max_messages_per_connection"),
                "must be greater than 0",
            ));
        }
    }
    // One pattern in two providers would make classification depend on order.
    let mut owner: HashMap<String, String> = HashMap::new();
    for spec in resolve_providers(entries) {
        for pattern in &spec.mx_patterns {
            if let Some(other) = owner.insert(pattern.clone(), spec.name.clone()) {
                return Err(ConfigError::invalid(
                    "delivery.providers",
                    format!(
                        "pattern `{pattern}` belongs to both `{other}` and `{}`; \
                         set mx_patterns on one of them",
                        spec.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `host.name` or `*.domain.name`: letters, digits, `-` and `.`, no empty label.
fn pattern_ok(pattern: &str) -> bool {
    let pattern = normalize_pattern(pattern);
    let host = pattern.strip_prefix("*.").unwrap_or(&pattern);
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> ProviderConfig {
        ProviderConfig {
            name: name.to_owned(),
            mx_patterns: None,
            max_connections: None,
            max_messages_per_connection: None,
            max_messages_per_hour: None,
        }
    }

    fn find<'a>(specs: &'a [ProviderSpec], name: &str) -> &'a ProviderSpec {
        specs.iter().find(|s| s.name == name).expect(name)
    }

    #[test]
    fn builtins_are_valid_and_end_with_default() {
        validate_providers(&[]).expect("built-ins must validate");
        let specs = resolve_providers(&[]);
        assert_eq!(
            specs.last().map(|s| s.name.as_str()),
            Some(DEFAULT_PROVIDER)
        );
        for name in ["google", "outlook", "yahoo", "icloud"] {
            assert!(!find(&specs, name).mx_patterns.is_empty(), "{name}");
        }
        for spec in &specs {
            for pattern in &spec.mx_patterns {
                assert!(pattern_ok(pattern), "{pattern}");
                assert_eq!(pattern, &normalize_pattern(pattern));
            }
        }
    }

    #[test]
    fn override_changes_only_the_keys_it_sets() {
        let mut google = entry("google");
        google.max_connections = Some(2);
        google.max_messages_per_hour = Some(0);
        let specs = resolve_providers(&[google]);
        let builtin = builtin_providers();
        let (got, was) = (find(&specs, "google"), find(&builtin, "google"));
        assert_eq!(got.limits.max_connections, 2);
        assert_eq!(got.limits.max_messages_per_hour, None);
        assert_eq!(
            got.limits.max_messages_per_connection,
            was.limits.max_messages_per_connection
        );
        assert_eq!(got.mx_patterns, was.mx_patterns);
    }

    #[test]
    fn new_provider_inherits_configured_default_limits() {
        let mut corp = entry("corp");
        corp.mx_patterns = Some(vec!["*.MX.Corp.Example.".to_owned()]);
        let mut default = entry("default");
        default.max_connections = Some(3);
        // `default` listed after the new entry still feeds its limits.
        let entries = [corp, default];
        validate_providers(&entries).unwrap();
        let specs = resolve_providers(&entries);
        let corp = find(&specs, "corp");
        assert_eq!(corp.mx_patterns, vec!["*.mx.corp.example"]);
        assert_eq!(corp.limits.max_connections, 3);
        assert_eq!(
            specs.last().map(|s| s.name.as_str()),
            Some(DEFAULT_PROVIDER)
        );
    }

    #[test]
    fn toml_entries_parse_and_validate() {
        let config = crate::Config::from_toml_str(
            "[[delivery.providers]]\nname = \"google\"\nmax_connections = 2\n\n\
             [[delivery.providers]]\nname = \"corp\"\nmx_patterns = [\"mx.corp.test\"]\n",
        )
        .expect("valid providers");
        assert_eq!(config.delivery.providers.len(), 2);
        assert_eq!(config.delivery.providers[0].max_connections, Some(2));
        let err = crate::Config::from_toml_str(
            "[[delivery.providers]]\nname = \"google\"\nmax_conections = 2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_conections"), "{err}");
    }

    #[test]
    fn invalid_entries_name_the_key() {
        let err = |entries: &[ProviderConfig]| validate_providers(entries).unwrap_err().to_string();
        assert!(err(&[entry("Bad Name")]).contains("delivery.providers[0].name"));
        assert!(err(&[entry("google"), entry("google")]).contains("delivery.providers[1].name"));
        assert!(err(&[entry("corp")]).contains("delivery.providers[0].mx_patterns"));
        let mut bad = entry("corp");
        bad.mx_patterns = Some(vec!["mx.*.corp".to_owned()]);
        assert!(err(&[bad]).contains("mx_patterns"));
        let mut default = entry("default");
        default.mx_patterns = Some(vec!["*.a.test".to_owned()]);
        assert!(err(&[default]).contains("delivery.providers[0].mx_patterns"));
        let mut zero = entry("yahoo");
        zero.max_messages_per_connection = Some(0);
        assert!(err(&[zero]).contains("max_messages_per_connection"));
        let mut clash = entry("corp");
        clash.mx_patterns = Some(vec!["*.Google.com".to_owned()]);
        assert!(err(&[clash]).contains("`*.google.com` belongs to both"));
    }
}
