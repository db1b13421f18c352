//! `[delivery]`: the route table, SMTP stage timeouts, connection reuse and retries,
//! MX resolution (`[delivery.dns]`) and providers (`[[delivery.providers]]`).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::QueueConfig;
use crate::error::{ConfigError, positive};
use crate::providers::{ProviderConfig, validate_providers};
use crate::reply_rules::{ReplyRule, default_reply_rules, validate_all};
use crate::sites::{GreylistConfig, SitesConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// `[[delivery.routes]]`: send a domain (`*` = every domain) to a fixed host:port
    /// instead of its MX. The most specific route wins (exact domain before `*`).
    pub routes: Vec<Route>,
    /// SMTP connections (= concurrent transactions) per source IP.
    pub connections_per_ip: usize,
    /// Messages sent over one connection before it is closed and reopened.
    pub messages_per_connection: usize,
    /// Connections idle longer than this are closed, in ms.
    pub idle_timeout_ms: u64,
    /// Jobs an IP actor holds beyond those in SMTP (its share of the tenant's window).
    pub ip_backlog: usize,
    /// One deadline per delivery attempt, in ms, counted from the job's claim: the
    /// wait for a worker, the connect to every MX tried and the whole SMTP
    /// transaction end by then (each stage timeout still applies within it). It
    /// must sit below `queue.sending_timeout_ms` with a margin
    /// ([`DeliveryConfig::validate_against`]), so an attempt always ends, and its
    /// outcome is written, before the Reaper could hand the job to another claim.
    pub attempt_timeout_ms: u64,
    /// STARTTLS policy toward receiving servers: `opportunistic` (upgrade when
    /// offered, plain otherwise), `required` (defer rather than send in plain) or
    /// `disabled` (never upgrade). Certificates are not verified (as usual for
    /// MTA-to-MTA TLS): this protects against passive eavesdropping only.
    pub tls: TlsPolicy,
    pub timeouts: SmtpTimeouts,
    pub retry: RetryConfig,
    /// `[[delivery.reply_rules]]`: reply patterns that slow down or suspend an
    /// (IP, provider) pair; first match wins. Setting it replaces the defaults.
    pub reply_rules: Vec<ReplyRule>,
    /// `[delivery.dns]`: how MX and address lookups are made and cached.
    pub dns: DnsConfig,
    /// `[[delivery.providers]]`: changes to the built-in providers, or new ones.
    pub providers: Vec<ProviderConfig>,
    /// `[delivery.sites]`: bounds of the per-IP table of shaping units.
    pub sites: SitesConfig,
    /// `[delivery.greylist]`: greylisting defers a recipient, it is no signal.
    pub greylist: GreylistConfig,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            connections_per_ip: 8,
            messages_per_connection: 100,
            idle_timeout_ms: 30_000,
            ip_backlog: 64,
            attempt_timeout_ms: 300_000,
            tls: TlsPolicy::default(),
            timeouts: SmtpTimeouts::default(),
            retry: RetryConfig::default(),
            reply_rules: default_reply_rules(),
            dns: DnsConfig::default(),
            providers: Vec::new(),
            sites: SitesConfig::default(),
            greylist: GreylistConfig::default(),
        }
    }
}

impl DeliveryConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (i, route) in self.routes.iter().enumerate() {
            route.validate(i)?;
        }
        positive(
            "delivery.connections_per_ip",
            self.connections_per_ip as u64,
        )?;
        positive(
            "delivery.messages_per_connection",
            self.messages_per_connection as u64,
        )?;
        positive("delivery.idle_timeout_ms", self.idle_timeout_ms)?;
        positive("delivery.ip_backlog", self.ip_backlog as u64)?;
        positive("delivery.attempt_timeout_ms", self.attempt_timeout_ms)?;
        self.timeouts.validate()?;
        self.retry.validate()?;
        validate_all(&self.reply_rules)?;
        self.dns.validate()?;
        self.sites.validate()?;
        self.greylist.validate()?;
        validate_providers(&self.providers)
    }
}

impl DeliveryConfig {
    /// The checks that need `[queue]`: `attempt_timeout_ms` is at most
    /// `queue.sending_timeout_ms` less [`attempt_margin_ms`].
    pub(crate) fn validate_against(&self, queue: &QueueConfig) -> Result<(), ConfigError> {
        let margin = attempt_margin_ms(queue.sending_timeout_ms);
        let most = queue.sending_timeout_ms.saturating_sub(margin);
        if self.attempt_timeout_ms > most {
            return Err(ConfigError::invalid(
                "delivery.attempt_timeout_ms",
                format!(
                    "{} ms must sit below queue.sending_timeout_ms ({} ms) with a margin \
                     of {margin} ms (a fifth of it, at least 1000 ms), so an attempt ends \
                     and its outcome is written before the job may be claimed again: \
                     lower delivery.attempt_timeout_ms to at most {most} or raise \
                     queue.sending_timeout_ms",
                    self.attempt_timeout_ms, queue.sending_timeout_ms
                ),
            ));
        }
        Ok(())
    }
}

