//! Thirty simulated days of warm-up under a backlog far larger than the
//! allowances (DESIGN.md §6, guarantee 3). Three IPs on different schedules, in
//! three timezones, each active 09:00–15:00 local. The manual clock steps through
//! every active hour; after each step the sink must hold exactly what the hours
//! so far allow, per source IP — so no hour exceeds its quota, every IP-local day
//! sends exactly its allowance (100 % used, never more), and each fully used,
//! healthy day advances the IP one warm-up day.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use penguin_engine::allowance::{DayPlan, schedule_volume};
use time::OffsetDateTime;

use crate::support::limits::{IpPlan, LimitsRig};

const DAYS: i64 = 30;
const ACTIVE: (u8, u8) = (9, 15);

struct Sender {
    address: IpAddr,
    volumes: Vec<u32>,
    /// UTC offset of its timezone in December, in hours.
    offset: i64,
    /// Messages sent per IP-local day, as counted at the sink.
    per_day: HashMap<i64, u64>,
}

impl Sender {
    /// The IP-local day index (0 = the first simulated day) and hour of `at`.
    fn local(&self, start: OffsetDateTime, at: OffsetDateTime) -> (i64, u8) {
        let secs = (at - start).whole_seconds() + self.offset * 3600;
        (
            secs.div_euclid(86_400),
            (secs.rem_euclid(86_400) / 3600) as u8,
        )
    }

    /// Its allowance on local day `day`: warm-up day `day + 1` of its schedule.
    fn daily(&self, day: i64) -> u32 {
        let volumes: Vec<i32> = self.volumes.iter().map(|v| *v as i32).collect();
        schedule_volume(&volumes, day as i32 + 1)
    }

    fn quota(&self, day: i64, hour: u8) -> u64 {
        let plan = DayPlan {
            daily: Some(self.daily(day)),
            active_start: ACTIVE.0,
            active_end: ACTIVE.1,
            hourly_cap: None,
        };
        plan.hour_quota(hour).unwrap_or(0).into()
    }
}

/// A geometric ramp of `days` values from `first` to `last`.
fn ramp(first: f64, last: f64, days: usize) -> Vec<u32> {
    (0..days)
        .map(|d| (first * (last / first).powf(d as f64 / (days - 1) as f64)).round() as u32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_days_send_exactly_each_days_allowance_hour_by_hour() {
    let rig = LimitsRig::start(|_| {}).await;
    let plans = [
        ("127.0.0.2", "ramp-utc", "UTC", 0, ramp(12.0, 60.0, 30)),
        (
            "127.0.0.3",
            "ramp-berlin",
            "Europe/Berlin",
            1,
            ramp(24.0, 72.0, 14),
        ),
        (
            "127.0.0.4",
            "ramp-tokyo",
            "Asia/Tokyo",
            9,
            ramp(18.0, 66.0, 21),
        ),
    ];
    let mut senders = Vec::new();
    let mut ids = Vec::new();
    for (address, schedule, timezone, offset, volumes) in plans {
        rig.schedule(schedule, &volumes).await;
        ids.push(
            rig.add_ip(&IpPlan {
                address,
                schedule: Some(schedule),
                timezone,
                active_hours: ACTIVE,
            })
            .await,
        );
        senders.push(Sender {
            address: address.parse().unwrap(),
            volumes,
            offset,
            per_day: HashMap::new(),
        });
    }
    let total_allowance: u64 = senders
        .iter()
        .map(|s| (0..DAYS).map(|d| u64::from(s.daily(d))).sum::<u64>())
        .sum();
    let backlog = 10_000;
    assert!(
        backlog as u64 > 2 * total_allowance,
        "the backlog dwarfs the allowances"
    );

    let start = rig.now(); // 00:00 UTC of the first simulated day
    rig.start_campaign(&ids, backlog).await;
    let mut expected: HashMap<IpAddr, u64> = senders.iter().map(|s| (s.address, 0)).collect();
    for day in 0..DAYS {
        for utc_hour in 0..24 {
            let at = start + Duration::from_secs((day * 86_400 + utc_hour * 3600) as u64 + 1);
            let mut active = false;
            for sender in &mut senders {
                let (local_day, hour) = sender.local(start, at);
                let quota = sender.quota(local_day, hour);
                if (ACTIVE.0..ACTIVE.1).contains(&hour) {
                    active = true;
                }
                *expected.get_mut(&sender.address).unwrap() += quota;
                *sender.per_day.entry(local_day).or_default() += quota;
            }
            if !active {
                continue; // no IP sends this hour: no need to stop here
            }
            rig.set_clock(at);
            rig.settle(&expected, &format!("day {day}, {utc_hour:02}:00 UTC"))
                .await;
        }
    }

    // Each IP-local day sent exactly its allowance, and the ramps advanced daily.
    for sender in &senders {
        for day in 0..DAYS - 1 {
            assert_eq!(
                sender.per_day.get(&day).copied().unwrap_or(0),
                u64::from(sender.daily(day)),
                "{} on local day {day}",
                sender.address
            );
        }
    }
    let rows = rig
        .rig
        .env
        .psql(
            "SELECT host(i.address), count(*) FILTER (WHERE h.decision = 'advance')::int8,
                    count(*) FILTER (WHERE h.decision IN ('step_back', 'rewarm'))::int8
             FROM smtp_ips i JOIN warmup_history h ON h.ip_id = i.id
             GROUP BY i.address ORDER BY i.address",
        )
        .await;
    let advances: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // Days judged so far: 29 (the 30th ends after the last step); a ramp stops
    // advancing at its ceiling.
    assert_eq!(
        advances,
        vec![
            ("127.0.0.2".to_string(), 29, 0),
            ("127.0.0.3".to_string(), 13, 0),
            ("127.0.0.4".to_string(), 20, 0),
        ]
    );
    assert_eq!(rig.rig.sink.stats().duplicate_messages, 0);
    rig.rig.shutdown().await;
}
