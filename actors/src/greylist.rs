//! Greylisting counted per shaping unit, to tell it apart from throttling.
//!
//! One greylisting reply defers its recipient only
//! ([`penguin_engine::greylist`]); the delivery workers report each one here.
//! Only `[delivery.greylist] throttle_recipients` distinct recipients of one
//! unit greylisted within `throttle_window_secs` count as throttling:
//! [`GreylistCounter::observe`] then answers true (once; the count starts
//! again) and the worker applies the matching reply rule to that unit alone.
//!
//! Owned by one Ip actor and shared with its workers. Bounded: at most
//! `[delivery.sites] max_per_ip` units, each remembering at most
//! `throttle_recipients` recipients (as hashes); units whose entries all left
//! the window are dropped first, and a new unit that still does not fit is not
//! counted (it is greylisting until room frees up).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use penguin_config::{GreylistConfig, SitesConfig};
use time::OffsetDateTime;

pub struct GreylistCounter {
    threshold: usize,
    window: Duration,
    max_units: usize,
    /// Unit key → (when, recipient hash), oldest first, distinct recipients.
    units: HashMap<String, VecDeque<(OffsetDateTime, u64)>>,
}

impl GreylistCounter {
    pub fn new(greylist: &GreylistConfig, sites: &SitesConfig) -> Self {
        Self {
            threshold: greylist.throttle_recipients.max(1) as usize,
            window: Duration::from_secs(greylist.throttle_window_secs),
            max_units: sites.max_per_ip.max(1),
            units: HashMap::new(),
        }
    }

    /// Counts a greylisting reply for `recipient` at `unit`; true when it makes
    /// the unit's greylisting throttling.
    pub fn observe(&mut self, unit: &str, recipient: &str, now: OffsetDateTime) -> bool {
        let horizon = now - self.window;
        if !self.units.contains_key(unit) && self.units.len() >= self.max_units {
            self.units
                .retain(|_, seen| seen.back().is_some_and(|(at, _)| *at > horizon));
            if self.units.len() >= self.max_units {
                return false;
            }
        }
        let seen = self.units.entry(unit.to_owned()).or_default();
        while seen.front().is_some_and(|(at, _)| *at <= horizon) {
            seen.pop_front();
        }
        let hash = recipient_hash(recipient);
        seen.retain(|(_, h)| *h != hash);
        seen.push_back((now, hash));
        if seen.len() < self.threshold {
            return false;
        }
        self.units.remove(unit);
        true
    }
}

fn recipient_hash(recipient: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    recipient.to_ascii_lowercase().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    fn counter(threshold: u32, window: u64, max_units: usize) -> GreylistCounter {
        GreylistCounter::new(
            &GreylistConfig {
                first_retry_secs: 300,
                throttle_recipients: threshold,
                throttle_window_secs: window,
            },
            &SitesConfig {
                max_per_ip: max_units,
                idle_secs: 60,
            },
        )
    }

    #[test]
    fn distinct_recipients_of_one_unit_within_the_window() {
        let mut c = counter(3, 100, 10);
        assert!(!c.observe("site:a", "x@a.test", t(0)));
        assert!(!c.observe("site:a", "X@a.test", t(1)), "same recipient");
        assert!(!c.observe("site:b", "y@b.test", t(2)), "another unit");
        assert!(!c.observe("site:a", "y@a.test", t(3)));
        assert!(c.observe("site:a", "z@a.test", t(4)), "third distinct");
        assert!(
            !c.observe("site:a", "w@a.test", t(5)),
            "counting starts again"
        );
        assert!(
            !c.observe("site:a", "v@a.test", t(200)),
            "w left the window"
        );
        assert!(!c.observe("site:a", "u@a.test", t(201)));
        assert!(c.observe("site:a", "s@a.test", t(202)));
    }

    #[test]
    fn units_are_bounded() {
        let mut c = counter(2, 100, 2);
        c.observe("site:a", "1@a.test", t(0));
        c.observe("site:b", "1@b.test", t(0));
        c.observe("site:c", "1@c.test", t(1));
        assert!(
            !c.observe("site:c", "2@c.test", t(1)),
            "c not counted: full"
        );
        c.observe("site:c", "1@c.test", t(150));
        assert!(
            c.observe("site:c", "2@c.test", t(151)),
            "a and b went stale"
        );
        assert!(c.units.len() <= 2);
    }
}
