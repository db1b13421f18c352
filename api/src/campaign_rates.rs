//! A campaign's `rates` and `eta` as `GET /v1/campaigns/{id}` shows them
//! ([`RatesBody`], [`eta`]), computed from its job counts per state and its
//! delivery events ([`Activity`], one query of `store::stats`).
//!
//! Pure: no clock, no database; `routes/campaigns.rs` passes the counts, the
//! activity over the last [`RATE_WINDOW_MINUTES`] and `now`. Every rate is a
//! fraction in 0..=1, 0 when its denominator is 0.

use std::collections::BTreeMap;

use penguin_engine::domain::CampaignStatus;
use penguin_engine::store::stats::Activity;
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

/// The window the per-minute rates (and so the ETA) look back over: this many
/// whole minutes before the current one.
pub const RATE_WINDOW_MINUTES: i64 = 5;

/// The window at `now`: the [`RATE_WINDOW_MINUTES`] whole minutes before the
/// minute `now` is in, as `[since, until)`.
pub fn window(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let until = now
        .replace_second(0)
        .and_then(|t| t.replace_nanosecond(0))
        .expect("second 0 and nanosecond 0 exist");
    (until - Duration::minutes(RATE_WINDOW_MINUTES), until)
}

/// Job states that will still produce an outcome.
const REMAINING: [&str; 4] = ["pending", "queued", "sending", "deferred"];

/// What a campaign's jobs and events amount to.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RatesBody {
    /// `sent` outcomes of the last 5 whole minutes ÷ 5.
    pub sent_per_minute: f64,
    /// Final outcomes (`sent`, `bounced`, `failed`, `suppressed`) of the last 5
    /// whole minutes ÷ 5: how fast jobs leave the queue; `eta` uses it.
    pub finished_per_minute: f64,
    /// Jobs with an SMTP verdict: `sent` + `bounced` + `failed`.
    pub attempted: i64,
    /// Jobs the receiving server accepted (state `sent`).
    pub delivered: i64,
    /// `delivered` ÷ `attempted`.
    pub delivery_rate: f64,
    /// Jobs `bounced` ÷ `attempted`.
    pub bounce_rate: f64,
    /// `complaint` events (at most one per job).
    pub complaints: i64,
    /// `complaints` ÷ `delivered`.
    pub complaint_rate: f64,
    /// Jobs with an `open` event (the first open per job).
    pub opened: i64,
    /// `opened` ÷ `delivered`.
    pub open_rate: f64,
    /// Jobs with at least one `click` event.
    pub clicked: i64,
    /// `clicked` ÷ `delivered`.
    pub click_rate: f64,
    /// Jobs with a `replied` event (`POST /v1/replies`; one per lead).
    pub replied: i64,
    /// `replied` ÷ `delivered`.
    pub reply_rate: f64,
    /// `unsubscribed` events (one per address newly suppressed by its link).
    pub unsubscribes: i64,
    /// `unsubscribes` ÷ `delivered`.
    pub unsubscribe_rate: f64,
}

/// `part / whole` in 0..=1; 0 when `whole` is 0.
fn fraction(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        return 0.0;
    }
    (part.max(0) as f64 / whole as f64).min(1.0)
}

fn per_minute(events: i64) -> f64 {
    events as f64 / RATE_WINDOW_MINUTES as f64
}

fn count(counts: &BTreeMap<&'static str, i64>, state: &str) -> i64 {
    counts.get(state).copied().unwrap_or(0)
}

impl RatesBody {
    /// `counts`: jobs per state (as the `counts` field of the campaign).
    pub fn new(counts: &BTreeMap<&'static str, i64>, activity: &Activity) -> RatesBody {
        let delivered = count(counts, "sent");
        let bounced = count(counts, "bounced");
        let attempted = delivered + bounced + count(counts, "failed");
        RatesBody {
            sent_per_minute: per_minute(activity.sent_recent),
            finished_per_minute: per_minute(activity.finished_recent),
            attempted,
            delivered,
            delivery_rate: fraction(delivered, attempted),
            bounce_rate: fraction(bounced, attempted),
            complaints: activity.complaints,
            complaint_rate: fraction(activity.complaints, delivered),
            opened: activity.opened,
            open_rate: fraction(activity.opened, delivered),
            clicked: activity.clicked,
            click_rate: fraction(activity.clicked, delivered),
            replied: activity.replied,
            reply_rate: fraction(activity.replied, delivered),
            unsubscribes: activity.unsubscribes,
            unsubscribe_rate: fraction(activity.unsubscribes, delivered),
        }
    }
}

