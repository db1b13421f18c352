//! Thirty simulated days of warm-up under a backlog far larger than the
//! allowances (DESIGN.md §6, guarantee 3). Three IPs on different schedules, in
//! three timezones, each active 09:00–15:00 local. The manual clock steps through
//! every active hour; after each step the sink must hold exactly what the hours
//! so far allow, per source IP — so no hour exceeds its quota, every IP-local day
//! sends exactly its allowance (100 % used, never more), and each fully used,
//! healthy day advances the IP one warm-up day.
//!
//! The expected figures are computed here, from README's rule (day `d` carries
//! the schedule's volume for warm-up day `d + 1`, the last value being the
//! ceiling; active hour `h` of `n` carries `floor(D·(h+1)/n) − floor(D·h/n)`),
//! not by the engine's quota code; what each hour and day sent is counted at
//! the sink.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

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

    /// Its allowance on local day `day` (every day is fully used and healthy, so
    /// it advances daily): its schedule's volume for warm-up day `day + 1`, held at
    /// the last value (the ceiling) once past the schedule's end.
    fn daily(&self, day: i64) -> u64 {
        let last = self.volumes.len() - 1;
        u64::from(self.volumes[(day as usize).min(last)])
    }

    /// What local hour `hour` of local day `day` may carry: active hour `h` of
    /// `n` gets `floor(D·(h+1)/n) − floor(D·h/n)`, an inactive hour nothing.
    fn quota(&self, day: i64, hour: u8) -> u64 {
        if !(ACTIVE.0..ACTIVE.1).contains(&hour) {
            return 0;
        }
        let (d, n, h) = (
            self.daily(day),
            u64::from(ACTIVE.1 - ACTIVE.0),
            u64::from(hour - ACTIVE.0),
        );
        d * (h + 1) / n - d * h / n
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
        .map(|s| (0..DAYS).map(|d| s.daily(d)).sum::<u64>())
        .sum();
    let backlog = 10_000;
    assert!(
        backlog as u64 > 2 * total_allowance,
        "the backlog dwarfs the allowances"
    );

    let start = rig.now(); // 00:00 UTC of the first simulated day
    rig.start_campaign(&ids, backlog).await;
    let mut expected: HashMap<IpAddr, u64> = senders.iter().map(|s| (s.address, 0)).collect();
    // What the sink had received per source IP at the previous step.
    let mut before: HashMap<IpAddr, u64> = HashMap::new();
    for day in 0..DAYS {
        for utc_hour in 0..24 {
            let at = start + Duration::from_secs((day * 86_400 + utc_hour * 3600) as u64 + 1);
            let mut active = false;
            for sender in &senders {
                let (local_day, hour) = sender.local(start, at);
                *expected.get_mut(&sender.address).unwrap() += sender.quota(local_day, hour);
                active |= (ACTIVE.0..ACTIVE.1).contains(&hour);
            }
            if !active {
                continue; // no IP sends this hour: no need to stop here
            }
            rig.set_clock(at);
            let what = format!("day {day}, {utc_hour:02}:00 UTC");
            rig.settle(&expected, &what).await;
            // What arrived since the last step was sent in this hour (the one
            // before settled in full): count it at the sink, per IP and local hour.
            let received = rig.sent_by_ip();
            for sender in &mut senders {
                let (local_day, hour) = sender.local(start, at);
                let now = received.get(&sender.address).copied().unwrap_or(0);
                let then = before.get(&sender.address).copied().unwrap_or(0);
                assert_eq!(
                    now - then,
                    sender.quota(local_day, hour),
                    "{what}: {} in its local hour {hour:02} of day {local_day}",
                    sender.address
                );
                *sender.per_day.entry(local_day).or_default() += now - then;
            }
            before = received;
        }
    }

    // Each IP-local day sent exactly its allowance, and the ramps advanced daily.
    for sender in &senders {
        for day in 0..DAYS - 1 {
            assert_eq!(
                sender.per_day.get(&day).copied().unwrap_or(0),
                sender.daily(day),
                "{} on local day {day}, as received by the sink",
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
