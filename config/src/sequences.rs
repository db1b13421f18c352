//! `[sequences]`: how long a campaign's sequence may be and how soon a follow-up
//! may follow the step before it. `POST /v1/campaigns` refuses anything outside
//! these (422 naming the step), so the engine never schedules more than
//! `max_steps` jobs per lead nor a follow-up sooner than `min_delay_secs` after
//! the previous step was sent.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, within};

/// Hard ceiling of `max_steps` (the schema's `campaigns.step_count` CHECK).
pub const MAX_SEQUENCE_STEPS: u32 = 100;

/// Longest delay of a follow-up after the previous step: 366 days, in seconds.
pub const MAX_STEP_DELAY_SECS: u32 = 366 * 24 * 3_600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequencesConfig {
    /// Most steps of one campaign, step 1 included (1 = no follow-ups allowed).
    pub max_steps: u32,
    /// Shortest `delay_secs` of a follow-up (tests lower it).
    pub min_delay_secs: u32,
}

impl Default for SequencesConfig {
    fn default() -> Self {
        Self {
            max_steps: 10,
            min_delay_secs: 60,
        }
    }
}

impl SequencesConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        within(
            "sequences.max_steps",
            u64::from(self.max_steps),
            1,
            u64::from(MAX_SEQUENCE_STEPS),
        )?;
        within(
            "sequences.min_delay_secs",
            u64::from(self.min_delay_secs),
            0,
            u64::from(MAX_STEP_DELAY_SECS),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_name_the_key() {
        SequencesConfig::default().validate().unwrap();
        for max_steps in [0, MAX_SEQUENCE_STEPS + 1] {
            let bad = SequencesConfig {
                max_steps,
                ..SequencesConfig::default()
            };
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains("sequences.max_steps"), "{err}");
        }
        let bad = SequencesConfig {
            min_delay_secs: MAX_STEP_DELAY_SECS + 1,
            ..SequencesConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("sequences.min_delay_secs"), "{err}");
        SequencesConfig {
            max_steps: MAX_SEQUENCE_STEPS,
            min_delay_secs: 0,
        }
        .validate()
        .unwrap();
    }
}
