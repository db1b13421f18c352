//! `[limits]`, `[warmup]` and `[health]`: per-IP volume, warm-up progression and the
//! reputation breakers (DESIGN.md §6).

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, positive};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most messages one IP starts per second; 0 = no per-second limit.
    pub ip_messages_per_second: u32,
    /// Most messages one IP sends in one hour, on top of the spread of its daily
    /// allowance; 0 = only the spread.
    pub ip_hourly_cap: u32,
    /// Daily allowance of an IP without a warm-up schedule; 0 = unlimited.
    pub warm_daily_volume: u32,
}

impl LimitsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmupConfig {
    /// A day advances the IP only if it sent at least this share of its allowance.
    pub advance_min_usage: f64,
    /// An IP that sent nothing for this many days restarts its schedule at day 1.
    pub idle_rewarm_days: u32,
}

impl Default for WarmupConfig {
    fn default() -> Self {
        Self {
            advance_min_usage: 0.9,
            idle_rewarm_days: 30,
        }
    }
}

impl WarmupConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        share("warmup.advance_min_usage", self.advance_min_usage)?;
        positive("warmup.idle_rewarm_days", self.idle_rewarm_days.into())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Rolling window of the rates, in seconds.
    pub window_secs: u64,
    /// Rates are judged only once the window holds at least this many attempts.
    pub min_sends: u32,
    /// Bounces per attempt: warning halves the rate, critical pauses.
    pub bounce_warning: f64,
    pub bounce_critical: f64,
    /// Complaints per delivered message.
    pub complaint_warning: f64,
    pub complaint_critical: f64,
    /// Deferrals per attempt.
    pub deferral_warning: f64,
    pub deferral_critical: f64,
    /// How long a critical rate pauses the IP or (IP, provider) pair, in seconds.
    pub pause_secs: u64,
    /// After such a pause the rate is multiplied by this; each healthy day doubles
    /// it back towards 1.
    pub resume_factor: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            window_secs: 86_400,
            min_sends: 50,
            bounce_warning: 0.05,
            bounce_critical: 0.10,
            complaint_warning: 0.001,
            complaint_critical: 0.003,
            deferral_warning: 0.25,
            deferral_critical: 0.50,
            pause_secs: 21_600,
            resume_factor: 0.5,
        }
    }
}

impl HealthConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        positive("health.window_secs", self.window_secs)?;
        positive("health.min_sends", self.min_sends.into())?;
        positive("health.pause_secs", self.pause_secs)?;
        for (warn_key, warn, crit_key, crit) in [
            (
                "health.bounce_warning",
                self.bounce_warning,
                "health.bounce_critical",
                self.bounce_critical,
            ),
            (
                "health.complaint_warning",
                self.complaint_warning,
                "health.complaint_critical",
                self.complaint_critical,
            ),
            (
                "health.deferral_warning",
                self.deferral_warning,
                "health.deferral_critical",
                self.deferral_critical,
            ),
        ] {
            share(warn_key, warn)?;
            share(crit_key, crit)?;
            if warn > crit {
                return Err(ConfigError::invalid(
                    warn_key,
                    "must not exceed its critical threshold",
                ));
            }
        }
        share("health.resume_factor", self.resume_factor)
    }
}

/// A share in (0, 1].
fn share(key: &str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            "must be greater than 0 and at most 1",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        LimitsConfig::default().validate().unwrap();
        WarmupConfig::default().validate().unwrap();
        HealthConfig::default().validate().unwrap();
    }

    #[test]
    fn a_warning_above_its_critical_threshold_is_named() {
        let health = HealthConfig {
            bounce_warning: 0.2,
            ..HealthConfig::default()
        };
        let err = health.validate().unwrap_err().to_string();
        assert!(err.contains("health.bounce_warning"), "{err}");
    }

    #[test]
    fn shares_must_be_in_range() {
        let warmup = WarmupConfig {
            advance_min_usage: 1.5,
            ..WarmupConfig::default()
        };
        assert!(
            warmup
                .validate()
                .unwrap_err()
                .to_string()
                .contains("advance_min_usage")
        );
    }
}
