//! What a slow-down multiplies (issue 14, item 3): a unit's own hourly cap when
//! it has one, else what it was really doing — the messages it was admitted in
//! the last [`WINDOW_SECS`], scaled to an hour — and never a nominal constant.
//!
//! [`RecentSends`] is the per-unit sliding window, kept by [`crate::shaping`]:
//! a fixed ring of [`BUCKETS`] counters (bounded memory per unit, whatever the
//! traffic). [`slowed`] is the arithmetic, pure and tested here. The floor:
//! an uncapped unit is never slowed below [`FLOOR_PER_HOUR`] (one message a
//! minute); a unit with its own cap keeps at least 1 an hour, as before.

use time::OffsetDateTime;

/// The window a unit's recent rate is observed over.
pub const WINDOW_SECS: i64 = 300;
/// Its resolution: the window is this many buckets of `WINDOW_SECS / BUCKETS` s.
pub const BUCKETS: usize = 30;
const BUCKET_SECS: i64 = WINDOW_SECS / BUCKETS as i64;
/// Least hourly rate a slow-down leaves an uncapped unit: one message a minute.
pub const FLOOR_PER_HOUR: u32 = 60;
/// Least hourly rate a slow-down leaves a unit with its own hourly cap.
pub const MIN_CAPPED_PER_HOUR: u32 = 1;

/// Messages admitted in the last [`WINDOW_SECS`], per bucket.
#[derive(Debug, Clone)]
pub struct RecentSends {
    counts: [u32; BUCKETS],
    /// The bucket number (seconds since the epoch / bucket length) of the
    /// newest count; older buckets in the ring are cleared as time moves on.
    newest: i64,
}

impl Default for RecentSends {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            newest: i64::MIN,
        }
    }
}

fn bucket_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(BUCKET_SECS)
}

impl RecentSends {
    /// Counts one message admitted at `now`.
    pub fn record(&mut self, now: OffsetDateTime) {
        self.advance(now);
        let slot = bucket_of(now).rem_euclid(BUCKETS as i64) as usize;
        self.counts[slot] = self.counts[slot].saturating_add(1);
    }

    /// Messages admitted in the window ending at `now`.
    pub fn count(&mut self, now: OffsetDateTime) -> u32 {
        self.advance(now);
        self.counts
            .iter()
            .fold(0u32, |sum, n| sum.saturating_add(*n))
    }

    /// The rate of the window ending at `now`, in messages an hour.
    pub fn per_hour(&mut self, now: OffsetDateTime) -> u32 {
        let per_window = u64::from(self.count(now));
        let per_hour = per_window * 3600 / WINDOW_SECS as u64;
        u32::try_from(per_hour).unwrap_or(u32::MAX)
    }

    /// Clears the buckets that left the window since the newest count (a clock
    /// that went back keeps the counts it has).
    fn advance(&mut self, now: OffsetDateTime) {
        let bucket = bucket_of(now);
        if bucket <= self.newest {
            return;
        }
        let stale = bucket.saturating_sub(self.newest);
        if stale >= BUCKETS as i64 {
            self.counts = [0; BUCKETS];
        } else {
            for step in 1..=stale {
                self.counts[(self.newest + step).rem_euclid(BUCKETS as i64) as usize] = 0;
            }
        }
        self.newest = bucket;
    }
}

/// What a slow-down multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// The unit's own hourly cap.
    Cap(u32),
    /// The rate of a slow-down already in force (they compound).
    Slowed(u32),
    /// Messages an hour observed over the last [`WINDOW_SECS`].
    Observed(u32),
}

impl Base {
    pub fn per_hour(self) -> u32 {
        match self {
            Base::Cap(n) | Base::Slowed(n) | Base::Observed(n) => n,
        }
    }

    /// "hourly cap 100/h", "slowed rate 50/h", "observed 7200/h over the last 300 s".
    pub fn describe(self) -> String {
        match self {
            Base::Cap(n) => format!("hourly cap {n}/h"),
            Base::Slowed(n) => format!("slowed rate {n}/h"),
            Base::Observed(n) => format!("observed {n}/h over the last {WINDOW_SECS} s"),
        }
    }
}

/// The hourly rate `factor` leaves of `base`, never below the floor (see the
/// module doc; `capped` says whether the unit has its own hourly cap).
pub fn slowed(base: Base, factor: f64, capped: bool) -> u32 {
    let floor = if capped {
        MIN_CAPPED_PER_HOUR
    } else {
        FLOOR_PER_HOUR
    };
    let rate = (f64::from(base.per_hour()) * factor).floor();
    (rate.min(f64::from(u32::MAX)) as u32).max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 - 1_700_000_000 % 3600 + secs).unwrap()
    }

    #[test]
    fn the_window_counts_the_last_five_minutes_only() {
        let mut recent = RecentSends::default();
        for _ in 0..100 {
            recent.record(at(0));
        }
        for _ in 0..50 {
            recent.record(at(200));
        }
        assert_eq!(recent.count(at(299)), 150);
        assert_eq!(recent.per_hour(at(299)), 150 * 12);
        assert_eq!(
            recent.count(at(300)),
            50,
            "the first bucket left the window"
        );
        assert_eq!(recent.count(at(499)), 50);
        assert_eq!(recent.count(at(500)), 0);
        recent.record(at(10_000));
        assert_eq!(
            recent.count(at(10_000)),
            1,
            "a long pause clears everything"
        );
    }

    #[test]
    fn a_slow_down_multiplies_what_the_unit_was_doing() {
        assert_eq!(slowed(Base::Observed(7200), 0.75, false), 5400);
        assert_eq!(slowed(Base::Cap(100), 0.05, true), 5);
        assert_eq!(slowed(Base::Slowed(5400), 0.5, false), 2700);
        assert_eq!(
            slowed(Base::Observed(12), 0.75, false),
            FLOOR_PER_HOUR,
            "one a minute at least"
        );
        assert_eq!(slowed(Base::Cap(1), 0.5, true), 1);
    }
}
