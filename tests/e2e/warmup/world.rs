//! A warm-up world for the `warmup` scenarios: a rig on a [`ManualClock`], one
//! tenant, the custom schedule [`RAMP`], and SQL helpers to add IPs with their
//! history already in place (usage, outcomes, earlier verdicts) and to read the
//! verdicts back. Days are IP-local and relative to the clock's start (`:now`).

use std::time::Duration;

use penguin_engine::clock::{Clock, ManualClock};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::support::rig::Rig;
use crate::support::wait_for;

/// A four-day ramp: 10, 20, 40, then 80 a day.
pub const RAMP: &str = "e2e-ramp";

/// How long a verdict or a resume may take once its time has come.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct World {
    pub rig: Rig,
    pub clock: ManualClock,
    /// The clock's time at start; `:now` in seeded SQL.
    pub now: OffsetDateTime,
    pub tenant: Uuid,
}

/// One `warmup_history` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub day: Date,
    pub decision: String,
    pub from_day: i32,
    pub to_day: i32,
    pub sent: i64,
    pub allowance: Option<i64>,
    pub reason: String,
    pub decided_at: OffsetDateTime,
}

/// An IP to insert; `created` is an SQL expression (`:now` allowed).
pub struct NewIp<'a> {
    pub address: &'a str,
    pub schedule: Option<&'a str>,
    pub warmup_day: i32,
    pub timezone: &'a str,
    pub rate_factor: f32,
    pub created: &'a str,
}

impl Default for NewIp<'_> {
    fn default() -> Self {
        Self {
            address: "127.0.0.2",
            schedule: Some(RAMP),
            warmup_day: 1,
            timezone: "UTC",
            rate_factor: 1.0,
            created: ":now",
        }
    }
}

/// What an IP sent on one of its local days, `days_ago` before the clock's start.
pub struct Day {
    pub days_ago: i32,
    pub reserved: i32,
    pub sent: i64,
    pub bounced: i64,
}

impl Day {
    /// A day that reserved `n` and delivered all of it.
    pub fn clean(days_ago: i32, n: i32) -> Day {
        Day {
            days_ago,
            reserved: n,
            sent: n.into(),
            bounced: 0,
        }
    }
}

impl World {
    /// A rig on a manual clock with the tenant and [`RAMP`] in place.
    pub async fn start() -> World {
        let (rig, clock) = Rig::start_with_clock(|_| {}).await;
        let world = World {
            now: clock.now(),
            rig,
            clock,
            tenant: Uuid::now_v7(),
        };
        world
            .run(&format!(
                "INSERT INTO warmup_schedules (name, daily_volumes) VALUES ('{RAMP}', '{{10,20,40,80}}');
                 INSERT INTO tenants (id, name) VALUES ('{}', 'warm-up');",
                world.tenant
            ))
            .await;
        world
    }

    /// The clock's start as an SQL literal.
    fn now_sql(&self) -> String {
        format!("'{}'::timestamptz", self.now.format(&Rfc3339).unwrap())
    }

    /// Runs `sql` (statements separated by `;`, `:now` = the clock's start) in
    /// one transaction, so the engine sees all of it or nothing.
    pub async fn run(&self, sql: &str) {
        let sql = sql.replace(":now", &self.now_sql());
        let client = self.rig.env.pg.get().await.unwrap();
        client
            .batch_execute(&format!("BEGIN; {sql}; COMMIT;"))
            .await
            .unwrap_or_else(|e| panic!("seeding `{sql}`: {e}"));
    }

    /// Inserts an IP with its past `days` (and `extra` SQL) in one transaction.
    pub async fn add_ip(&self, ip: NewIp<'_>, days: &[Day], extra: &str) -> Uuid {
        let id = Uuid::now_v7();
        let (t, tz) = (self.tenant, ip.timezone);
        let schedule = ip
            .schedule
            .map_or("NULL".to_string(), |name| format!("'{name}'"));
        let mut sql = format!(
            "INSERT INTO smtp_ips (tenant_id, id, address, helo_name, warmup_schedule,
                 warmup_day, timezone, rate_factor, created_at)
             VALUES ('{t}', '{id}', '{}', 'mail.e2e.test', {schedule}, {}, '{tz}', {}, {})",
            ip.address, ip.warmup_day, ip.rate_factor, ip.created
        );
        for day in days {
            let n = day.days_ago;
            let local = format!("((:now AT TIME ZONE '{tz}')::date - {n})");
            sql.push_str(&format!(
                "; INSERT INTO ip_hourly_usage (tenant_id, ip_id, hour, day, reserved)
                   VALUES ('{t}', '{id}', :now - interval '{n} days', {local}, {})
                 ; INSERT INTO ip_daily_stats (tenant_id, ip_id, day, sent, bounced)
                   VALUES ('{t}', '{id}', {local}, {}, {})",
                day.reserved, day.sent, day.bounced
            ));
        }
        if !extra.is_empty() {
            sql.push_str("; ");
            sql.push_str(&extra.replace(":ip", &format!("'{id}'")));
        }
        self.run(&sql).await;
        id
    }

    /// The local date in `tz` `days_ago` before the clock's start.
    pub async fn local_day(&self, tz: &str, days_ago: i32) -> Date {
        let rows = self
            .rig
            .env
            .psql(&format!(
                "SELECT ({} AT TIME ZONE '{tz}')::date - {days_ago}",
                self.now_sql()
            ))
            .await;
        rows[0].get(0)
    }

    /// The end of the local day in `tz` that holds the clock's start.
    pub async fn local_midnight(&self, tz: &str) -> OffsetDateTime {
        let rows = self
            .rig
            .env
            .psql(&format!(
                "SELECT (({} AT TIME ZONE '{tz}')::date + 1)::timestamp AT TIME ZONE '{tz}'",
                self.now_sql()
            ))
            .await;
        rows[0].get(0)
    }

    /// Moves the engine's clock to just after `at`.
    pub fn pass(&self, at: OffsetDateTime) {
        self.clock.set(at + Duration::from_secs(1));
    }

    /// Every verdict on `ip`, oldest day first.
    pub async fn verdicts(&self, ip: Uuid) -> Vec<Verdict> {
        self.rig
            .env
            .psql(&format!(
                "SELECT day, decision, from_day, to_day, sent, allowance, reason, decided_at
                 FROM warmup_history WHERE ip_id = '{ip}' ORDER BY day"
            ))
            .await
            .iter()
            .map(|r| Verdict {
                day: r.get(0),
                decision: r.get(1),
                from_day: r.get(2),
                to_day: r.get(3),
                sent: r.get(4),
                allowance: r.get(5),
                reason: r.get(6),
                decided_at: r.get(7),
            })
            .collect()
    }

    /// Waits for the verdict on `day` of `ip`.
    pub async fn wait_verdict(&self, ip: Uuid, day: Date) -> Verdict {
        wait_for(&format!("the verdict on {day}"), WAIT, || async {
            self.verdicts(ip).await.into_iter().find(|v| v.day == day)
        })
        .await
    }

    /// `(warmup_day, rate_factor, status)` of `ip`.
    pub async fn ip_state(&self, ip: Uuid) -> (i32, f32, String) {
        let rows = self
            .rig
            .env
            .psql(&format!(
                "SELECT warmup_day, rate_factor, status FROM smtp_ips WHERE id = '{ip}'"
            ))
            .await;
        (rows[0].get(0), rows[0].get(1), rows[0].get(2))
    }
}
