//! Reputation breakers of one IP (DESIGN.md §6): rolling bounce, complaint and
//! deferral rates of the IP and of each (IP, provider) pair, fed by the IP's
//! delivery outcomes and by complaints. A warning threshold halves the rate
//! ([`Breakers::factor`] for the IP, [`Breakers::pair_factor`] for a pair, both
//! back to 1 once the rates are below it again); a
//! critical one pauses the IP (in Postgres, with a time to resume) or suspends
//! the pair. Only outcomes the receiving server decided count: a connection that
//! failed says nothing about reputation.
//!
//! A pair trips only when it is sicker than the IP as a whole: a problem every
//! provider shares is the IP's, and the IP-level action (half rate, or pause and
//! resume at `resume_factor`) is the one that applies. Otherwise an IP with one
//! provider would be paused *and* its only pair suspended, and the pair's
//! slow-down would outlive the pause and override the resume rate.
//!
//! A "pair" is (IP, shaping unit): the unit's key names it (a provider, or an MX
//! site of the `default` provider: `penguin_engine::site`). At most `max_pairs`
//! are tracked; when full, pairs with nothing in their window are dropped, and a
//! new pair that still does not fit counts for the IP only.

use std::collections::HashMap;

use penguin_config::HealthConfig;
use penguin_engine::health::{Health, Rates, RollingWindow};
use time::OffsetDateTime;

/// What the Ip actor must do after an outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Trip {
    /// Pause the IP for `[health] pause_secs`.
    PauseIp(String),
    /// Suspend the pair for `[health] pause_secs`, then slow it down.
    SuspendPair { provider: String, why: String },
    /// Halve the pair's rate for a while.
    SlowPair { provider: String, why: String },
}

/// One outcome as the breakers count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    Sent,
    Bounced,
    Deferred,
    Complaint,
}

impl Observed {
    fn rates(self) -> Rates {
        let mut r = Rates::default();
        match self {
            Observed::Sent => r.sent = 1,
            Observed::Bounced => r.bounced = 1,
            Observed::Deferred => r.deferred = 1,
            Observed::Complaint => r.complaints = 1,
        }
        r
    }
}

pub struct Breakers {
    config: HealthConfig,
    ip: RollingWindow,
    ip_health: Health,
    pairs: HashMap<String, (RollingWindow, Health)>,
    /// The IP was paused by a trip and has not been resumed since.
    tripped: bool,
    max_pairs: usize,
}

impl Breakers {
    pub fn new(config: HealthConfig) -> Self {
        Self {
            ip: RollingWindow::new(config.window_secs),
            ip_health: Health::Healthy,
            pairs: HashMap::new(),
            tripped: false,
            max_pairs: usize::MAX,
            config,
        }
    }

    /// Tracks at most `max` pairs (`[delivery.sites] max_per_ip`).
    pub fn with_max_pairs(mut self, max: usize) -> Self {
        self.max_pairs = max.max(1);
        self
    }

    /// Whether a pair for `key` is, or can now be, tracked.
    fn has_room(&mut self, key: &str, now: OffsetDateTime) -> bool {
        if self.pairs.contains_key(key) || self.pairs.len() < self.max_pairs {
            return true;
        }
        self.pairs.retain(|_, (window, health)| {
            let r = window.totals(now);
            *health != Health::Healthy || r.sent + r.bounced + r.deferred + r.complaints > 0
        });
        self.pairs.len() < self.max_pairs
    }

    /// 0.5 while the IP's rates are above a warning threshold, else 1.
    pub fn factor(&self) -> f64 {
        match self.ip_health {
            Health::Healthy => 1.0,
            _ => 0.5,
        }
    }

    /// 0.5 while the pair's own rates are worse than the IP's (a warning or
    /// worse of its own: the pair is paced at half the IP's rate), else 1.
    pub fn pair_factor(&self, provider: &str) -> f64 {
        match self.pairs.get(provider) {
            Some((_, health)) if severity(health) > severity(&self.ip_health) => 0.5,
            _ => 1.0,
        }
    }

    pub fn health(&self) -> &Health {
        &self.ip_health
    }

    /// The IP resumed after a pause: start with a clean slate.
    pub fn reset(&mut self) {
        self.ip.clear();
        self.pairs.clear();
        self.ip_health = Health::Healthy;
        self.tripped = false;
    }

    /// Counts an outcome; returns what to do now (each trip fires once per
    /// crossing, not on every later outcome).
    pub fn observe(
        &mut self,
        now: OffsetDateTime,
        provider: Option<&str>,
        observed: Observed,
    ) -> Vec<Trip> {
        let min = u64::from(self.config.min_sends);
        let mut trips = Vec::new();
        self.ip.record(now, observed.rates());
        let health = self.ip.totals(now).judge(&self.config, min);
        if let Health::Critical(why) = &health
            && !self.tripped
        {
            self.tripped = true;
            trips.push(Trip::PauseIp(why.clone()));
        }
        self.ip_health = health;
        if let Some(provider) = provider.filter(|key| self.has_room(key, now)) {
            let window_secs = self.config.window_secs;
            let (window, last) = self
                .pairs
                .entry(provider.to_string())
                .or_insert_with(|| (RollingWindow::new(window_secs), Health::Healthy));
            window.record(now, observed.rates());
            let health = window.totals(now).judge(&self.config, min);
            let provider = provider.to_string();
            let own_problem = severity(&health) > severity(&self.ip_health);
            match (&health, &*last) {
                _ if !own_problem => {}
                (Health::Critical(why), Health::Healthy | Health::Warning(_)) => {
                    trips.push(Trip::SuspendPair {
                        provider,
                        why: why.clone(),
                    });
                }
                (Health::Warning(why), Health::Healthy) => trips.push(Trip::SlowPair {
                    provider,
                    why: why.clone(),
                }),
                _ => {}
            }
            *last = health;
        }
        trips
    }
}

