//! Penguin Engine configuration: the only code that reads files and environment variables.
//!
//! [`Config::load`] layers, lowest first: the built-in defaults, one TOML file
//! (`--config FILE`), `PENGUIN_<SECTION>__<KEY>` environment variables, and finally
//! `DATABASE_URL` / `REDIS_URL` / `REDIS_CLUSTER_URLS`. The result is validated
//! once; an error names the key and the reason. Everything downstream receives the immutable [`Config`]
//! (usually in an `Arc`) and never touches `std::env` itself.
//!
//! `config/example.toml` documents every key with its default; a test parses it.

mod check;
mod db_tls;
mod delivery;
mod domains;
mod error;
mod limits;
mod log;
mod providers;
mod public;
mod redis;
mod reply_rules;
mod retention;
mod secrets;
mod sections;
mod sequences;
mod sites;
mod templates;
mod webhooks;

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

pub use check::MASKED;
pub use db_tls::{PgRoots, PgSslMode, PgTls};
pub use delivery::{
    DeliveryConfig, DnsConfig, RetryConfig, Route, SmtpTimeouts, TlsPolicy, attempt_margin_ms,
};
pub use domains::DomainsConfig;
pub use error::ConfigError;
pub use limits::{HealthConfig, LimitsConfig, WarmupConfig};
pub use log::{LogConfig, LogFormat};
pub use providers::{
    DEFAULT_PROVIDER, ProviderConfig, ProviderLimits, ProviderSpec, builtin_providers,
    normalize_pattern, resolve_providers,
};
pub use public::{HttpLimits, MAX_CONNECTIONS, PublicConfig};
pub use redis::RedisConfig;
pub use reply_rules::{MAX_RULE_DURATION_SECS, ReplyAction, ReplyRule, default_reply_rules};
pub use retention::RetentionConfig;
pub use secrets::{
    MASTER_KEY_BYTES, MIN_SECRET_CHARS, PUBLISHED_SECRETS, SecretsConfig, random_secret,
};
pub use sections::{
    ApiConfig, DatabaseConfig, MAX_PARTITIONS, NodeConfig, QueueConfig, TrackingConfig,
};
pub use sequences::{MAX_SEQUENCE_STEPS, MAX_STEP_DELAY_SECS, SequencesConfig};
pub use sites::{GreylistConfig, SitesConfig};
pub use templates::{MAX_SUBJECT_BYTES, TemplatesConfig};
pub use webhooks::WebhooksConfig;

/// The whole, validated configuration of one engine node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub api: ApiConfig,
    pub public: PublicConfig,
    pub node: NodeConfig,
    pub queue: QueueConfig,
    pub delivery: DeliveryConfig,
    pub tracking: TrackingConfig,
    pub limits: LimitsConfig,
    pub warmup: WarmupConfig,
    pub health: HealthConfig,
    pub templates: TemplatesConfig,
    pub secrets: SecretsConfig,
    pub domains: DomainsConfig,
    pub sequences: SequencesConfig,
    pub webhooks: WebhooksConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
}

/// The prefix of configuration environment variables.
const ENV_PREFIX: &str = "PENGUIN_";

/// Whether `key` (a `PENGUIN_` variable's name less the prefix) names a
/// configuration key: `<SECTION>__<KEY>`. Other `PENGUIN_*` variables are not
/// ours (Kubernetes injects `PENGUIN_SERVICE_HOST`, `PENGUIN_PORT`, … for a
/// Service named `penguin`) and are left alone.
fn is_config_env(key: &figment::value::UncasedStr) -> bool {
    key.as_str().contains("__")
}

/// The `PENGUIN_*` environment variables [`Config::load`] leaves alone because
/// they name no `<SECTION>__<KEY>` (for a debug line at start).
pub fn ignored_env() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(key, _)| key.into_string().ok())
        .filter(|key| {
            key.strip_prefix(ENV_PREFIX)
                .is_some_and(|rest| !is_config_env(rest.into()))
        })
        .collect()
}

/// A fresh random master key (`[secrets] master_key`): 32 random bytes, base64.
pub fn random_master_key() -> String {
    use base64::Engine as _;
    let key: [u8; MASTER_KEY_BYTES] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(key)
}

