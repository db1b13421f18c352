//! Reputation health of an IP or an (IP, provider) pair: bounce, complaint and
//! deferral rates judged against the `[health]` thresholds. [`Rates::judge`] is
//! shared by the rolling breakers (Ip actor, [`RollingWindow`]) and the Warmup
//! actor's end-of-day verdict (from `ip_daily_stats`).

use std::collections::VecDeque;

use penguin_config::HealthConfig;
use time::OffsetDateTime;

/// Outcome counts over some period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    pub sent: u64,
    pub bounced: u64,
    pub deferred: u64,
    pub complaints: u64,
}

/// The verdict on a set of rates.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Healthy,
    /// Above a warning threshold: the rate halves. The text says which.
    Warning(String),
    /// Above a critical threshold: pause. The text says which.
    Critical(String),
}

impl Health {
    pub fn as_str(&self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Warning(_) => "warning",
            Health::Critical(_) => "critical",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Health::Healthy => None,
            Health::Warning(why) | Health::Critical(why) => Some(why),
        }
    }
}

impl Rates {
    /// SMTP attempts: every outcome that reached a receiving server's verdict.
    pub fn attempts(&self) -> u64 {
        self.sent + self.bounced + self.deferred
    }

    pub fn bounce_rate(&self) -> f64 {
        ratio(self.bounced, self.attempts())
    }

    pub fn deferral_rate(&self) -> f64 {
        ratio(self.deferred, self.attempts())
    }

    pub fn complaint_rate(&self) -> f64 {
        ratio(self.complaints, self.sent)
    }

    /// Judges the rates; below `min_attempts` attempts nothing is judged (too few
    /// to tell). The rolling breakers pass `health.min_sends`; a day's verdict 1.
    pub fn judge(&self, config: &HealthConfig, min_attempts: u64) -> Health {
        if self.attempts() < min_attempts.max(1) {
            return Health::Healthy;
        }
        let checks = [
            (
                "bounce",
                self.bounce_rate(),
                config.bounce_warning,
                config.bounce_critical,
            ),
            (
                "complaint",
                self.complaint_rate(),
                config.complaint_warning,
                config.complaint_critical,
            ),
            (
                "deferral",
                self.deferral_rate(),
                config.deferral_warning,
                config.deferral_critical,
            ),
        ];
        let describe = |name: &str, rate: f64, limit: f64| {
            format!("{name} rate {:.2}% >= {:.2}%", rate * 100.0, limit * 100.0)
        };
        if let Some((name, rate, _, crit)) = checks.iter().find(|(_, r, _, c)| r >= c) {
            return Health::Critical(describe(name, *rate, *crit));
        }
        if let Some((name, rate, warn, _)) = checks.iter().find(|(_, r, w, _)| r >= w) {
            return Health::Warning(describe(name, *rate, *warn));
        }
        Health::Healthy
    }

    fn add(&mut self, other: &Rates) {
        self.sent += other.sent;
        self.bounced += other.bounced;
        self.deferred += other.deferred;
        self.complaints += other.complaints;
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Rates over the last `window` seconds, kept in minute buckets (at most
/// window/60 + 1 of them, whatever the traffic).
#[derive(Debug, Clone)]
pub struct RollingWindow {
    window_secs: i64,
    buckets: VecDeque<(i64, Rates)>,
}

const BUCKET_SECS: i64 = 60;

impl RollingWindow {
    pub fn new(window_secs: u64) -> Self {
        Self {
            window_secs: window_secs.max(1) as i64,
            buckets: VecDeque::new(),
        }
    }

    /// Counts `delta` at `now`.
    pub fn record(&mut self, now: OffsetDateTime, delta: Rates) {
        let bucket = now.unix_timestamp().div_euclid(BUCKET_SECS);
        self.expire(now);
        match self.buckets.back_mut() {
            Some((b, rates)) if *b == bucket => rates.add(&delta),
            _ => self.buckets.push_back((bucket, delta)),
        }
    }

    /// The totals of the window ending at `now`.
    pub fn totals(&mut self, now: OffsetDateTime) -> Rates {
        self.expire(now);
        let mut total = Rates::default();
        for (_, rates) in &self.buckets {
            total.add(rates);
        }
        total
    }

    /// Forgets everything (after a pause, the IP starts with a clean slate).
    pub fn clear(&mut self) {
        self.buckets.clear();
    }

    fn expire(&mut self, now: OffsetDateTime) {
        let oldest = (now.unix_timestamp() - self.window_secs).div_euclid(BUCKET_SECS);
        while self.buckets.front().is_some_and(|(b, _)| *b <= oldest) {
            self.buckets.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(sent: u64, bounced: u64, deferred: u64, complaints: u64) -> Rates {
        Rates {
            sent,
            bounced,
            deferred,
            complaints,
        }
    }

    #[test]
    fn thresholds_grade_the_rates() {
        let c = HealthConfig::default();
        assert_eq!(rates(100, 2, 0, 0).judge(&c, 50), Health::Healthy);
        assert!(matches!(
            rates(100, 6, 0, 0).judge(&c, 50),
            Health::Warning(_)
        ));
        let crit = rates(80, 20, 0, 0).judge(&c, 50);
        assert!(
            matches!(&crit, Health::Critical(why) if why.starts_with("bounce rate 20.00%")),
            "{crit:?}"
        );
        assert!(matches!(
            rates(1000, 0, 0, 3).judge(&c, 50),
            Health::Critical(_)
        ));
        assert!(matches!(
            rates(1000, 0, 0, 1).judge(&c, 50),
            Health::Warning(_)
        ));
        assert!(matches!(
            rates(50, 0, 50, 0).judge(&c, 50),
            Health::Critical(_)
        ));
    }

    #[test]
    fn too_few_attempts_are_not_judged() {
        let c = HealthConfig::default();
        assert_eq!(rates(10, 10, 0, 0).judge(&c, 50), Health::Healthy);
        assert!(matches!(
            rates(10, 10, 0, 0).judge(&c, 1),
            Health::Critical(_)
        ));
    }

    #[test]
    fn the_window_forgets_what_is_older_than_it() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut w = RollingWindow::new(3600);
        w.record(t0, rates(10, 1, 0, 0));
        w.record(t0 + time::Duration::minutes(30), rates(5, 0, 1, 0));
        assert_eq!(
            w.totals(t0 + time::Duration::minutes(31)),
            rates(15, 1, 1, 0)
        );
        assert_eq!(
            w.totals(t0 + time::Duration::minutes(62)),
            rates(5, 0, 1, 0)
        );
        assert_eq!(w.totals(t0 + time::Duration::hours(3)), Rates::default());
        assert!(w.buckets.is_empty());
    }
}
