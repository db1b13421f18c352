//! When a deferred job is tried again: exponential backoff with jitter, bounded by
//! a maximum delay, a maximum age and a maximum number of attempts
//! (`[delivery.retry]`). A server's own "retry in N seconds" ([`retry_hint`])
//! replaces the computed delay ([`decide_with_hint`]). Pure policy, no I/O.

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
    decide_with_hint(config, attempts, first_attempt, now, jitter, None)
}

/// [`decide`], honouring the server's requested delay (`hint`, usually from
/// [`retry_hint`] on the reply) instead of the computed backoff. The hint is never
/// shortened: its jitter only adds up to 10 %, so many jobs deferred at once do
/// not return in the same instant. Maximum attempts and age still apply, and a
/// hint is capped at [`MAX_HINT`]; a zero hint is ignored.
pub fn decide_with_hint(
    config: &RetryConfig,
    attempts: u32,
    first_attempt: OffsetDateTime,
    now: OffsetDateTime,
    jitter: f64,
    hint: Option<Duration>,
) -> RetryDecision {
    if attempts >= config.max_attempts {
        return RetryDecision::GiveUp(GiveUpReason::TooManyAttempts);
    }
    let jitter = jitter.clamp(0.0, 1.0);
    let delay = match hint.filter(|hint| !hint.is_zero()) {
        Some(hint) => hint.min(MAX_HINT).mul_f64(1.0 + 0.1 * jitter),
        None => backoff(config, attempts).mul_f64(0.9 + 0.2 * jitter),
    };
    let next = now + delay;
    if past_max_age(config, first_attempt, next) {
        return RetryDecision::GiveUp(GiveUpReason::TooOld);
    }
    RetryDecision::RetryAt(next)
}

/// Whether an attempt at `at` would come more than the maximum age after the
/// job's first attempt: no retry is scheduled, and none made, past it.
pub fn past_max_age(
    config: &RetryConfig,
    first_attempt: OffsetDateTime,
    at: OffsetDateTime,
) -> bool {
    at - first_attempt > Duration::from_secs(config.max_age_secs)
}

/// The longest delay a reply's hint can ask for.
pub const MAX_HINT: Duration = Duration::from_secs(24 * 3600);

/// Phrases after which a server states how long to wait.
const HINT_PHRASES: &[&str] = &[
    "retry in",
    "retry after",
    "try again in",
    "try again after",
    "resend in",
    "greylisted for",
    "please wait",
];

/// The delay a reply asks for, e.g. "try again in 5 minutes", "retry after 30
/// seconds", "Greylisted for 300 seconds" (case-insensitive; an optional "about",
/// "at least" or "another" may precede the number). Units: s/sec/second(s),
/// m/min/minute(s), h/hr/hour(s); a number without a unit is not a hint. Capped at
/// [`MAX_HINT`]; zero is no hint.
pub fn retry_hint(reply: &str) -> Option<Duration> {
    let text = reply.to_ascii_lowercase();
    HINT_PHRASES.iter().find_map(|phrase| {
        text.match_indices(phrase)
            .find_map(|(at, _)| hint_after(&text[at + phrase.len()..]))
    })
}

/// Parses "[about|at least|another] N unit" at the start of `rest`.
fn hint_after(rest: &str) -> Option<Duration> {
    let mut words = rest
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | ';' | ')' | '('))
        .filter(|word| !word.is_empty())
        .peekable();
    while words
        .next_if(|word| {
            matches!(
                *word,
                "about" | "at" | "least" | "another" | "approximately"
            )
        })
        .is_some()
    {}
    let first = words.next()?;
    // "300s", "5min": the unit may be glued to the number.
    let split = first
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(first.len());
    let (number, glued) = first.split_at(split);
    let count: u64 = number.parse().ok()?;
    let unit = if glued.is_empty() {
        words.next()?
    } else {
        glued
    };
    let secs_per_unit = match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        _ => return None,
    };
    let secs = count.saturating_mul(secs_per_unit);
    (secs > 0).then(|| Duration::from_secs(secs).min(MAX_HINT))
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

    #[test]
    fn the_maximum_age_is_exclusive() {
        let c = config();
        let first = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(100_000);
        assert!(!past_max_age(&c, first, first + Duration::from_secs(3600)));
        assert!(past_max_age(&c, first, first + Duration::from_secs(3601)));
    }

    #[test]
    fn hints_from_real_replies() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "450 4.2.0 Greylisted, please retry in 300 seconds",
                Some(300),
            ),
            ("451 4.7.1 Please try again in 5 minutes", Some(300)),
            ("421 4.7.0 Try again after 30 seconds", Some(30)),
            ("450 4.7.1 RETRY AFTER 2 Hours", Some(7200)),
            (
                "450 4.2.0 Recipient address rejected: Greylisted for 60 seconds",
                Some(60),
            ),
            ("451 try again in about 10 min.", Some(600)),
            ("451 please wait at least 90s before retrying", Some(90)),
            ("421 retry in 1 hour", Some(3600)),
            ("421 retry in 1000 hours", Some(24 * 3600)),
            ("451 4.7.500 Server busy. Please try again later", None),
            ("421 try again in 5", None),
            ("421 retry in 0 seconds", None),
            ("421 retry in 99999999999999999999 seconds", None),
            ("421 retry in five minutes", None),
            ("", None),
        ];
        for (reply, secs) in cases {
            assert_eq!(retry_hint(reply), secs.map(Duration::from_secs), "{reply}");
        }
    }

    #[test]
    fn a_hint_replaces_the_backoff_and_is_never_shortened() {
        let c = config();
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000);
        for jitter in [0.0, 0.5, 0.999] {
            let hint = Some(Duration::from_secs(300));
            let RetryDecision::RetryAt(at) = decide_with_hint(&c, 1, now, now, jitter, hint) else {
                panic!("must retry");
            };
            let delay = (at - now).as_seconds_f64();
            assert!((300.0..=330.0).contains(&delay), "{delay}");
        }
        // A zero or absent hint falls back to the backoff.
        for hint in [None, Some(Duration::ZERO)] {
            assert_eq!(
                decide_with_hint(&c, 2, now, now, 0.5, hint),
                decide(&c, 2, now, now, 0.5)
            );
        }
    }

    #[test]
    fn a_hint_still_respects_age_and_attempts() {
        let c = config();
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(100_000);
        let long = Some(Duration::from_secs(3 * 3600));
        assert_eq!(
            decide_with_hint(&c, 1, now, now, 0.0, long),
            RetryDecision::GiveUp(GiveUpReason::TooOld)
        );
        assert_eq!(
            decide_with_hint(&c, 5, now, now, 0.0, Some(Duration::from_secs(1))),
            RetryDecision::GiveUp(GiveUpReason::TooManyAttempts)
        );
        let huge = Some(Duration::from_secs(10 * 24 * 3600));
        let generous = RetryConfig {
            max_age_secs: 7 * 24 * 3600,
            ..config()
        };
        let RetryDecision::RetryAt(at) = decide_with_hint(&generous, 1, now, now, 0.0, huge) else {
            panic!("must retry");
        };
        assert_eq!(at - now, MAX_HINT);
    }
}
