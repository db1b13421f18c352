//! `[delivery.sites]` and `[delivery.greylist]`: how the destinations of the
//! `default` provider are shaped one MX site at a time, and how greylisting is
//! told apart from throttling. Read by the IP actors (`actors/src/shaping.rs`,
//! `actors/src/greylist.rs`); validated with the rest of `[delivery]`.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, positive};

/// `[delivery.sites]`: the per-IP table of shaping units (named providers and MX
/// sites). An entry is created on first use and dropped once idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SitesConfig {
    /// Most shaping units one IP tracks at once. A message to a new site past
    /// this, while none can be dropped, is postponed (never sent unshaped).
    pub max_per_ip: usize,
    /// A unit with no connection, no action in force and no hourly count to
    /// keep is dropped after this many seconds without use.
    pub idle_secs: u64,
}

impl Default for SitesConfig {
    fn default() -> Self {
        Self {
            max_per_ip: 10_000,
            idle_secs: 600,
        }
    }
}

/// `[delivery.greylist]`: a greylisting reply (a 4xx at RCPT or after DATA
/// saying "greylisted", or `4.7.1` with "try again later") defers its recipient
/// only, with a short first retry. The same reply from `throttle_recipients`
/// distinct recipients of one site within `throttle_window_secs` is throttling:
/// the reply rule it matches then applies to that site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GreylistConfig {
    /// Delay before the first retry of a greylisted recipient, in seconds
    /// (later retries follow `[delivery.retry]`).
    pub first_retry_secs: u64,
    /// Distinct greylisted recipients of one site, within the window, that make
    /// it throttling.
    pub throttle_recipients: u32,
    pub throttle_window_secs: u64,
}

impl Default for GreylistConfig {
    fn default() -> Self {
        Self {
            first_retry_secs: 300,
            throttle_recipients: 10,
            throttle_window_secs: 300,
        }
    }
}

impl SitesConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        positive("delivery.sites.max_per_ip", self.max_per_ip as u64)?;
        positive("delivery.sites.idle_secs", self.idle_secs)
    }
}

impl GreylistConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        positive("delivery.greylist.first_retry_secs", self.first_retry_secs)?;
        positive(
            "delivery.greylist.throttle_recipients",
            u64::from(self.throttle_recipients),
        )?;
        if self.throttle_recipients > 10_000 {
            return Err(ConfigError::invalid(
                "delivery.greylist.throttle_recipients",
                "must be at most 10000",
            ));
        }
        positive(
            "delivery.greylist.throttle_window_secs",
            self.throttle_window_secs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeros_are_refused_by_name() {
        SitesConfig::default().validate().unwrap();
        GreylistConfig::default().validate().unwrap();
        let sites = SitesConfig {
            max_per_ip: 0,
            ..SitesConfig::default()
        };
        let err = sites.validate().unwrap_err().to_string();
        assert!(err.contains("delivery.sites.max_per_ip"), "{err}");
        let greylist = GreylistConfig {
            throttle_recipients: 10_001,
            ..GreylistConfig::default()
        };
        let err = greylist.validate().unwrap_err().to_string();
        assert!(
            err.contains("delivery.greylist.throttle_recipients"),
            "{err}"
        );
        let greylist = GreylistConfig {
            first_retry_secs: 0,
            ..GreylistConfig::default()
        };
        assert!(greylist.validate().is_err());
    }
}
