//! `[log]`: how a node writes its log. `format = "text"` (one human line per
//! event) or `"json"` (one JSON object per line, for log collectors), and the
//! `level` filter (`info`, or directives such as `info,penguin_actors=debug`).
//! `RUST_LOG`, when set, replaces `level`.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter: a level (`error` … `trace`) or comma-separated
    /// `target=level` directives.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl LogConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::builder()
            .parse(&self.level)
            .map(|_| ())
            .map_err(|e| ConfigError::invalid("log.level", format!("{e}")))
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn json_and_directives_parse() {
        let config = Config::from_toml_str(
            "[log]\nformat = \"json\"\nlevel = \"warn,penguin_actors=debug\"\n",
        )
        .unwrap();
        assert_eq!(config.log.format, super::LogFormat::Json);
    }

    #[test]
    fn a_bad_format_or_level_is_named() {
        let err = Config::from_toml_str("[log]\nformat = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.format") || err.contains("xml"), "{err}");
        let err = Config::from_toml_str("[log]\nlevel = \"loud=[\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.level"), "{err}");
    }
}