/// The least time between the end of an attempt's deadline and the moment the
/// Reaper may return its job: a fifth of `sending_timeout_ms`, at least 1 s
/// (for the outcome's write, its retries and the Reaper's own period).
pub fn attempt_margin_ms(sending_timeout_ms: u64) -> u64 {
    (sending_timeout_ms / 5).max(1_000)
}

/// `[delivery] tls`: when the SMTP client upgrades a connection with STARTTLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Upgrade when the server offers STARTTLS; plain when it does not.
    #[default]
    Opportunistic,
    /// Only ever send over TLS; a server without STARTTLS defers the message.
    Required,
    /// Never upgrade, even when offered.
    Disabled,
}

impl TlsPolicy {
    /// True unless `disabled`.
    pub fn enabled(self) -> bool {
        self != TlsPolicy::Disabled
    }

    /// True for `required`.
    pub fn required(self) -> bool {
        self == TlsPolicy::Required
    }
}

/// One `[[delivery.routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// A recipient domain (case-insensitive), or `*` for every domain.
    pub domain: String,
    /// Host name or IP address of the SMTP server to use.
    pub host: String,
    /// Its TCP port.
    pub port: u16,
}

impl Route {
    fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let key = |field: &str| format!("delivery.routes[{index}].{field}");
        let domain_ok = self.domain == "*"
            || (!self.domain.is_empty()
                && self
                    .domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')));
        if !domain_ok {
            return Err(ConfigError::invalid(
                key("domain"),
                "must be a domain name or `*`",
            ));
        }
        if self.host.trim().is_empty() {
            return Err(ConfigError::invalid(key("host"), "must not be empty"));
        }
        if self.port == 0 {
            return Err(ConfigError::invalid(key("port"), "must not be 0"));
        }
        Ok(())
    }
}

/// `[delivery.timeouts]`: one limit per SMTP stage, in ms; the error names the stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpTimeouts {
    pub connect_ms: u64,
    pub greeting_ms: u64,
    pub ehlo_ms: u64,
    pub mail_from_ms: u64,
    pub rcpt_to_ms: u64,
    pub data_ms: u64,
    /// From the end of the message body to the server's final reply.
    pub data_end_ms: u64,
    /// The STARTTLS command and the TLS handshake (each), when the server offers it.
    pub tls_ms: u64,
}

impl Default for SmtpTimeouts {
    fn default() -> Self {
        // Close to RFC 5321 §4.5.3.2 minimums, shortened where a cold-outreach
        // sender would rather defer and retry than hold a connection.
        Self {
            connect_ms: 30_000,
            greeting_ms: 60_000,
            ehlo_ms: 60_000,
            mail_from_ms: 60_000,
            rcpt_to_ms: 60_000,
            data_ms: 60_000,
            data_end_ms: 120_000,
            tls_ms: 30_000,
        }
    }
}

impl SmtpTimeouts {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("delivery.timeouts.connect_ms", self.connect_ms)?;
        positive("delivery.timeouts.greeting_ms", self.greeting_ms)?;
        positive("delivery.timeouts.ehlo_ms", self.ehlo_ms)?;
        positive("delivery.timeouts.mail_from_ms", self.mail_from_ms)?;
        positive("delivery.timeouts.rcpt_to_ms", self.rcpt_to_ms)?;
        positive("delivery.timeouts.data_ms", self.data_ms)?;
        positive("delivery.timeouts.data_end_ms", self.data_end_ms)?;
        positive("delivery.timeouts.tls_ms", self.tls_ms)
    }
}

/// `[delivery.retry]`: exponential backoff with jitter for deferred jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First retry delay, in seconds.
    pub base_delay_secs: u64,
    /// Each further retry waits this many times longer.
    pub factor: f64,
    /// Longest delay between two attempts, in seconds.
    pub max_delay_secs: u64,
    /// A job older than this (since its first attempt) fails instead of retrying, in seconds.
    pub max_age_secs: u64,
    /// A job fails after this many attempts.
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base_delay_secs: 300,
            factor: 2.0,
            max_delay_secs: 4 * 3600,
            max_age_secs: 3 * 24 * 3600,
            max_attempts: 30,
        }
    }
}

