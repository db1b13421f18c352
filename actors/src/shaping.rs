//! Traffic shaping of one IP towards each shaping unit — a named provider, or
//! one MX site of the `default` provider ([`ShapingUnit`]; the "pair" below is
//! (IP, unit), DESIGN.md §5–§6): at most `max_connections` connections at once, at most
//! `max_messages_per_hour` messages per clock hour, and the actions of reply rules
//! — suspend the pair for a while, or slow it down for a while: its own hourly
//! cap, or else the rate it was observed sending at, multiplied by a factor
//! ([`crate::shaping_rate`]). A job the pair cannot take now is postponed: it goes
//! back to Postgres with a later `run_at`, never into a busy loop.
//!
//! Owned by one Ip actor and shared with its delivery workers. The pair counters
//! live in memory and start from zero when the Ip actor restarts (the per-IP daily
//! and hourly allowances, which must survive restarts, are in [`crate::allowance`]).
//! Every action taken is returned as an [`Applied`], which the Ip actor records in
//! Postgres; a starting Ip actor hands the ones still in force to
//! [`Shaping::restore`], so suspensions and slow-downs survive restarts
//! ([`crate::shaping_log`]).
//! The health breakers also suspend or slow pairs through here, and hold a pair
//! whose own health is at a warning rate to half the IP's per-second pace
//! ([`Shaping::pace`]) until it recovers.
//!
//! The table is bounded (`[delivery.sites]`): a unit is created on first use and
//! dropped once idle (no connection, no action in force, no hourly count that
//! still matters, unused for `idle_secs`); a new unit past `max_per_ip`, while
//! none can be dropped, is refused: its message is postponed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use penguin_config::SitesConfig;
use penguin_engine::reply_rules::RuleAction;
use penguin_engine::site::ShapingUnit;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::pacer::Pacer;
pub use crate::shaping_log::{Applied, Restored};
use crate::shaping_rate::{Base, RecentSends, slowed};

/// Whether a message may start towards a provider now.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Go,
    /// Not before this time; `why` is a short reason for logs and the job's reply.
    NotBefore {
        at: OffsetDateTime,
        why: &'static str,
    },
}

struct Pair {
    /// The unit's name (the key of `Shaping::pairs`) and its provider.
    key: String,
    provider: String,
    /// The provider's own hourly cap, when it has one.
    cap: Option<u32>,
    /// Messages admitted lately: what a slow-down of an uncapped pair multiplies.
    recent: RecentSends,
    connections: Arc<Semaphore>,
    hour: i64,
    sent_this_hour: u32,
    suspended_until: Option<OffsetDateTime>,
    /// The slowed hourly cap and until when it applies.
    slowed: Option<(u32, OffsetDateTime)>,
    /// The pair's own per-second grid, used while its health factor is below 1.
    pacer: Arc<Pacer>,
    last_used: OffsetDateTime,
}

impl Pair {
    /// Nothing would be lost by dropping the pair now (see the module doc).
    fn idle(&self, now: OffsetDateTime, idle: std::time::Duration) -> bool {
        Arc::strong_count(&self.connections) == 1
            && !self.pacer.slowed()
            && self.suspended_until.is_none_or(|u| u <= now)
            && self.slowed.is_none_or(|(_, u)| u <= now)
            && !(self.cap.is_some() && self.hour == hour_of(now) && self.sent_this_hour > 0)
            && self.last_used + idle <= now
    }
}

#[derive(Default)]
pub struct Shaping {
    pairs: Mutex<HashMap<String, Pair>>,
    /// Actions loaded from Postgres at start, by key, for pairs not yet in use:
    /// a pair takes its own when it is created.
    restored: Mutex<HashMap<String, Restored>>,
    bounds: SitesConfig,
    /// When idle pairs are next swept out (also whenever the table is full).
    next_sweep: Mutex<Option<OffsetDateTime>>,
}

fn hour_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(3600)
}

fn next_hour(t: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp((hour_of(t) + 1) * 3600).unwrap_or(t)
}

impl Shaping {
    /// A table bounded by `[delivery.sites]`.
    pub fn new(bounds: SitesConfig) -> Self {
        Self {
            bounds,
            ..Self::default()
        }
    }

