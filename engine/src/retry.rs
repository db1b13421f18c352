//! When a deferred job is tried again: exponential backoff with jitter, bounded by
//! a maximum delay, a maximum age and a maximum number of attempts
//! (`[delivery.retry]`). Pure policy, no I/O.

use std::time::Duration;

use penguin_config::RetryConfig;
use time::OffsetDateTime;

/// What to do with a job whose attempt was deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again at this time.
    RetryAt(OffsetDateTime),
    /// Give up: the job ends `failed`.
    GiveUp(GiveUpReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    TooManyAttempts,
    TooOld,
}

impl GiveUpReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::TooManyAttempts => "maximum attempts reached",
            GiveUpReason::TooOld => "maximum message age reached",
        }
    }
}

/// The delay before attempt `attempts + 1`, before jitter: base × factor^(attempts-1),
/// capped at the maximum delay.
pub fn backoff(config: &RetryConfig, attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(64) as i32;
    let secs = config.base_delay_secs as f64 * config.factor.powi(exponent);
    Duration::from_secs_f64(secs.min(config.max_delay_secs as f64))
}

/// Decides the next step after `attempts` attempts (this one included), the first of
/// which happened at `first_attempt`. `jitter` in [0, 1) spreads retries by ±10 %.
pub fn decide(
    config: &RetryConfig,
    attempts: u32,
    first_attempt: OffsetDateTime,
    now: OffsetDateTime,
    jitter: f64,
) -> RetryDecision {
    if attempts >= config.max_attempts {
        return RetryDecision::GiveUp(GiveUpReason::TooManyAttempts);
    }
    let delay = backoff(config, attempts).mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0));
    let next = now + delay;
    if next - first_attempt > Duration::from_secs(config.max_age_secs) {
        return RetryDecision::GiveUp(GiveUpReason::TooOld);
    }
    RetryDecision::RetryAt(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RetryConfig {
        RetryConfig {
            base_delay_secs: 60,
            factor: 2.0,
            max_delay_secs: 600,
            max_age_secs: 3600,
            max_attempts: 5,
        }
    }

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let c = config();
        assert_eq!(backoff(&c, 1), Duration::from_secs(60));
        assert_eq!(backoff(&c, 2), Duration::from_secs(120));
        assert_eq!(backoff(&c, 4), Duration::from_secs(480));
        assert_eq!(backoff(&c, 5), Duration::from_secs(600));
        assert_eq!(backoff(&c, 1000), Duration::from_secs(600));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let c = config();
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000);
        for jitter in [0.0, 0.5, 0.999] {
            let RetryDecision::RetryAt(at) = decide(&c, 1, now, now, jitter) else {
                panic!("must retry");
            };
            let delay = (at - now).as_seconds_f64();
            assert!((54.0..=66.0).contains(&delay), "{delay}");
        }
    }

    #[test]
    fn gives_up_on_attempts_and_age() {
        let c = config();
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(100_000);
        assert_eq!(
            decide(&c, 5, now, now, 0.5),
            RetryDecision::GiveUp(GiveUpReason::TooManyAttempts)
        );
        let first = now - Duration::from_secs(3500);
        assert_eq!(
            decide(&c, 2, first, now, 0.5),
            RetryDecision::GiveUp(GiveUpReason::TooOld)
        );
    }
}
