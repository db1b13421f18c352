//! Per-IP allowances under real traffic (DESIGN.md §6, guarantee 3): when one IP
//! of a pool has used its hour, its jobs go to another IP that has allowance;
//! when every IP has, the jobs wait in Postgres until the next window — without
//! waking the engine — and neither a Redis FLUSHALL nor a restart at 23:59 gives
//! an IP its day back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::limits::{IpPlan, LimitsRig};
use crate::support::wait_for;

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn expect(pairs: &[(&str, u64)]) -> HashMap<IpAddr, u64> {
    pairs.iter().map(|(ip, n)| (addr(ip), *n)).collect()
}

/// Waits until `waiting` jobs of `campaign` are `pending` with `run_at >= at`
/// (waiting for the window) and none is queued or in SMTP; fails at once if the
/// IPs sent more of its jobs than the campaign's other jobs.
async fn wait_parked(rig: &LimitsRig, campaign: Uuid, waiting: i64, at: OffsetDateTime) {
    wait_for(
        &format!("{waiting} jobs waiting for {at}"),
        Duration::from_secs(30),
        || async {
            let rows = rig
                .rig
                .env
                .psql(&format!(
                    "SELECT count(*) FILTER (WHERE status = 'pending' AND run_at >= '{at}'),
                            count(*) FILTER (WHERE status IN ('queued', 'sending')),
                            count(*) FILTER (WHERE status = 'sent'), count(*)
                     FROM send_jobs WHERE campaign_id = '{campaign}'"
                ))
                .await;
            let (parked, busy): (i64, i64) = (rows[0].get(0), rows[0].get(1));
            let (sent, total): (i64, i64) = (rows[0].get(2), rows[0].get(3));
            assert!(
                sent <= total - waiting,
                "{sent} of the campaign's {total} jobs sent: beyond the allowance"
            );
            (parked == waiting && busy == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overflow_to_a_second_ip_then_all_wait_without_waking_the_engine() {
    // No idle polling at all: only due times and notifications may wake the feeder.
    let rig = LimitsRig::start(|c| c.queue.feed_idle_ms = 600_000).await;
    rig.schedule("tiny", &[48]).await; // 2 per hour over 24 active hours
    rig.schedule("small", &[120]).await; // 5 per hour
    let ip = |address, schedule| IpPlan {
        address,
        schedule: Some(schedule),
        timezone: "UTC",
        active_hours: (0, 24),
    };
    let a = rig.add_ip(&ip("127.0.0.2", "tiny")).await;
    let b = rig.add_ip(&ip("127.0.0.3", "small")).await;
    let hour0 = rig.now() + Duration::from_secs(1);
    rig.set_clock(hour0);

    // Six leads over an hour where A may send 2 and B 5: A's surplus overflows to B.
    let first = rig.start_campaign(&[a, b], 6).await;
    rig.settle(
        &expect(&[("127.0.0.2", 2), ("127.0.0.3", 4)]),
        "overflow from A to B",
    )
    .await;
    let done = rig
        .rig
        .env
        .psql(&format!(
            "SELECT count(*) FROM send_jobs WHERE campaign_id = '{first}' AND status = 'sent'"
        ))
        .await;
    assert_eq!(
        done[0].get::<_, i64>(0),
        6,
        "every lead sent within the hour"
    );

    // Forty more: B has one send left this hour, then every IP is used up.
    let second = rig.start_campaign(&[a, b], 40).await;
    rig.settle(
        &expect(&[("127.0.0.2", 2), ("127.0.0.3", 5)]),
        "B's last send",
    )
    .await;
    let next_hour = hour0 + Duration::from_secs(3600) - Duration::from_secs(1);
    wait_parked(&rig, second, 39, next_hour).await;

    // Waiting: the clock moves through the rest of the hour and real time passes;
    // nothing is due, so neither the feeder nor the tenant wakes up.
    let (feeder_before, pops_before) = rig.rig.node().engine().wakeups();
    for minutes in [10, 20, 30, 40, 50] {
        rig.set_clock(hour0 + Duration::from_secs(minutes * 60));
    }
    // An observation window, not synchronisation: idle actors must stay idle.
    tokio::time::sleep(Duration::from_millis(IDLE_OBSERVATION_MS)).await;
    let (feeder_after, pops_after) = rig.rig.node().engine().wakeups();
    assert!(
        feeder_after - feeder_before <= 1 && pops_after - pops_before <= 1,
        "waiting woke the feeder {} times and the tenant {} times",
        feeder_after - feeder_before,
        pops_after - pops_before
    );
    wait_parked(&rig, second, 39, next_hour).await;
    assert_eq!(
        rig.sent_by_ip(),
        expect(&[("127.0.0.2", 2), ("127.0.0.3", 5)])
    );

    // The next hour opens: both IPs send their quota again, and no more.
    rig.set_clock(hour0 + Duration::from_secs(3600));
    rig.settle(
        &expect(&[("127.0.0.2", 4), ("127.0.0.3", 10)]),
        "the next hour",
    )
    .await;
    wait_parked(
        &rig,
        second,
        32,
        hour0 + Duration::from_secs(2 * 3600) - Duration::from_secs(1),
    )
    .await;
    rig.rig.shutdown().await;
}

/// How long the waiting test watches idle actors (real time).
const IDLE_OBSERVATION_MS: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flush_and_a_restart_at_2359_do_not_reset_the_day() {
    let mut rig = LimitsRig::start(|_| {}).await;
    rig.schedule("steady", &[240]).await; // 10 per hour
    let ip = rig
        .add_ip(&IpPlan {
            address: "127.0.0.2",
            schedule: Some("steady"),
            timezone: "UTC",
            active_hours: (0, 24),
        })
        .await;
    let midnight = rig.now() + Duration::from_secs(86_400);
    rig.set_clock(midnight - Duration::from_secs(3600) + Duration::from_secs(1)); // 23:00:01
    let first = rig.start_campaign(&[ip], 30).await;
    rig.settle(&expect(&[("127.0.0.2", 10)]), "hour 23's quota")
        .await;
    wait_parked(&rig, first, 20, midnight).await;

    // 23:30: the node restarts (a fresh tenant actor knows nothing of the IP's
    // day) and a new campaign's jobs are due at once: the Redis counters say the
    // hour is used up, so they wait.
    rig.set_clock(midnight - Duration::from_secs(1800));
    rig.restart(false).await;
    let second = rig.start_campaign(&[ip], 5).await;
    wait_parked(&rig, second, 5, midnight).await;

    // 23:59: Redis loses everything and the node restarts again, jobs due: the
    // counters are rebuilt from Postgres, so the IP still has nothing left.
    rig.set_clock(midnight - Duration::from_secs(60));
    rig.restart(true).await;
    let third = rig.start_campaign(&[ip], 5).await;
    wait_parked(&rig, third, 5, midnight).await;
    assert_eq!(
        rig.sent_by_ip(),
        expect(&[("127.0.0.2", 10)]),
        "no overshoot"
    );

    // Midnight: a new day, and hour 0's quota only.
    rig.set_clock(midnight + Duration::from_secs(1));
    rig.settle(&expect(&[("127.0.0.2", 20)]), "hour 0 of the next day")
        .await;
    let stats = rig.rig.sink.stats();
    assert_eq!(stats.duplicate_messages, 0);
    rig.rig.shutdown().await;
}
