//! Per-IP send counters for the current IP-local day and hour (DESIGN.md §3): one
//! Redis hash per IP and day, `day` plus one field per local hour, reserved
//! atomically against the day's and the hour's limits by a Lua script.
//!
//! Redis is never the only copy: every reservation that turns into claimed jobs is
//! also written to Postgres (`ip_hourly_usage`) in the claim's transaction, and a
//! missing hash (Redis emptied or restarted) is rebuilt from there with
//! [`IpCounters::reset`] before the next reservation — so a wipe never resets a cap.
//!
//! Redis can also drift from Postgres: a node killed between its reservation and
//! its claim's commit leaves sends reserved that no claim will ever count. The
//! owner corrects the hash from Postgres with [`IpCounters::reset`], which gives it
//! a new `epoch`: reservations are given back only to the epoch that made them,
//! so a late give-back from before a reset (a paused node waking up) can never
//! take the counters below what Postgres knows was sent.

use super::RedisPool;
use deadpool_redis::redis::{self, Script};
use time::Date;
use uuid::Uuid;

use super::QueueError;

/// Counters expire this long after they were last seeded (a day has at most 25 h).
const TTL_SECS: i64 = 3 * 86_400;

/// What a reservation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// `granted` sends were granted (possibly 0: a limit is reached); the day's
    /// and the hour's totals after the grant, and the counters' epoch.
    Granted {
        granted: u32,
        day: i64,
        hour: i64,
        epoch: i64,
    },
    /// The day's counters are missing: seed them from Postgres, then retry.
    Missing,
}

#[derive(Clone)]
pub struct IpCounters {
    pool: RedisPool,
    reserve_script: Script,
    give_back_script: Script,
}

/// One IP's counters in one local hour of one local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub tenant: Uuid,
    pub ip: Uuid,
    pub day: Date,
    /// 0..=23
    pub hour: u8,
}

impl Slot {
    fn key(&self) -> String {
        day_key(self.tenant, self.ip, self.day)
    }

    fn field(&self) -> String {
        hour_field(self.hour)
    }
}

/// The counter hash of one IP for one IP-local day.
pub fn day_key(tenant: Uuid, ip: Uuid, day: Date) -> String {
    format!("ipc:{{t:{tenant}}}:{ip}:{day}")
}

fn hour_field(hour: u8) -> String {
    format!("h{hour:02}")
}

impl IpCounters {
    pub fn new(pool: RedisPool) -> Self {
        Self {
            pool,
            reserve_script: Script::new(include_str!("reserve.lua")),
            give_back_script: Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 1
                    and (ARGV[3] == '' or redis.call('HGET', KEYS[1], 'epoch') == ARGV[3]) then
                   redis.call('HINCRBY', KEYS[1], 'day', ARGV[2])
                   redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
                 end
                 return 0",
            ),
        }
    }

    /// Reserves up to `wanted` sends in local `hour` of `day`, keeping the day's
    /// total within `day_limit` and the hour's within `hour_limit` (`None` = no
    /// limit).
    pub async fn reserve(
        &self,
        slot: &Slot,
        wanted: u32,
        day_limit: Option<u32>,
        hour_limit: Option<u32>,
    ) -> Result<Reserved, QueueError> {
        let limit = |l: Option<u32>| l.map_or(-1, i64::from);
        let mut conn = self.pool.get().await?;
        let (granted, day, hour, epoch): (i64, i64, i64, i64) = self
            .reserve_script
            .key(slot.key())
            .arg(slot.field())
            .arg(wanted)
            .arg(limit(day_limit))
            .arg(limit(hour_limit))
            .invoke_async(&mut conn)
            .await?;
        Ok(if granted < 0 {
            Reserved::Missing
        } else {
            Reserved::Granted {
                granted: granted as u32,
                day,
                hour,
                epoch,
            }
        })
    }

    /// Writes the day's and the hour's totals from Postgres' and starts a new
    /// epoch, whether the counters are missing (Redis emptied or restarted) or
    /// disagree: reservations not yet claimed are forgotten (their give-backs
    /// will not apply). Only the IP's owner calls this, between its own claims.
    pub async fn reset(
        &self,
        slot: &Slot,
        day_total: i64,
        hour_total: i64,
    ) -> Result<(), QueueError> {
        let key = slot.key();
        let mut conn = self.pool.get().await?;
        let _: () = redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("day".to_string(), day_total),
                    (slot.field(), hour_total),
                    ("epoch".to_string(), new_epoch()),
                ],
            )
            .ignore()
            .expire(&key, TTL_SECS)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Returns `n` reserved sends that will not happen. `epoch`: the epoch of
    /// the reservation when it was never claimed (a reset since then already
    /// forgot it, so it is not given back twice); `None` for a claimed send
    /// released before SMTP (Postgres counted it, and so does any reset). A
    /// missing hash is left missing.
    pub async fn give_back(
        &self,
        slot: &Slot,
        n: u32,
        epoch: Option<i64>,
    ) -> Result<(), QueueError> {
        if n == 0 {
            return Ok(());
        }
        let key = slot.key();
        let n = -i64::from(n);
        let epoch = epoch.map(|e| e.to_string()).unwrap_or_default();
        let mut conn = self.pool.get().await?;
        let _: i64 = self
            .give_back_script
            .key(key)
            .arg(slot.field())
            .arg(n)
            .arg(epoch)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// A fresh counters epoch: random, positive, never 0 (0 is "no epoch" in
/// [`Reserved::Granted`] for hashes written before epochs existed), and below
/// 2^52 so that Lua's numbers carry it exactly.
fn new_epoch() -> i64 {
    rand::random_range(1..1_i64 << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_tenant_hash_tag_and_the_day() {
        let key = day_key(
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            Date::from_calendar_date(2026, time::Month::December, 1).unwrap(),
        );
        assert!(key.starts_with("ipc:{t:00000000-0000-0000-0000-000000000001}:"));
        assert!(key.ends_with(":2026-12-01"));
        assert_eq!(hour_field(7), "h07");
    }
}
