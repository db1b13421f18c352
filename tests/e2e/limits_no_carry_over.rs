//! Unused hours do not carry over (README, Limits). A warm IP may send 60 a day
//! over its six active hours, 09:00–15:00 UTC: 10 per hour. It uses 4 of hour
//! 09, nothing of hour 10 (the clock passes through it with the engine running
//! and nothing to send), then in hour 11 a campaign offers far more than an
//! hour's share: the sink receives exactly hour 11's 10 — not the 6 left of hour
//! 09 nor the 10 of hour 10 on top — and the rest waits for 12:00 (in Postgres,
//! or in the tenant's Redis window, which it does not pop while its only IP is
//! used up), when exactly 10 more leave.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::limits::{IpPlan, LimitsRig};
use crate::support::wait_for;

const IP: &str = "127.0.0.2";
/// One active hour's share: 60 a day over 6 active hours.
const SHARE: u64 = 10;

/// Consecutive polls (25 ms apart) the final state of an hour must hold.
const QUIET_POLLS: u32 = 20;

fn sent(n: u64) -> HashMap<IpAddr, u64> {
    HashMap::from([(IP.parse().unwrap(), n)])
}

/// The feeder rounds the node has run so far.
fn feeder_rounds(rig: &LimitsRig) -> u64 {
    rig.rig.node().engine().wakeups().0
}

/// Waits until the hour is decided for `campaign`: exactly `sent` of its jobs
/// sent, none in SMTP, every other one waiting for `next` (pending in Postgres)
/// or left in the Redis window; and that this holds over [`QUIET_POLLS`]
/// consecutive polls during which the feeder ran at least twice. Fails at once
/// when more than `sent` were sent.
async fn wait_hour_used(rig: &LimitsRig, campaign: Uuid, sent: i64, next: OffsetDateTime) {
    // Consecutive polls that saw the final state, and the feeder's rounds at the first.
    let (quiet, rounds) = (Cell::new(0), Cell::new(0));
    wait_for(
        &format!("{sent} jobs sent, the rest waiting for {next}, and a quiet period"),
        Duration::from_secs(30),
        || async {
            let rows = rig
                .rig
                .env
                .psql(&format!(
                    "SELECT count(*) FILTER (WHERE status = 'sent'),
                            count(*) FILTER (WHERE status = 'pending' AND run_at >= '{next}'),
                            count(*) FILTER (WHERE status = 'queued'),
                            count(*)
                     FROM send_jobs WHERE campaign_id = '{campaign}'"
                ))
                .await;
            let (done, parked, queued, total): (i64, i64, i64, i64) = (
                rows[0].get(0),
                rows[0].get(1),
                rows[0].get(2),
                rows[0].get(3),
            );
            assert!(
                done <= sent,
                "{done} of the campaign's jobs sent, more than {sent}: an unused hour carried over"
            );
            if done == sent && parked + queued == total - sent {
                if quiet.get() == 0 {
                    rounds.set(feeder_rounds(rig));
                }
                quiet.set(quiet.get() + 1);
            } else {
                quiet.set(0);
            }
            (quiet.get() >= QUIET_POLLS && feeder_rounds(rig) >= rounds.get() + 2).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_hour_left_unused_adds_nothing_to_the_next() {
    let rig = LimitsRig::start(|c| c.limits.warm_daily_volume = 60).await;
    let ip = rig
        .add_ip(&IpPlan {
            address: IP,
            schedule: None,
            timezone: "UTC",
            active_hours: (9, 15),
        })
        .await;
    let midnight = rig.now();
    let hour = |h: u64| midnight + Duration::from_secs(h * 3600);

    // Hour 09: a small campaign uses 4 of the 10.
    rig.set_clock(hour(9) + Duration::from_secs(1));
    let small = rig.start_campaign(&[ip], 4).await;
    wait_hour_used(&rig, small, 4, hour(10)).await;
    assert_eq!(rig.sent_by_ip(), sent(4), "4 of hour 09's 10");

    // Hour 10: nothing to send. The feeder runs twice on the moved clock (the
    // engine is live through the hour), and nothing leaves.
    rig.set_clock(hour(10) + Duration::from_secs(1));
    let rounds = feeder_rounds(&rig);
    wait_for(
        "two feeder rounds in hour 10",
        Duration::from_secs(10),
        || async { (feeder_rounds(&rig) >= rounds + 2).then_some(()) },
    )
    .await;
    assert_eq!(rig.sent_by_ip(), sent(4), "nothing offered in hour 10");

    // Hour 11: 100 leads, ten times the share. Exactly the share leaves; the
    // other 90 wait for 12:00.
    rig.set_clock(hour(11) + Duration::from_secs(1));
    let big = rig.start_campaign(&[ip], 100).await;
    wait_hour_used(&rig, big, SHARE as i64, hour(12)).await;
    assert_eq!(
        rig.sent_by_ip(),
        sent(4 + SHARE),
        "hour 11 sends its own share, nothing of hours 09 and 10"
    );

    // Hour 12: its share again, no more.
    rig.set_clock(hour(12) + Duration::from_secs(1));
    wait_hour_used(&rig, big, 2 * SHARE as i64, hour(13)).await;
    assert_eq!(rig.sent_by_ip(), sent(4 + 2 * SHARE), "hour 12's share");
    assert_eq!(rig.rig.sink.stats().duplicate_messages, 0);
    rig.rig.shutdown().await;
}
