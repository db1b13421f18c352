//! `send_window` (issue 17): messages start only inside `[start, end)` on the
//! listed days in the window's zone; a window may wrap midnight, and then the
//! day that counts is the day it opened. The engine runs on a moved clock with
//! a 22:00–02:00 Europe/Berlin window (21:00–01:00 UTC in December) open only
//! on the weekday of the rig's first day D:
//!
//! - started at 03:00 Berlin, a campaign sends nothing, however long the
//!   engine runs, until 22:00; then everything, with no API call, and the API
//!   showed `waiting_reason: send_window` with 22:00 Berlin as `next_send_at`;
//! - at 00:30 on D+1 (not a listed day, but the window opened on D) a new
//!   campaign sends at once;
//! - at 02:00:01 the window is shut: a new campaign waits a week, to D+7 22:00,
//!   and sends then.
//!
//! A table of cases checks the SQL functions all of this runs on
//! (`penguin_window_open`, `penguin_window_next`, V13) directly, including a
//! daylight-saving change.

use std::time::Duration;

use penguin_engine::store::due;
use serde_json::{Value, json};

use crate::campaign_daily_cap::{feeder_rounds, sent, start_campaign, waiting, warm_ip};
use crate::support::TestEnv;
use crate::support::limits::LimitsRig;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_window_across_midnight_sends_only_inside_it_and_resumes_by_itself() {
    let rig = LimitsRig::start(|c| c.limits.warm_daily_volume = 10_000).await;
    let ip = warm_ip(&rig).await;
    let midnight = rig.now();
    let at = |h: u64, s: u64| midnight + Duration::from_secs(h * 3600 + s);
    let day = DAYS[midnight.weekday().number_days_from_monday() as usize];
    let knobs = json!({
        "send_window": { "start": "22:00", "end": "02:00", "days": [day],
                         "timezone": "Europe/Berlin" },
    });

    // D 03:00 Berlin: shut. Nothing leaves, through the afternoon and up to a
    // second before the opening.
    rig.set_clock(at(2, 0));
    let first = start_campaign(&rig, ip, knobs.clone(), 5).await;
    feeder_rounds(&rig, 2).await;
    rig.settle(&sent(0), "before the window opens").await;
    assert_eq!(
        waiting(&rig, first).await,
        (json!("send_window"), Some(at(21, 0))),
        "waits for 22:00 Berlin"
    );
    // The due scan the Feeder sleeps on names the opening as the tenant's next
    // due time: it wakes then, without polling and without an API call.
    let partitions = rig.rig.config().node.partitions;
    let all: Vec<u32> = (0..partitions).collect();
    let scan = due::scan(&rig.rig.env.pg, partitions, &all, &[], rig.now())
        .await
        .unwrap();
    assert!(
        scan.due.is_empty(),
        "nothing is due while the window is shut"
    );
    assert_eq!(
        scan.next,
        Some((at(21, 0), rig.tenant)),
        "due at the opening"
    );
    rig.set_clock(at(20, 59 * 60 + 59));
    feeder_rounds(&rig, 2).await;
    rig.settle(&sent(0), "a second before the window opens")
        .await;

    // 22:00 Berlin: everything, without an API call.
    rig.set_clock(at(21, 1));
    rig.settle(&sent(5), "the window opened").await;

    // 00:30 Berlin on D+1: still D's window.
    rig.set_clock(at(23, 30 * 60));
    let second = start_campaign(&rig, ip, knobs.clone(), 3).await;
    rig.settle(&sent(8), "after midnight, inside the window")
        .await;
    assert_eq!(waiting(&rig, second).await, (Value::Null, None));

    // 02:00:01 Berlin: shut until D+7 22:00.
    rig.set_clock(at(25, 1));
    let third = start_campaign(&rig, ip, knobs, 4).await;
    feeder_rounds(&rig, 2).await;
    rig.settle(&sent(8), "the window closed at 02:00").await;
    let next_week = at(7 * 24 + 21, 0);
    assert_eq!(
        waiting(&rig, third).await,
        (json!("send_window"), Some(next_week))
    );
    rig.set_clock(next_week - Duration::from_secs(1));
    feeder_rounds(&rig, 2).await;
    rig.settle(&sent(8), "a second before next week's window")
        .await;
    rig.set_clock(next_week + Duration::from_secs(1));
    rig.settle(&sent(12), "next week's window").await;
    assert_eq!(rig.rig.sink.stats().duplicate_messages, 0);
    rig.rig.shutdown().await;
}