fn severity(health: &Health) -> u8 {
    match health {
        Health::Healthy => 0,
        Health::Warning(_) => 1,
        Health::Critical(_) => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_bounce_spike_pauses_the_ip_once_within_the_minimum_sample() {
        let mut b = Breakers::new(HealthConfig::default());
        let mut pauses = 0;
        let mut first_pause_at = None;
        for i in 0..200 {
            let observed = if i % 5 == 0 {
                Observed::Bounced
            } else {
                Observed::Sent
            };
            for trip in b.observe(t(i), Some("default"), observed) {
                if matches!(trip, Trip::PauseIp(_)) {
                    pauses += 1;
                    first_pause_at.get_or_insert(i);
                }
            }
        }
        assert_eq!(pauses, 1, "one trip per crossing");
        assert!(first_pause_at.unwrap() < 50, "paused at the minimum sample");
        b.reset();
        assert_eq!(b.factor(), 1.0);
    }

    #[test]
    fn a_warning_halves_the_rate_without_slowing_the_pair_too() {
        let mut b = Breakers::new(HealthConfig::default());
        let mut trips = Vec::new();
        for i in 0..100 {
            let observed = if i % 14 == 0 {
                Observed::Bounced
            } else {
                Observed::Sent
            };
            trips.extend(b.observe(t(i), Some("google"), observed));
        }
        assert_eq!(b.factor(), 0.5, "{:?}", b.health());
        assert!(
            trips.is_empty(),
            "the IP's problem, not google's: {trips:?}"
        );
    }

    #[test]
    fn a_provider_sicker_than_the_ip_trips_its_pair_only() {
        let mut b = Breakers::new(HealthConfig::default());
        let mut trips = Vec::new();
        for i in 0..1000 {
            // Google bounces one in six (critical); the other nine in ten go to
            // healthy providers, so the IP as a whole stays below the warning rate.
            let (provider, observed) = match i % 10 {
                0 if i % 60 == 0 => ("google", Observed::Bounced),
                0 => ("google", Observed::Sent),
                _ => ("other", Observed::Sent),
            };
            trips.extend(b.observe(t(i), Some(provider), observed));
        }
        assert_eq!(b.factor(), 1.0, "{:?}", b.health());
        assert!(
            matches!(&trips[..], [Trip::SuspendPair { provider, .. }] if provider == "google"),
            "{trips:?}"
        );
    }

    #[test]
    fn a_pair_at_a_warning_of_its_own_is_halved_until_it_recovers() {
        let mut b = Breakers::new(HealthConfig::default());
        let mut trips = Vec::new();
        for i in 0..1000 {
            // Google gets one in ten and bounces 8 of its 100 (a warning); the
            // IP as a whole bounces 0.8 %.
            let (provider, observed) = match i % 10 {
                0 if i % 140 == 0 => ("google", Observed::Bounced),
                0 => ("google", Observed::Sent),
                _ => ("other", Observed::Sent),
            };
            trips.extend(b.observe(t(i), Some(provider), observed));
        }
        assert_eq!(b.factor(), 1.0, "{:?}", b.health());
        assert_eq!(b.pair_factor("google"), 0.5);
        assert_eq!(b.pair_factor("other"), 1.0);
        assert!(
            matches!(&trips[..], [Trip::SlowPair { provider, .. }] if provider == "google"),
            "{trips:?}"
        );
        for i in 1000..1100 {
            b.observe(t(i), Some("google"), Observed::Sent);
        }
        assert_eq!(b.pair_factor("google"), 1.0, "8 of 200, 4 %: healthy again");
    }

    #[test]
    fn a_paused_ip_does_not_also_suspend_its_pairs() {
        let mut b = Breakers::new(HealthConfig::default());
        let mut trips = Vec::new();
        for i in 0..200 {
            let observed = if i % 5 == 0 {
                Observed::Bounced
            } else {
                Observed::Sent
            };
            trips.extend(b.observe(t(i), Some("default"), observed));
        }
        assert!(
            matches!(&trips[..], [Trip::PauseIp(_)]),
            "only the IP pauses: {trips:?}"
        );
    }

    #[test]
    fn pairs_are_bounded_and_quiet_ones_dropped() {
        let mut b = Breakers::new(HealthConfig::default()).with_max_pairs(2);
        b.observe(t(0), Some("site:a"), Observed::Sent);
        b.observe(t(0), Some("site:b"), Observed::Sent);
        b.observe(t(1), Some("site:c"), Observed::Sent);
        assert!(
            !b.pairs.contains_key("site:c"),
            "full: counted for the IP only"
        );
        let later = t(HealthConfig::default().window_secs as i64 + 10);
        b.observe(later, Some("site:c"), Observed::Sent);
        assert!(b.pairs.contains_key("site:c"), "a and b had gone quiet");
        assert_eq!(b.pairs.len(), 1);
    }

    #[test]
    fn complaints_count_against_delivered_mail() {
        let mut b = Breakers::new(HealthConfig::default());
        for i in 0..1000 {
            b.observe(t(i), None, Observed::Sent);
        }
        assert!(
            b.observe(t(1000), None, Observed::Complaint).is_empty(),
            "0.1 %: warning only"
        );
        b.observe(t(1001), None, Observed::Complaint);
        let trips = b.observe(t(1002), None, Observed::Complaint);
        assert!(
            matches!(&trips[..], [Trip::PauseIp(why)] if why.starts_with("complaint")),
            "{trips:?}"
        );
    }
}