/// When the remaining jobs (`pending`, `queued`, `sending`, `deferred`) would
/// be done at the rate jobs finished over the last window: `now` +
/// ⌈remaining × window ÷ finished⌉ seconds. `None` when nothing is left, the
/// campaign is not `running`, or nothing finished in the window.
pub fn eta(
    status: CampaignStatus,
    counts: &BTreeMap<&'static str, i64>,
    activity: &Activity,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let remaining: i64 = REMAINING.iter().map(|state| count(counts, state)).sum();
    let finished = activity.finished_recent;
    if status != CampaignStatus::Running || remaining <= 0 || finished <= 0 {
        return None;
    }
    let window_seconds = RATE_WINDOW_MINUTES * 60;
    let seconds = (remaining * window_seconds + finished - 1) / finished;
    Some(now + Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    #[test]
    fn the_window_is_the_whole_minutes_before_now() {
        let (since, until) = window(datetime!(2026-12-02 08:41:59.9 UTC));
        assert_eq!(since, datetime!(2026-12-02 08:36 UTC));
        assert_eq!(until, datetime!(2026-12-02 08:41 UTC));
    }

    use super::*;

    fn counts(pairs: &[(&'static str, i64)]) -> BTreeMap<&'static str, i64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn rates_divide_by_attempts_and_deliveries() {
        let counts = counts(&[("sent", 6), ("bounced", 2), ("failed", 1), ("pending", 9)]);
        let activity = Activity {
            sent_recent: 4,
            finished_recent: 7,
            complaints: 1,
            unsubscribes: 1,
            opened: 3,
            clicked: 2,
            replied: 2,
        };
        let rates = RatesBody::new(&counts, &activity);
        assert_eq!(rates.sent_per_minute, 0.8);
        assert_eq!(rates.finished_per_minute, 1.4);
        assert_eq!(rates.attempted, 9);
        assert_eq!(rates.delivered, 6);
        assert_eq!(rates.delivery_rate, 6.0 / 9.0);
        assert_eq!(rates.bounce_rate, 2.0 / 9.0);
        assert_eq!(rates.complaint_rate, 1.0 / 6.0);
        assert_eq!(rates.open_rate, 3.0 / 6.0);
        assert_eq!(rates.click_rate, 2.0 / 6.0);
        assert_eq!(rates.reply_rate, 2.0 / 6.0);
        assert_eq!(rates.unsubscribe_rate, 1.0 / 6.0);
    }

    #[test]
    fn empty_campaigns_have_zero_rates() {
        let rates = RatesBody::new(&BTreeMap::new(), &Activity::default());
        assert_eq!(rates.delivery_rate, 0.0);
        assert_eq!(rates.open_rate, 0.0);
        assert_eq!(rates.sent_per_minute, 0.0);
        let odd = Activity {
            opened: 5,
            ..Activity::default()
        };
        let rates = RatesBody::new(&counts(&[("sent", 2)]), &odd);
        assert_eq!(rates.open_rate, 1.0, "capped at 1");
    }

    #[test]
    fn eta_spreads_the_remaining_jobs_over_the_recent_rate() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let left = counts(&[("pending", 9), ("deferred", 1), ("sent", 6)]);
        let activity = Activity {
            finished_recent: 7,
            ..Activity::default()
        };
        // 10 jobs at 7 per 300 s: ⌈3000 / 7⌉ = 429 s.
        let at = eta(CampaignStatus::Running, &left, &activity, now);
        assert_eq!(at, Some(now + Duration::seconds(429)));
        for status in [CampaignStatus::Paused, CampaignStatus::Completed] {
            assert_eq!(eta(status, &left, &activity, now), None);
        }
        let idle = Activity::default();
        assert_eq!(eta(CampaignStatus::Running, &left, &idle, now), None);
        let done = counts(&[("sent", 6)]);
        assert_eq!(eta(CampaignStatus::Running, &done, &activity, now), None);
    }
}