/// `(window, at, open, next)`: what `penguin_window_open(window, at)` and
/// `penguin_window_next(window, at)` must answer.
const CASES: [(&str, &str, bool, &str); 10] = [
    // Same-day window, UTC by default.
    (
        r#"{"start":"09:00","end":"17:00"}"#,
        "2026-12-09 08:59:59Z",
        false,
        "2026-12-09 09:00Z",
    ),
    (
        r#"{"start":"09:00","end":"17:00"}"#,
        "2026-12-09 09:00Z",
        true,
        "2026-12-09 09:00Z",
    ),
    (
        r#"{"start":"09:00","end":"17:00"}"#,
        "2026-12-09 17:00Z",
        false,
        "2026-12-10 09:00Z",
    ),
    // Weekdays only: Friday evening waits for Monday (2026-12-11 is a Friday).
    (
        r#"{"start":"09:00","end":"17:00","days":["mon","tue","wed","thu","fri"]}"#,
        "2026-12-11 17:30Z",
        false,
        "2026-12-14 09:00Z",
    ),
    // Wrapping in Berlin (UTC+1 in December): open from 21:00 UTC to 01:00 UTC.
    (
        r#"{"start":"22:00","end":"02:00","timezone":"Europe/Berlin"}"#,
        "2026-12-09 00:59Z",
        true,
        "2026-12-09 00:59Z",
    ),
    (
        r#"{"start":"22:00","end":"02:00","timezone":"Europe/Berlin"}"#,
        "2026-12-09 01:00Z",
        false,
        "2026-12-09 21:00Z",
    ),
    // The small hours belong to the day the window opened: Wednesday's window
    // runs into Thursday, Thursday's small hours after Tuesday do not.
    (
        r#"{"start":"22:00","end":"02:00","days":["wed"],"timezone":"Europe/Berlin"}"#,
        "2026-12-10 00:30Z",
        true,
        "2026-12-10 00:30Z",
    ),
    (
        r#"{"start":"22:00","end":"02:00","days":["wed"],"timezone":"Europe/Berlin"}"#,
        "2026-12-09 00:30Z",
        false,
        "2026-12-09 21:00Z",
    ),
    // Across the spring change (2027-03-28, Berlin goes from UTC+1 to UTC+2):
    // 09:00 local is 08:00 UTC the day before, 07:00 UTC on the day.
    (
        r#"{"start":"09:00","end":"10:00","timezone":"Europe/Berlin"}"#,
        "2027-03-27 09:00Z",
        false,
        "2027-03-28 07:00Z",
    ),
    // Far ahead of UTC: 08:00 in Tokyo is 23:00 UTC the day before.
    (
        r#"{"start":"08:00","end":"09:00","timezone":"Asia/Tokyo"}"#,
        "2026-12-09 12:00Z",
        false,
        "2026-12-09 23:00Z",
    ),
];

#[tokio::test]
async fn the_window_arithmetic_answers_every_case() {
    let env = TestEnv::start().await;
    for (window, at, open, next) in CASES {
        let rows = env
            .psql(&format!(
                "SELECT penguin_window_open('{window}'::jsonb, '{at}'),
                        penguin_window_next('{window}'::jsonb, '{at}') = '{next}'::timestamptz,
                        penguin_window_next('{window}'::jsonb, '{at}')::text"
            ))
            .await;
        let (got_open, same, got_next): (bool, bool, String) =
            (rows[0].get(0), rows[0].get(1), rows[0].get(2));
        assert_eq!(got_open, open, "open: {window} at {at}");
        assert!(same, "next: {window} at {at}: {got_next}, not {next}");
    }
}
