//! Configuration errors: every one names the key (dotted path) and the reason.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn from_figment(err: figment::Error) -> Self {
        // figment's Display already names the key path ("for key `api.listen`").
        let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        ConfigError::Parse(messages.join("; "))
    }
}

/// Refuses a value outside `min..=max`, naming `key` and the bounds.
pub(crate) fn within(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be between {min} and {max}"),
        ))
    }
}

/// Fails with a named key when `value` is not strictly positive.
pub(crate) fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be greater than 0"));
    }
    Ok(())
}
