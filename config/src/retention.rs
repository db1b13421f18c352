//! `[retention]`: how long the data every message leaves behind is kept.
//! Delivery events live in monthly partitions of `delivery_events`; a partition
//! whose every day is older than `events_days` is dropped whole, and
//! `partitions_ahead` months are created before they are needed. The jobs and
//! leads of a finished (completed or cancelled) campaign are deleted
//! `jobs_days_after_campaign_end` and `leads_days_after_campaign_end` days after
//! it finished, at most `batch_size` rows per statement, every `interval_ms`,
//! by one node at a time. Rollups (`campaign_daily_stats`, `ip_daily_stats`)
//! hold the history and are kept; suppressions expire only by their own
//! `expires_at`, never by retention.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, within};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days delivery events are kept (at least; their month goes whole).
    pub events_days: u32,
    /// Days after a campaign finished before its jobs are deleted.
    pub jobs_days_after_campaign_end: u32,
    /// Days after a campaign finished before its leads are deleted (never
    /// before its jobs: a lead's jobs go first).
    pub leads_days_after_campaign_end: u32,
    /// Monthly event partitions created ahead of the current month.
    pub partitions_ahead: u32,
    /// Most rows one retention statement deletes.
    pub batch_size: u32,
    /// How often a node tries to take the retention turn.
    pub interval_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events_days: 400,
            jobs_days_after_campaign_end: 90,
            leads_days_after_campaign_end: 90,
            partitions_ahead: 3,
            batch_size: 5_000,
            interval_ms: 3_600_000,
        }
    }
}

impl RetentionConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        within("retention.events_days", self.events_days.into(), 1, 36_500)?;
        within(
            "retention.jobs_days_after_campaign_end",
            self.jobs_days_after_campaign_end.into(),
            0,
            36_500,
        )?;
        within(
            "retention.leads_days_after_campaign_end",
            self.leads_days_after_campaign_end.into(),
            0,
            36_500,
        )?;
        within(
            "retention.partitions_ahead",
            self.partitions_ahead.into(),
            1,
            24,
        )?;
        within("retention.batch_size", self.batch_size.into(), 1, 100_000)?;
        within("retention.interval_ms", self.interval_ms, 100, 86_400_000)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn defaults_are_the_issues() {
        let config = Config::from_toml_str("").unwrap();
        assert_eq!(config.retention.events_days, 400);
        assert_eq!(config.retention.jobs_days_after_campaign_end, 90);
        assert_eq!(config.retention.leads_days_after_campaign_end, 90);
    }

    #[test]
    fn a_zero_retention_or_a_huge_batch_is_named() {
        let err = Config::from_toml_str("[retention]\nevents_days = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention.events_days"), "{err}");
        let err = Config::from_toml_str("[retention]\nbatch_size = 1000000\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention.batch_size"), "{err}");
    }
}
