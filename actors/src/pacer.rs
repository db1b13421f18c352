//! Messages-per-second pacing of one IP: each SMTP transaction takes the next
//! slot of a 1/rate grid; a worker ahead of its slot waits for it. A rate is a
//! speed, not a calendar limit, so it runs on the monotonic clock (the engine's
//! [`penguin_engine::clock::Clock`] governs days and hours).
//!
//! The rate is the IP's configured one (times its warm-up `rate_factor`), set by
//! the Ip actor, times its health factor (0.5 while a breaker is at a warning
//! rate), set by whoever judged the health last: the grid follows both at once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub struct Pacer {
    /// Messages per second × 1000 of the healthy IP; 0 = no pacing.
    milli_rate: AtomicU64,
    /// The health factor × 1000 (1000 = healthy).
    milli_factor: AtomicU64,
    next: Mutex<Option<Instant>>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self {
            milli_rate: AtomicU64::new(0),
            milli_factor: AtomicU64::new(1000),
            next: Mutex::new(None),
        }
    }
}

impl Pacer {
    /// Sets the healthy rate (`0.0` = unlimited).
    pub fn set_rate(&self, per_second: f64) {
        self.milli_rate
            .store(to_milli(per_second), Ordering::Relaxed);
    }

    /// Sets the health factor the rate is multiplied by (1 = healthy).
    pub fn set_health_factor(&self, factor: f64) {
        self.milli_factor.store(to_milli(factor), Ordering::Relaxed);
    }

    /// Messages per second now (rate × health factor); 0 = unpaced.
    pub fn per_second(&self) -> f64 {
        let milli = self.milli_rate.load(Ordering::Relaxed) as f64;
        milli * self.milli_factor.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// The health factor holds the rate below its healthy value.
    pub fn slowed(&self) -> bool {
        self.milli_factor.load(Ordering::Relaxed) < 1000
    }

    /// When the caller may start its message: now, or its slot on the grid.
    pub(crate) fn slot(&self, now: Instant) -> Option<Instant> {
        let milli = self.milli_rate.load(Ordering::Relaxed);
        if milli == 0 {
            return None;
        }
        let factor = self.milli_factor.load(Ordering::Relaxed).max(1);
        // Messages per second × 10⁶: the gap is 10¹⁵ / that, in nanoseconds.
        let micro = milli * factor;
        let gap = Duration::from_nanos(1_000_000_000_000_000 / micro);
        let mut next = self.next.lock().expect("pacer lock");
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + gap);
        (slot > now).then_some(slot)
    }

    /// Waits for this message's slot.
    pub async fn pace(&self) {
        if let Some(slot) = self.slot(Instant::now()) {
            tokio::time::sleep_until(slot).await;
        }
    }
}

fn to_milli(value: f64) -> u64 {
    (value.max(0.0) * 1000.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_by_the_rate() {
        let pacer = Pacer::default();
        pacer.set_rate(10.0);
        let t0 = Instant::now();
        assert_eq!(pacer.slot(t0), None, "the first message goes at once");
        assert_eq!(pacer.slot(t0), Some(t0 + Duration::from_millis(100)));
        assert_eq!(pacer.slot(t0), Some(t0 + Duration::from_millis(200)));
        let later = t0 + Duration::from_secs(5);
        assert_eq!(pacer.slot(later), None, "no burst credit is saved up");
    }

    #[test]
    fn the_health_factor_scales_the_gap_and_recovers() {
        let pacer = Pacer::default();
        pacer.set_rate(10.0);
        pacer.set_health_factor(0.5);
        let t0 = Instant::now();
        assert_eq!(pacer.slot(t0), None);
        assert_eq!(
            pacer.slot(t0),
            Some(t0 + Duration::from_millis(200)),
            "half the rate: twice the gap"
        );
        pacer.set_health_factor(1.0);
        assert_eq!(pacer.slot(t0), Some(t0 + Duration::from_millis(400)));
        assert_eq!(
            pacer.slot(t0),
            Some(t0 + Duration::from_millis(500)),
            "healthy again: the configured gap"
        );
    }

    #[test]
    fn zero_means_unpaced() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(pacer.slot(t0), None);
        }
    }
}