impl Config {
    /// Loads defaults, then `file` (when given), then the environment, and validates
    /// everything, the secrets included (what `penguin serve` runs on).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let config = Self::layered(file)?;
        config.validate()?;
        Ok(config)
    }

    /// The same layers as [`Config::load`], not yet validated: for tools that fill
    /// in what they generate (secrets, listen ports, routes) and then call
    /// [`Config::validate`] themselves.
    pub fn layered(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::MissingFile(file.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment
            .merge(Env::prefixed(ENV_PREFIX).filter(is_config_env).split("__"))
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            )
            .merge(Env::raw().only(&["REDIS_URL"]).map(|_| "redis.url".into()));
        let mut config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        // `REDIS_CLUSTER_URLS`: a cluster's masters, comma-separated (what
        // `scripts/services.sh` exports with REDIS_CLUSTER=1).
        if let Ok(urls) = std::env::var("REDIS_CLUSTER_URLS")
            && !urls.trim().is_empty()
        {
            config.redis.cluster = urls
                .split(',')
                .map(|url| url.trim().to_string())
                .filter(|url| !url.is_empty())
                .collect();
        }
        Ok(config)
    }

    /// Parses a TOML document on top of the defaults (no environment) and checks
    /// every setting but the secrets, which a document shown as an example must not
    /// carry; used by tests and tools that build a configuration in memory.
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(ConfigError::from_figment)?;
        config.validate_settings()?;
        Ok(config)
    }

    /// Gives `api.admin_token`, `tracking.secret` and `secrets.master_key` fresh
    /// random values where they are empty; for nodes that live only as long as their tool (demo, bench,
    /// fault rehearsals, tests). Returns the keys it filled.
    pub fn generate_missing_secrets(&mut self) -> Vec<&'static str> {
        let mut filled = Vec::new();
        if self.api.admin_token.is_empty() {
            self.api.admin_token = random_secret();
            filled.push("api.admin_token");
        }
        if self.tracking.secret.is_empty() {
            self.tracking.secret = random_secret();
            filled.push("tracking.secret");
        }
        if self.secrets.master_key.is_none() {
            self.secrets.master_key = Some(random_master_key());
            filled.push("secrets.master_key");
        }
        filled
    }

    /// Checks everything: [`Config::validate_settings`], then the secrets (present,
    /// never a published example, at least [`MIN_SECRET_CHARS`] characters) and the
    /// `[secrets]` master keys (optional; 32 bytes of base64 when set).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_settings()?;
        secrets::check("api.admin_token", &self.api.admin_token)?;
        secrets::check("tracking.secret", &self.tracking.secret)?;
        self.secrets.validate()
    }

    /// Checks every value that serde cannot (URLs, ranges, relations between
    /// keys), the secrets excepted; `penguin migrate` needs no more.
    pub fn validate_settings(&self) -> Result<(), ConfigError> {
        match self.setting_problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../example.toml");
        let parsed = Config::from_toml_str(text).expect("example.toml must parse");
        assert_eq!(
            parsed,
            Config::default(),
            "example.toml must document the defaults"
        );
        // Its route to a loopback sink is shown commented out: copied as it
        // is, the file sends mail where DNS says.
        assert!(parsed.delivery.routes.is_empty());
        assert!(text.contains("# [[delivery.routes]]"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml_str("[api]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listne"), "{err}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = Config::from_toml_str("[api]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("api.listen"), "{err}");
        let err = Config::from_toml_str("[queue]\nwindow = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("queue.window"), "{err}");
    }

    #[test]
    fn route_needs_host_and_port() {
        let err =
            Config::from_toml_str("[[delivery.routes]]\ndomain = \"*\"\nhost = \"\"\nport = 25\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("delivery.routes[0].host"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/penguin.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn the_secrets_have_no_defaults() {
        let mut config = Config::default();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("api.admin_token") && err.contains("required"),
            "{err}"
        );
        config.api.admin_token = random_secret();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("tracking.secret") && err.contains("required"),
            "{err}"
        );
        config.tracking.secret = "change-me-tracking-secret".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("tracking.secret") && err.contains("published"),
            "{err}"
        );
    }

    #[test]
    fn generated_secrets_fill_only_what_is_missing() {
        let mut config = Config::default();
        config.api.admin_token = "x".repeat(40);
        assert_eq!(
            config.generate_missing_secrets(),
            vec!["tracking.secret", "secrets.master_key"]
        );
        assert_eq!(config.api.admin_token, "x".repeat(40));
        let key = config.secrets.master_key.clone();
        assert_eq!(config.generate_missing_secrets(), Vec::<&str>::new());
        assert_eq!(config.secrets.master_key, key, "a key given is kept");
        config.validate().unwrap();
    }

    #[test]
    fn the_example_config_with_its_documented_values_uncommented_is_refused() {
        // example.toml shows the two secrets commented out; whatever placeholder
        // it shows must not start a node.
        let text = include_str!("../example.toml");
        for line in text.lines() {
            let line = line.trim_start_matches('#').trim();
            for key in ["admin_token", "secret"] {
                if let Some(value) = line.strip_prefix(key).map(str::trim) {
                    let Some(value) = value.strip_prefix('=') else {
                        continue;
                    };
                    let value = value.split('#').next().unwrap().trim().trim_matches('"');
                    let full = if key == "secret" {
                        "tracking.secret"
                    } else {
                        "api.admin_token"
                    };
                    assert!(secrets::check(full, value).is_err(), "{line}");
                }
            }
        }
    }
}
