//! Messages-per-second pacing of one IP: each SMTP transaction takes the next
//! slot of a 1/rate grid; a worker ahead of its slot waits for it. A rate is a
//! speed, not a calendar limit, so it runs on the monotonic clock (the engine's
//! [`penguin_engine::clock::Clock`] governs days and hours).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Default)]
pub struct Pacer {
    /// Messages per second × 1000; 0 = no pacing.
    milli_rate: AtomicU64,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// Sets the rate (`0.0` = unlimited).
    pub fn set_rate(&self, per_second: f64) {
        let milli = (per_second.max(0.0) * 1000.0).round() as u64;
        self.milli_rate.store(milli, Ordering::Relaxed);
    }

    /// When the caller may start its message: now, or its slot on the grid.
    fn slot(&self, now: Instant) -> Option<Instant> {
        let milli = self.milli_rate.load(Ordering::Relaxed);
        if milli == 0 {
            return None;
        }
        let gap = Duration::from_nanos(1_000_000_000_000 / milli);
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
    fn zero_means_unpaced() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(pacer.slot(t0), None);
        }
    }
}