    /// Runs `f` on the unit's pair, created if need be (taking over an action
    /// restored for its key); `None` when it is new and the table is full of
    /// pairs that cannot be dropped (unless `force`).
    fn with_pair<R>(
        &self,
        unit: &ShapingUnit,
        now: OffsetDateTime,
        force: bool,
        f: impl FnOnce(&mut Pair) -> R,
    ) -> Option<R> {
        let mut pairs = self.pairs.lock().expect("shaping lock");
        if !pairs.contains_key(&unit.key) && !self.make_room(&mut pairs, now) && !force {
            return None;
        }
        let provider = &unit.provider;
        let pair = pairs.entry(unit.key.clone()).or_insert_with_key(|key| {
            let restored = self.take_restored(key);
            Pair {
                key: key.clone(),
                provider: provider.name.clone(),
                cap: provider.limits.max_messages_per_hour.filter(|c| *c > 0),
                recent: RecentSends::default(),
                connections: Arc::new(Semaphore::new(provider.limits.max_connections.max(1))),
                hour: hour_of(now),
                sent_this_hour: 0,
                suspended_until: restored.suspended_until,
                slowed: restored.slowed,
                pacer: Arc::new(Pacer::default()),
                last_used: now,
            }
        });
        pair.last_used = pair.last_used.max(now);
        if pair.hour != hour_of(now) {
            pair.hour = hour_of(now);
            pair.sent_this_hour = 0;
        }
        if pair.suspended_until.is_some_and(|until| until <= now) {
            pair.suspended_until = None;
        }
        if pair.slowed.is_some_and(|(_, until)| until <= now) {
            pair.slowed = None;
        }
        Some(f(pair))
    }

    /// Drops idle pairs when the table is full or a sweep is due; whether a new
    /// pair fits afterwards.
    fn make_room(&self, pairs: &mut HashMap<String, Pair>, now: OffsetDateTime) -> bool {
        let idle = std::time::Duration::from_secs(self.bounds.idle_secs);
        let mut next = self.next_sweep.lock().expect("sweep lock");
        if pairs.len() >= self.bounds.max_per_ip || next.is_none_or(|at| at <= now) {
            pairs.retain(|_, pair| !pair.idle(now, idle));
            *next = Some(now + idle);
        }
        pairs.len() < self.bounds.max_per_ip
    }

