//! Penguin Engine configuration: the only code that reads files and environment variables.
//!
//! [`Config::load`] layers, lowest first: the built-in defaults, one TOML file
//! (`--config FILE`), `PENGUIN_<SECTION>__<KEY>` environment variables, and finally
//! `DATABASE_URL` / `REDIS_URL`. The result is validated once; an error names the
//! key and the reason. Everything downstream receives the immutable [`Config`]
//! (usually in an `Arc`) and never touches `std::env` itself.
//!
//! `config/example.toml` documents every key with its default; a test parses it.

mod delivery;
mod error;
mod limits;
mod providers;
mod reply_rules;
mod sections;
mod templates;

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

pub use delivery::{DeliveryConfig, DnsConfig, RetryConfig, Route, SmtpTimeouts, TlsPolicy};
pub use error::ConfigError;
pub use limits::{HealthConfig, LimitsConfig, WarmupConfig};
pub use providers::{
    DEFAULT_PROVIDER, ProviderConfig, ProviderLimits, ProviderSpec, builtin_providers,
    normalize_pattern, resolve_providers,
};
pub use reply_rules::{MAX_RULE_DURATION_SECS, ReplyAction, ReplyRule, default_reply_rules};
pub use sections::{
    ApiConfig, DatabaseConfig, NodeConfig, QueueConfig, RedisConfig, TrackingConfig,
};
pub use templates::{MAX_SUBJECT_BYTES, TemplatesConfig};

/// The whole, validated configuration of one engine node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub api: ApiConfig,
    pub node: NodeConfig,
    pub queue: QueueConfig,
    pub delivery: DeliveryConfig,
    pub tracking: TrackingConfig,
    pub limits: LimitsConfig,
    pub warmup: WarmupConfig,
    pub health: HealthConfig,
    pub templates: TemplatesConfig,
}

impl Config {
    /// Loads defaults, then `file` (when given), then the environment, and validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::MissingFile(file.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment
            .merge(Env::prefixed("PENGUIN_").split("__"))
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            )
            .merge(Env::raw().only(&["REDIS_URL"]).map(|_| "redis.url".into()));
        let config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document on top of the defaults (no environment); used by tests
    /// and tools that build a configuration in memory.
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(ConfigError::from_figment)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value that serde cannot: URLs, ranges, non-empty secrets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.database.validate()?;
        self.redis.validate()?;
        self.api.validate()?;
        self.node.validate()?;
        self.queue.validate()?;
        self.delivery.validate()?;
        self.tracking.validate()?;
        self.limits.validate()?;
        self.warmup.validate()?;
        self.health.validate()?;
        self.templates.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../example.toml");
        let parsed = Config::from_toml_str(text).expect("example.toml must parse");
        let mut defaults = Config::default();
        // The example adds one route to show the syntax; everything else is a default.
        defaults.delivery.routes = parsed.delivery.routes.clone();
        assert_eq!(parsed, defaults, "example.toml must document the defaults");
        assert_eq!(parsed.delivery.routes.len(), 1);
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
}