impl RetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("delivery.retry.base_delay_secs", self.base_delay_secs)?;
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(ConfigError::invalid(
                "delivery.retry.factor",
                "must be a number >= 1.0",
            ));
        }
        if self.max_delay_secs < self.base_delay_secs {
            return Err(ConfigError::invalid(
                "delivery.retry.max_delay_secs",
                "must be >= delivery.retry.base_delay_secs",
            ));
        }
        positive("delivery.retry.max_age_secs", self.max_age_secs)?;
        positive("delivery.retry.max_attempts", self.max_attempts.into())
    }
}

/// `[delivery.dns]`: the resolver used for MX and address lookups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Nameservers as "ip:port" (or "ip", port 53); empty = the system's resolv.conf.
    pub nameservers: Vec<String>,
    /// One query's timeout, in ms (each nameserver is tried; a timeout defers the job).
    pub timeout_ms: u64,
    /// Longest time a negative answer (NXDOMAIN, no records) is cached, in seconds;
    /// the zone's SOA negative TTL applies when shorter.
    pub negative_ttl_secs: u64,
    /// Most DNS answers kept in the cache (each until its TTL), least used evicted.
    pub cache_size: u64,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout_ms: 5_000,
            negative_ttl_secs: 60,
            cache_size: 16_384,
        }
    }
}

impl DnsConfig {
    /// The configured nameservers; empty means the system configuration.
    /// Infallible on a validated config (invalid entries were rejected).
    pub fn nameserver_addrs(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .filter_map(|entry| parse_nameserver(entry))
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (i, entry) in self.nameservers.iter().enumerate() {
            if parse_nameserver(entry).is_none() {
                return Err(ConfigError::invalid(
                    format!("delivery.dns.nameservers[{i}]"),
                    format!("`{entry}` must be an IP address, optionally with :port"),
                ));
            }
        }
        positive("delivery.dns.timeout_ms", self.timeout_ms)?;
        positive("delivery.dns.negative_ttl_secs", self.negative_ttl_secs)?;
        positive("delivery.dns.cache_size", self.cache_size)
    }
}

/// "ip:port", "[v6]:port", or a bare IP address (port 53).
fn parse_nameserver(entry: &str) -> Option<SocketAddr> {
    let entry = entry.trim();
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return (addr.port() != 0).then_some(addr);
    }
    entry
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

#[cfg(test)]
mod dns_tests {
    use super::*;

    #[test]
    fn nameservers_parse_with_and_without_port() {
        let dns = DnsConfig {
            nameservers: vec!["127.0.0.1:5353".into(), "::1".into(), "[::1]:54".into()],
            ..DnsConfig::default()
        };
        dns.validate().unwrap();
        let addrs: Vec<String> = dns
            .nameserver_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(addrs, ["127.0.0.1:5353", "[::1]:53", "[::1]:54"]);
    }

    #[test]
    fn bad_nameserver_names_its_index() {
        for bad in ["dns.example", "127.0.0.1:0", ""] {
            let dns = DnsConfig {
                nameservers: vec!["1.1.1.1".into(), bad.into()],
                ..DnsConfig::default()
            };
            let err = dns.validate().unwrap_err().to_string();
            assert!(err.contains("delivery.dns.nameservers[1]"), "{err}");
        }
    }
}

#[cfg(test)]
mod attempt_tests {
    use crate::Config;

    #[test]
    fn attempt_timeout_must_leave_a_margin_below_sending_timeout() {
        let parse = |attempt: u64, sending: u64| {
            Config::from_toml_str(&format!(
                "[delivery]\nattempt_timeout_ms = {attempt}\n[queue]\nsending_timeout_ms = {sending}\n"
            ))
        };
        assert!(parse(8_000, 10_000).is_ok());
        let err = parse(8_001, 10_000).unwrap_err().to_string();
        assert!(err.contains("delivery.attempt_timeout_ms"), "{err}");
        assert!(err.contains("queue.sending_timeout_ms"), "{err}");
        assert!(err.contains("at most 8000"), "{err}");
        assert!(parse(2_000, 3_000).is_ok(), "the margin is at least 1 s");
        assert!(parse(2_001, 3_000).is_err());
        assert!(parse(1, 1_000).is_err(), "no room left at all");
        let defaults = Config::default();
        assert!(defaults.delivery.attempt_timeout_ms < defaults.queue.sending_timeout_ms);
    }
}

#[cfg(test)]
mod tls_tests {
    use crate::Config;

    #[test]
    fn tls_policy_parses_and_rejects_unknown_values() {
        let parse =
            |value: &str| Config::from_toml_str(&format!("[delivery]\ntls = \"{value}\"\n"));
        let required = parse("required").unwrap().delivery.tls;
        assert!(required.required() && required.enabled());
        let disabled = parse("disabled").unwrap().delivery.tls;
        assert!(!disabled.enabled() && !disabled.required());
        let default = Config::from_toml_str("").unwrap().delivery.tls;
        assert!(default.enabled() && !default.required());
        assert!(parse("always").is_err());
    }
}