    /// How many units this IP tracks now.
    pub fn len(&self) -> usize {
        self.pairs.lock().expect("shaping lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admits one message towards `unit` (and counts it), or says when to retry.
    pub fn admit(&self, unit: &ShapingUnit, now: OffsetDateTime) -> Admission {
        let cap = unit.provider.limits.max_messages_per_hour;
        let admitted = self.with_pair(unit, now, false, |pair| {
            if let Some(until) = pair.suspended_until {
                return Admission::NotBefore {
                    at: until,
                    why: "provider suspended by a reply rule",
                };
            }
            let effective = match (pair.slowed, cap) {
                (Some((slow_cap, _)), _) => Some(slow_cap),
                (None, Some(cap)) if cap > 0 => Some(cap),
                _ => None,
            };
            if effective.is_some_and(|cap| pair.sent_this_hour >= cap) {
                let why = if pair.slowed.is_some() {
                    "provider slowed by a reply rule"
                } else {
                    "provider hourly cap reached"
                };
                return Admission::NotBefore {
                    at: next_hour(now),
                    why,
                };
            }
            pair.sent_this_hour += 1;
            pair.recent.record(now);
            Admission::Go
        });
        admitted.unwrap_or_else(|| Admission::NotBefore {
            at: now + std::time::Duration::from_secs(self.bounds.idle_secs),
            why: "too many shaping sites in use (delivery.sites.max_per_ip)",
        })
    }

    /// Waits for the pair's own slot while its health factor is below 1: its pace
    /// is then `ip_per_second` (the IP's pace) times that factor. A healthy
    /// pair, or an IP without a per-second pace, does not wait here.
    pub async fn pace(&self, provider: &str, ip_per_second: f64) {
        if let Some(pacer) = self.slowed_pacer(provider) {
            pacer.set_rate(ip_per_second);
            pacer.pace().await;
        }
    }

    fn slowed_pacer(&self, provider: &str) -> Option<Arc<Pacer>> {
        let pairs = self.pairs.lock().expect("shaping lock");
        pairs
            .get(provider)
            .filter(|pair| pair.pacer.slowed())
            .map(|pair| pair.pacer.clone())
    }

    /// Sets the pair's per-second health factor (the breakers' verdict on it).
    pub fn set_pace_factor(&self, provider: &str, factor: f64) {
        let pairs = self.pairs.lock().expect("shaping lock");
        if let Some(pair) = pairs.get(provider) {
            pair.pacer.set_health_factor(factor);
        }
    }

    /// Sets every pair's per-second health factor to `factor_of(provider)`.
    pub fn set_pace_factors(&self, factor_of: impl Fn(&str) -> f64) {
        let pairs = self.pairs.lock().expect("shaping lock");
        for (provider, pair) in pairs.iter() {
            pair.pacer.set_health_factor(factor_of(provider));
        }
    }

    /// The semaphore bounding this IP's connections to `unit` (its pair exists:
    /// the message was just admitted).
    pub fn connections(&self, unit: &ShapingUnit, now: OffsetDateTime) -> Arc<Semaphore> {
        self.with_pair(unit, now, true, |pair| pair.connections.clone())
            .expect("forced")
    }

    /// Whether this IP could open another connection to the provider named.
    pub fn has_free_slot(&self, provider: &str) -> bool {
        let pairs = self.pairs.lock().expect("shaping lock");
        pairs
            .get(provider)
            .is_some_and(|pair| pair.connections.available_permits() > 0)
    }

    /// The health breaker's suspension of a pair: nothing for `for_`, then its
    /// rate times `resume_factor` for as long again (a suspension and a
    /// slow-down, both returned for the record).
    pub fn suspend_pair(
        &self,
        provider: &str,
        for_: std::time::Duration,
        resume_factor: f64,
        now: OffsetDateTime,
    ) -> Vec<Applied> {
        let mut pairs = self.pairs.lock().expect("shaping lock");
        let Some(pair) = pairs.get_mut(provider) else {
            return Vec::new();
        };
        let until = now + for_;
        let suspended = pair.suspend(now, until);
        let slowed = pair.slow_down(resume_factor, now, until + for_);
        vec![suspended, slowed]
    }

    /// The health breaker's slow-down of a pair: its rate times `factor`.
    pub fn slow_pair(
        &self,
        provider: &str,
        factor: f64,
        for_: std::time::Duration,
        now: OffsetDateTime,
    ) -> Option<Applied> {
        let mut pairs = self.pairs.lock().expect("shaping lock");
        let pair = pairs.get_mut(provider)?;
        Some(pair.slow_down(factor, now, now + for_))
    }

    /// Applies a reply rule's action to the pair; returns what is now in force.
    pub fn apply(&self, unit: &ShapingUnit, action: RuleAction, now: OffsetDateTime) -> Applied {
        let until = now + action.duration();
        self.with_pair(unit, now, true, |pair| match action {
            RuleAction::Suspend { .. } => pair.suspend(now, until),
            RuleAction::SlowDown { factor, .. } => pair.slow_down(factor, now, until),
        })
        .expect("forced")
    }

    /// Takes over actions still in force from a previous incarnation (loaded
    /// from Postgres when the Ip actor starts), by unit key.
    pub fn restore(&self, actions: impl IntoIterator<Item = (String, Restored)>) {
        let mut pairs = self.pairs.lock().expect("shaping lock");
        let mut restored = self.restored.lock().expect("shaping restore lock");
        for (key, action) in actions {
            match pairs.get_mut(&key) {
                Some(pair) => action.merge_into(&mut pair.suspended_until, &mut pair.slowed),
                None => restored.entry(key).or_default().merge(action),
            }
        }
    }

    fn take_restored(&self, key: &str) -> Restored {
        let mut restored = self.restored.lock().expect("shaping restore lock");
        restored.remove(key).unwrap_or_default()
    }
}

impl Pair {
    /// Nothing sent until `until` (a longer suspension in force stays).
    fn suspend(&mut self, now: OffsetDateTime, until: OffsetDateTime) -> Applied {
        let until = self.suspended_until.map_or(until, |u| u.max(until));
        self.suspended_until = Some(until);
        Applied::suspend(&self.key, &self.provider, now, until)
    }

    /// The pair's rate times `factor` until `until` (or a later end in force):
    /// the rate of a slow-down in force, else its own cap, else what it was
    /// observed sending lately.
    fn slow_down(&mut self, factor: f64, now: OffsetDateTime, until: OffsetDateTime) -> Applied {
        let base = match (self.slowed, self.cap) {
            (Some((rate, _)), _) => Base::Slowed(rate),
            (None, Some(cap)) => Base::Cap(cap),
            (None, None) => Base::Observed(self.recent.per_hour(now)),
        };
        let rate = slowed(base, factor, self.cap.is_some());
        let until = self.slowed.map_or(until, |(_, u)| u.max(until));
        self.slowed = Some((rate, until));
        Applied::slow_down(&self.key, &self.provider, factor, rate, base, now, until)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use penguin_config::ProviderLimits;
    use penguin_engine::provider::Provider;

    fn provider(cap: Option<u32>) -> ShapingUnit {
        unit("google", cap)
    }

    fn unit(key: &str, cap: Option<u32>) -> ShapingUnit {
        ShapingUnit {
            key: key.into(),
            provider: Provider {
                name: "google".into(),
                limits: ProviderLimits {
                    max_connections: 2,
                    max_messages_per_connection: 10,
                    max_messages_per_hour: cap,
                },
            },
        }
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 - 1_700_000_000 % 3600 + secs).unwrap()
    }

    #[test]
    fn hourly_cap_postpones_to_the_next_hour() {
        let shaping = Shaping::default();
        let p = provider(Some(3));
        for _ in 0..3 {
            assert_eq!(shaping.admit(&p, at(10)), Admission::Go);
        }
        let Admission::NotBefore { at: when, .. } = shaping.admit(&p, at(20)) else {
            panic!("cap must hold");
        };
        assert_eq!(when, at(3600));
        assert_eq!(
            shaping.admit(&p, at(3600)),
            Admission::Go,
            "a new hour starts afresh"
        );
    }

    #[test]
    fn suspend_holds_until_it_expires() {
        let shaping = Shaping::default();
        let p = provider(None);
        shaping.apply(
            &p,
            RuleAction::Suspend {
                for_: Duration::from_secs(600),
            },
            at(0),
        );
        assert!(matches!(
            shaping.admit(&p, at(599)),
            Admission::NotBefore { .. }
        ));
        assert_eq!(shaping.admit(&p, at(600)), Admission::Go);
    }

    #[test]
    fn slow_down_lowers_the_cap_for_a_while() {
        let shaping = Shaping::default();
        let p = provider(Some(100));
        shaping.apply(
            &p,
            RuleAction::SlowDown {
                factor: 0.05,
                for_: Duration::from_secs(7200),
            },
            at(0),
        );
        for _ in 0..5 {
            assert_eq!(shaping.admit(&p, at(1)), Admission::Go);
        }
        assert!(
            matches!(shaping.admit(&p, at(2)), Admission::NotBefore { .. }),
            "slowed to 5 per hour"
        );
        assert_eq!(
            shaping.admit(&p, at(7300)),
            Admission::Go,
            "slow-down expired"
        );
    }

    #[test]
    fn a_pair_held_at_a_warning_is_paced_at_half_the_ip_rate_until_it_recovers() {
        let shaping = Shaping::default();
        let p = provider(None);
        shaping.admit(&p, at(0));
        assert!(shaping.slowed_pacer("google").is_none(), "healthy: no wait");
        shaping.set_pace_factor("google", 0.5);
        let pacer = shaping.slowed_pacer("google").expect("slowed");
        pacer.set_rate(20.0);
        let t0 = tokio::time::Instant::now();
        assert_eq!(pacer.slot(t0), None);
        assert_eq!(
            pacer.slot(t0),
            Some(t0 + Duration::from_millis(100)),
            "10 a second: half the IP's 20"
        );
        shaping.set_pace_factors(|_| 1.0);
        assert!(shaping.slowed_pacer("google").is_none(), "recovered");
    }

    #[test]
    fn sites_are_shaped_apart_and_idle_ones_dropped() {
        let shaping = Shaping::new(SitesConfig {
            max_per_ip: 2,
            idle_secs: 60,
        });
        let (a, b, c) = (
            unit("site:a", None),
            unit("site:b", None),
            unit("site:c", None),
        );
        shaping.apply(
            &a,
            RuleAction::Suspend {
                for_: Duration::from_secs(600),
            },
            at(0),
        );
        assert!(matches!(
            shaping.admit(&a, at(1)),
            Admission::NotBefore { .. }
        ));
        assert_eq!(shaping.admit(&b, at(1)), Admission::Go, "b is not a");
        let Admission::NotBefore { why, .. } = shaping.admit(&c, at(2)) else {
            panic!("full: a is suspended, b was just used");
        };
        assert!(why.contains("max_per_ip"), "{why}");
        assert_eq!(shaping.admit(&c, at(62)), Admission::Go, "b idle: dropped");
        assert_eq!(shaping.len(), 2);
        let held = shaping.connections(&c, at(62)).try_acquire_owned().unwrap();
        assert_eq!(
            shaping.admit(&b, at(200)),
            Admission::NotBefore {
                at: at(260),
                why: "too many shaping sites in use (delivery.sites.max_per_ip)",
            },
            "a still suspended, c holds a connection"
        );
        drop(held);
        assert_eq!(shaping.admit(&b, at(700)), Admission::Go, "both idle now");
        assert_eq!(shaping.len(), 1, "the sweep dropped every idle pair");
    }

    #[test]
    fn connections_are_bounded_per_provider() {
        let shaping = Shaping::default();
        let sem = shaping.connections(&provider(None), at(0));
        assert_eq!(sem.available_permits(), 2);
    }
}
