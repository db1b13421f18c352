//! `[templates]`: the budget every campaign template render runs under.
//!
//! Templates come from tenants the engine does not trust, so a render is bounded
//! three ways: instructions (`fuel`, minijinja's counter, per template part),
//! output (`max_subject_bytes`, `max_part_bytes`) and time (`render_timeout_ms`,
//! with at most `render_concurrency` renders at once off the async runtime). The
//! API dry-runs new campaigns under the same budget; a job whose render breaks it
//! ends `failed` with the limit in its reason.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, within};

/// RFC 5322 §2.1.1: a line holds at most 998 bytes, and the subject is one line.
pub const MAX_SUBJECT_BYTES: usize = 998;
/// The largest `max_part_bytes` accepted: far above any real email body.
pub const MAX_PART_BYTES_CEILING: usize = 64 * 1024 * 1024;
/// The largest `fuel` accepted (about a second or two of rendering).
pub const MAX_FUEL: u64 = 100_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatesConfig {
    /// Most minijinja instructions one template part may run per render.
    pub fuel: u64,
    /// Longest subject after rendering, in bytes (at most 998).
    pub max_subject_bytes: usize,
    /// Longest text or HTML part after rendering (and link tracking), in bytes.
    pub max_part_bytes: usize,
    /// A job's render answers within this time or the job fails.
    pub render_timeout_ms: u64,
    /// Most renders running at once on one node (blocking threads).
    pub render_concurrency: usize,
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        Self {
            fuel: 1_000_000,
            max_subject_bytes: MAX_SUBJECT_BYTES,
            max_part_bytes: 2 * 1024 * 1024,
            render_timeout_ms: 5_000,
            render_concurrency: 4,
        }
    }
}

impl TemplatesConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        within("templates.fuel", self.fuel, 1_000, MAX_FUEL)?;
        within(
            "templates.max_subject_bytes",
            self.max_subject_bytes as u64,
            1,
            MAX_SUBJECT_BYTES as u64,
        )?;
        within(
            "templates.max_part_bytes",
            self.max_part_bytes as u64,
            1_024,
            MAX_PART_BYTES_CEILING as u64,
        )?;
        within(
            "templates.render_timeout_ms",
            self.render_timeout_ms,
            10,
            600_000,
        )?;
        within(
            "templates.render_concurrency",
            self.render_concurrency as u64,
            1,
            1_024,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        TemplatesConfig::default().validate().unwrap();
    }

    #[test]
    fn the_subject_limit_cannot_pass_the_line_limit() {
        let config = TemplatesConfig {
            max_subject_bytes: 999,
            ..TemplatesConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("templates.max_subject_bytes"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        for (config, key) in [
            (
                TemplatesConfig {
                    fuel: 0,
                    ..TemplatesConfig::default()
                },
                "templates.fuel",
            ),
            (
                TemplatesConfig {
                    max_part_bytes: 100,
                    ..TemplatesConfig::default()
                },
                "templates.max_part_bytes",
            ),
            (
                TemplatesConfig {
                    render_timeout_ms: 0,
                    ..TemplatesConfig::default()
                },
                "templates.render_timeout_ms",
            ),
            (
                TemplatesConfig {
                    render_concurrency: 0,
                    ..TemplatesConfig::default()
                },
                "templates.render_concurrency",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
