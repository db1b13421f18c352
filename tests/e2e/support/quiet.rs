//! "Settled" as a quiet period, not as one lucky reading: a count that matches
//! now can still move — a late overshoot, a late second copy. [`until_quiet`]
//! polls a reading until it stayed the same over [`QUIET_POLLS`] consecutive
//! polls spanning at least a given time; [`quiet_span`] is that time for a node
//! configuration: longer than any interval at which the engine would start new
//! work by itself (feeder, reaper, status flush).

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use penguin_config::Config;

/// Consecutive equal readings a quiet period needs, at the least.
pub const QUIET_POLLS: u32 = 5;

/// Time between two polls.
const POLL: Duration = Duration::from_millis(25);

/// The longest interval [`quiet_span`] waits out. A scenario that sets a timer
/// longer than this (`limits_overflow` idles its feeder for ten minutes, to show
/// nothing but due times and notifications wakes it) does not count on it.
const LONGEST_TIMER: Duration = Duration::from_secs(1);

/// How long counts must stay still to call a node with `config` settled: one
/// poll more than the longest of its feeder, reaper and status-flush intervals
/// (at most [`LONGEST_TIMER`]), so each of those had a turn during the quiet
/// period.
pub fn quiet_span(config: &Config) -> Duration {
    let queue = &config.queue;
    let longest = [
        queue.feed_idle_ms,
        queue.reaper_interval_ms,
        queue.status_flush_ms,
    ]
    .into_iter()
    .map(Duration::from_millis)
    .max()
    .unwrap_or_default();
    longest.min(LONGEST_TIMER) + POLL
}

/// Polls `probe` every 25 ms until it returned the same `Some(reading)` on at
/// least [`QUIET_POLLS`] consecutive polls spanning at least `span`, and returns
/// that reading. `None` means "not settled yet" and restarts the count; so does
/// a reading that changed. `Err` with the last reading when `timeout` passes
/// first. The probe may panic itself (a bound overshot).
pub async fn until_quiet<T, F, Fut>(
    span: Duration,
    timeout: Duration,
    mut probe: F,
) -> Result<T, Option<T>>
where
    T: PartialEq,
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    // The reading, when it was first seen, and how many polls in a row saw it.
    let mut still: Option<(T, Instant, u32)> = None;
    loop {
        let reading = probe().await;
        still = match (still, reading) {
            (Some((last, since, polls)), Some(now)) if last == now => {
                Some((last, since, polls + 1))
            }
            (_, Some(now)) => Some((now, Instant::now(), 1)),
            (_, None) => None,
        };
        if let Some((_, since, polls)) = &still
            && *polls >= QUIET_POLLS
            && since.elapsed() >= span
        {
            return Ok(still.expect("a reading").0);
        }
        if Instant::now() >= deadline {
            return Err(still.map(|(reading, _, _)| reading));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`until_quiet`], panicking with `what` and the last reading on a timeout.
pub async fn wait_until_quiet<T, F, Fut>(
    what: &str,
    span: Duration,
    timeout: Duration,
    probe: F,
) -> T
where
    T: PartialEq + Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match until_quiet(span, timeout, probe).await {
        Ok(reading) => reading,
        Err(last) => panic!(
            "timed out after {timeout:?} waiting for {what} to stay still for {span:?}; last reading {last:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A reading that changes once, `late` polls after the first: the quiet
    /// period must end on the changed reading, never on the first one.
    async fn settles_on(late: u32, span: Duration) -> u32 {
        let polls = Mutex::new(0u32);
        let reading = until_quiet(span, Duration::from_secs(10), || async {
            let mut polls = polls.lock().unwrap();
            *polls += 1;
            Some(if *polls > late { 2 } else { 1 })
        })
        .await;
        reading.expect("settles")
    }

    #[tokio::test]
    async fn a_change_after_fewer_polls_than_the_quiet_period_is_seen() {
        assert_eq!(settles_on(QUIET_POLLS - 1, Duration::ZERO).await, 2);
    }

    #[tokio::test]
    async fn a_change_within_the_span_is_seen_however_many_polls_came_before() {
        // Ten polls (about 250 ms) of the first reading, within a 400 ms span.
        assert_eq!(settles_on(10, Duration::from_millis(400)).await, 2);
    }

    #[tokio::test]
    async fn a_reading_never_settled_times_out_with_the_last_one() {
        let outcome = until_quiet(Duration::ZERO, Duration::from_millis(200), || async {
            None::<u32>
        })
        .await;
        assert_eq!(outcome, Err(None));
        let count = Mutex::new(0u32);
        let outcome = until_quiet(Duration::ZERO, Duration::from_millis(200), || async {
            let mut count = count.lock().unwrap();
            *count += 1;
            Some(*count)
        })
        .await;
        assert!(matches!(outcome, Err(Some(n)) if n > 1), "{outcome:?}");
    }
}
