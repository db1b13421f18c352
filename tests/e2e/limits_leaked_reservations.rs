//! Reservations no claim counted cost the hour nothing, and a give-back from
//! before a correction changes nothing. A warm IP may send 10 an hour (60 a day
//! over 09:00–15:00 UTC). Before its campaign starts, Redis holds the whole of
//! hour 09 reserved — what a node killed between its reservations and its
//! claims' commit leaves behind — while Postgres (`ip_hourly_usage`) counts
//! nothing. The Ip actor's first reservation compares the two and resets Redis
//! to Postgres' totals: the sink receives exactly hour 09's 10, not 0. The
//! killed node's late give-back (its epoch is gone) does not lower the
//! counters, and hour 10 sends exactly its 10 more.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use deadpool_redis::redis;
use penguin_engine::queue::counters::{IpCounters, Slot, day_key};

use crate::support::limits::{IpPlan, LimitsRig};

const IP: &str = "127.0.0.2";
/// One active hour's share: 60 a day over 6 active hours.
const SHARE: u64 = 10;
/// The epoch of the killed node's reservations.
const STALE_EPOCH: i64 = 777;

fn sent(n: u64) -> HashMap<IpAddr, u64> {
    HashMap::from([(IP.parse().unwrap(), n)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_no_claim_counted_are_returned_from_postgres() {
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
    rig.set_clock(hour(9) + Duration::from_secs(1));

    // A killed node reserved all of hour 09 and never claimed.
    let key = day_key(rig.tenant, ip, midnight.date());
    let mut redis = rig.rig.env.redis.get().await.expect("redis");
    let () = redis::cmd("HSET")
        .arg(&key)
        .arg(&["day", "10", "h09", "10", "epoch"])
        .arg(STALE_EPOCH)
        .query_async(&mut redis)
        .await
        .expect("write the leaked reservations");

    let campaign = rig.start_campaign(&[ip], 30).await;
    rig.settle(&sent(SHARE), "hour 09 despite the leak").await;
    let pool = rig.rig.env.redis.clone();
    let field = |name: &'static str| {
        let (key, pool) = (key.clone(), pool.clone());
        async move {
            let mut redis = pool.get().await.expect("redis");
            let value: i64 = redis::cmd("HGET")
                .arg(&key)
                .arg(name)
                .query_async(&mut redis)
                .await
                .expect("read the counters");
            value
        }
    };
    assert_eq!(
        field("h09").await,
        SHARE as i64,
        "Redis agrees with Postgres"
    );
    assert_ne!(
        field("epoch").await,
        STALE_EPOCH,
        "the reset began a new epoch"
    );
    let usage = rig
        .rig
        .env
        .psql(&format!(
            "SELECT coalesce(sum(reserved), 0)::int8 FROM ip_hourly_usage WHERE ip_id = '{ip}'"
        ))
        .await;
    assert_eq!(usage[0].get::<_, i64>(0), SHARE as i64);

    // The killed node wakes and gives its reservations back: nothing changes.
    let slot = Slot {
        tenant: rig.tenant,
        ip,
        day: midnight.date(),
        hour: 9,
    };
    IpCounters::new(rig.rig.env.redis.clone())
        .give_back(&slot, SHARE as u32, Some(STALE_EPOCH))
        .await
        .expect("late give-back");
    assert_eq!(
        (field("day").await, field("h09").await),
        (SHARE as i64, SHARE as i64),
        "a give-back from before the reset is dropped"
    );

    // Hour 10: its share, no more.
    rig.set_clock(hour(10) + Duration::from_secs(1));
    rig.settle(&sent(2 * SHARE), "hour 10").await;
    let left = rig
        .rig
        .env
        .psql(&format!(
            "SELECT count(*) FROM send_jobs WHERE campaign_id = '{campaign}' AND status <> 'sent'"
        ))
        .await;
    assert_eq!(left[0].get::<_, i64>(0), 30 - 2 * SHARE as i64);
    assert_eq!(rig.rig.sink.stats().duplicate_messages, 0);
    rig.rig.shutdown().await;
}
