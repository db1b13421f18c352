//! The process' log: `[log] format` (text or JSON lines) and `[log] level`
//! from the configuration the command reads (`RUST_LOG` wins for the level),
//! written to stderr. Set up before anything else runs; a configuration that
//! does not load leaves the defaults here and is reported by the command.

use std::path::Path;

use penguin_config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// The log settings in effect.
#[derive(Debug, Clone, Copy)]
pub struct Logging {
    pub format: LogFormat,
}

/// Installs the process-wide subscriber.
pub fn init(config: Option<&Path>) -> Logging {
    let log = Config::layered(config).map(|c| c.log).unwrap_or_default();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
    let ignored = penguin_config::ignored_env();
    if !ignored.is_empty() {
        tracing::debug!(
            ?ignored,
            "PENGUIN_* variables without <SECTION>__<KEY> are not configuration; ignored"
        );
    }
    LOGGING.get_or_init(|| Logging { format: log.format });
    Logging { format: log.format }
}

static LOGGING: std::sync::OnceLock<Logging> = std::sync::OnceLock::new();

/// Prints `message` on stdout, where tools that start nodes look for it: as
/// the line itself, or with `[log] format = "json"` as a JSON object in the
/// log's shape (`fields.message`), so every line of a JSON node is JSON.
pub fn announce(message: &str) {
    let json = LOGGING
        .get()
        .is_some_and(|logging| logging.format == LogFormat::Json);
    if json {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let line = serde_json::json!({
            "timestamp": now,
            "level": "INFO",
            "fields": {"message": message},
            "target": "penguin",
        });
        println!("{line}");
    } else {
        println!("{message}");
    }
}
