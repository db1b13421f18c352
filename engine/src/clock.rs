//! Time as a dependency: everything that asks "what time is it" asks a [`Clock`],
//! so tests can move time forward (days in seconds) without sleeping.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use time::OffsetDateTime;
use tokio::sync::watch;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// Completes once `now() >= at`. Waiting costs nothing: a timer on the wall
    /// clock, a change notification on a manual one.
    fn sleep_until(&self, at: OffsetDateTime) -> BoxFuture<'static, ()>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn sleep_until(&self, at: OffsetDateTime) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // Re-checked after each timer: the wall clock may be stepped meanwhile.
            loop {
                let left = at - OffsetDateTime::now_utc();
                if left <= time::Duration::ZERO {
                    return;
                }
                let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
                tokio::time::sleep(left).await;
            }
        })
    }
}

/// A clock that only moves when told to; moving it wakes every sleeper that is due.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<OffsetDateTime>>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }

    pub fn set(&self, to: OffsetDateTime) {
        self.now.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: OffsetDateTime) -> BoxFuture<'static, ()> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as any clone of the clock; if all are gone,
            // time never moves again and the sleep never ends.
            if rx.wait_for(|now| *now >= at).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// Wall-clock unix milliseconds, never a moved [`ManualClock`]: for liveness
/// deadlines and membership records, which nodes compare with each other.
pub fn unix_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = OffsetDateTime::UNIX_EPOCH;
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(86_400));
        assert_eq!(clock.now(), start + Duration::from_secs(86_400));
    }

    #[tokio::test]
    async fn manual_sleepers_wake_when_the_clock_passes_their_time() {
        let start = OffsetDateTime::UNIX_EPOCH;
        let clock = ManualClock::new(start);
        let sleeper = tokio::spawn(clock.sleep_until(start + Duration::from_secs(60)));
        clock.advance(Duration::from_secs(30));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "not due yet");
        clock.advance(Duration::from_secs(30));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken by the advance")
            .unwrap();
    }

    #[tokio::test]
    async fn system_sleep_until_the_past_returns_at_once() {
        SystemClock.sleep_until(OffsetDateTime::UNIX_EPOCH).await;
    }
}
