//! Token buckets for the two budgets [`crate::auth`] enforces, both in this
//! process (with several nodes behind a balancer each node grants its own):
//!
//! - **Requests per authenticated token** ([`Budget`]: the admin, or a tenant
//!   token by its id): `api.rate_limit_burst` deep, refilled at
//!   `api.rate_limit_per_minute`. A bucket exists only for a token that
//!   authenticated, so random tokens never grow this table; a request over
//!   budget answers 429 `rate_limited` with `Retry-After` before its handler runs.
//! - **Failed authentications per client address** (an IPv4 address, or an
//!   IPv6 /64, which one host usually holds whole): `api.auth_failures_burst`
//!   deep, refilled at `api.auth_failures_per_minute`. While an address has none
//!   left, every request of it that needs a token answers 429 before any token
//!   is looked up, so a flood of guesses costs Postgres nothing.
//!
//! Memory is bounded: a table holds at most its cap of keys
//! ([`MAX_TOKEN_BUCKETS`], [`MAX_ADDRESS_BUCKETS`]). When full, full (idle)
//! buckets are swept — which forgets nothing a caller could gain from — at most
//! once a second; keys that still find no room share one overflow bucket, so
//! callers beyond the cap are throttled together rather than not at all.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::import_guard::ImportSlots;

/// Authenticated tokens whose budgets are kept before idle ones are swept
/// (about 64 bytes each: 6 MiB at most). Only real tokens get here, so this
/// is reached only by that many tokens busy within one refill period.
pub const MAX_TOKEN_BUCKETS: usize = 100_000;
/// Client addresses whose failures are remembered before idle ones are swept
/// (about 64 bytes each: 4 MiB at most).
pub const MAX_ADDRESS_BUCKETS: usize = 65_536;
/// The shortest time between two sweeps of a full table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Whose request budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    Admin,
    /// A tenant token, by its id (never by the token text).
    Token(Uuid),
}

/// The key of an address's failure budget: IPv4 as is, IPv6 by its /64
/// (an IPv4-mapped IPv6 address counts as the IPv4 one).
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// Token buckets by key, bounded (see the module doc).
pub struct TokenBuckets<K> {
    inner: Mutex<Table<K>>,
}

struct Table<K> {
    per_second: f64,
    burst: f64,
    cap: usize,
    map: HashMap<K, Bucket>,
    /// Shared by the keys that found the table full.
    overflow: Bucket,
    last_sweep: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// The fill at `now`.
    fn level(&self, rate: f64, burst: f64, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }
}

impl<K: Hash + Eq + Copy> TokenBuckets<K> {
    /// `per_minute` = 0 turns the limit off; at most `cap` keys are kept.
    pub fn new(per_minute: u32, burst: u32, cap: usize) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBuckets {
            inner: Mutex::new(Table {
                per_second: f64::from(per_minute) / 60.0,
                burst,
                cap: cap.max(1),
                map: HashMap::new(),
                overflow: Bucket {
                    tokens: burst,
                    at: Instant::now(),
                },
                last_sweep: None,
            }),
        }
    }

    /// Whether the limit is on.
    pub fn enabled(&self) -> bool {
        self.table().per_second > 0.0
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table<K>> {
        // A panic while holding the lock leaves consistent numbers behind.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one from `key`'s budget at `now`; `Err(seconds)` until one is
    /// back when it is spent.
    pub fn take(&self, key: K, now: Instant) -> Result<(), u64> {
        self.table().spend(key, now, true)
    }

    /// Whether `key` has one left at `now`, without taking it (and without
    /// making room for an unknown key); `Err(seconds)` until one is back.
    pub fn check(&self, key: K, now: Instant) -> Result<(), u64> {
        let table = self.table();
        if table.per_second <= 0.0 {
            return Ok(());
        }
        let bucket = match table.map.get(&key) {
            Some(bucket) => bucket,
            None if table.map.len() >= table.cap => &table.overflow,
            None => return Ok(()),
        };
        table.wait(bucket.level(table.per_second, table.burst, now))
    }

    /// Takes one from `key`'s budget at `now` even when it is spent (then it
    /// stays empty): a failure has happened and is counted.
    pub fn charge(&self, key: K, now: Instant) {
        let _ = self.table().spend(key, now, false);
    }

    /// How many keys have a bucket of their own.
    pub fn len(&self) -> usize {
        self.table().map.len()
    }

    /// Whether no key has a bucket of its own.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Copy> Table<K> {
    /// Seconds until a bucket at `level` holds one again.
    fn wait(&self, level: f64) -> Result<(), u64> {
        if level >= 1.0 {
            Ok(())
        } else {
            Err(((1.0 - level) / self.per_second).ceil().max(1.0) as u64)
        }
    }

    fn spend(&mut self, key: K, now: Instant, only_if_left: bool) -> Result<(), u64> {
        let (rate, burst) = (self.per_second, self.burst);
        if rate <= 0.0 {
            return Ok(());
        }
        if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            self.sweep(now);
        }
        let room = self.map.len() < self.cap;
        let bucket = match self.map.get_mut(&key) {
            Some(bucket) => bucket,
            None if room => self.map.entry(key).or_insert(Bucket {
                tokens: burst,
                at: now,
            }),
            None => &mut self.overflow,
        };
        let level = bucket.level(rate, burst, now);
        bucket.at = now;
        if level >= 1.0 {
            bucket.tokens = level - 1.0;
            return Ok(());
        }
        bucket.tokens = if only_if_left { level } else { 0.0 };
        self.wait(level)
    }

    /// Drops full buckets, at most once per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        let (rate, burst) = (self.per_second, self.burst);
        self.map
            .retain(|_, bucket| bucket.level(rate, burst, now) < burst);
    }
}

/// The API's in-process limits, built once per node from `[api]` and shared
/// by every request through [`crate::AppState`]: both budgets, and the lead
/// imports' slots.
pub struct Limits {
    pub requests: TokenBuckets<Budget>,
    pub auth_failures: TokenBuckets<IpAddr>,
    pub imports: Arc<ImportSlots>,
}

impl Limits {
    pub fn new(config: &penguin_config::ApiConfig) -> Self {
        Limits {
            imports: Arc::new(ImportSlots::new(config.max_concurrent_imports_per_tenant)),
            requests: TokenBuckets::new(
                config.rate_limit_per_minute,
                config.rate_limit_burst,
                MAX_TOKEN_BUCKETS,
            ),
            auth_failures: TokenBuckets::new(
                config.auth_failures_per_minute,
                config.auth_failures_burst,
                MAX_ADDRESS_BUCKETS,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn key(i: u32) -> [u8; 4] {
        i.to_le_bytes()
    }

    #[test]
    fn a_bucket_grants_its_burst_then_refills_at_the_rate() {
        let limiter = TokenBuckets::new(60, 3, 100); // one per second
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(1, start), Ok(()));
        }
        assert_eq!(limiter.take(1, start), Err(1));
        assert_eq!(limiter.take(2, start), Ok(()), "keys are separate");
        assert_eq!(limiter.take(1, start + Duration::from_millis(999)), Err(1));
        assert_eq!(
            limiter.take(1, start + Duration::from_millis(1_100)),
            Ok(())
        );
        // Refill stops at the burst.
        let later = start + Duration::from_secs(3_600);
        for _ in 0..3 {
            assert_eq!(limiter.take(1, later), Ok(()));
        }
        assert!(limiter.take(1, later).is_err());
    }

    #[test]
    fn retry_after_counts_whole_seconds_until_one_is_back() {
        let limiter = TokenBuckets::new(15, 1, 100); // one per four seconds
        let start = Instant::now();
        assert_eq!(limiter.take(7, start), Ok(()));
        assert_eq!(limiter.take(7, start), Err(4));
        assert_eq!(limiter.take(7, start + Duration::from_secs(2)), Err(2));
    }

    #[test]
    fn zero_per_minute_is_off() {
        let limiter = TokenBuckets::new(0, 1, 100);
        let now = Instant::now();
        for _ in 0..1_000 {
            assert_eq!(limiter.take(3, now), Ok(()));
            limiter.charge(3, now);
            assert_eq!(limiter.check(3, now), Ok(()));
        }
        assert!(limiter.is_empty());
    }

    #[test]
    fn check_only_looks_and_charge_counts_failures() {
        let failures = TokenBuckets::new(60, 2, 100);
        let now = Instant::now();
        assert_eq!(failures.check(1, now), Ok(()));
        assert!(failures.is_empty(), "a look creates no bucket");
        failures.charge(1, now);
        assert_eq!(failures.check(1, now), Ok(()));
        failures.charge(1, now);
        assert_eq!(failures.check(1, now), Err(1));
        // More failures keep it empty, never below: one second brings one back.
        failures.charge(1, now);
        assert_eq!(failures.check(1, now + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn a_full_table_sweeps_idle_buckets() {
        let limiter = TokenBuckets::new(60, 2, 1_000);
        let start = Instant::now();
        for i in 0..1_000 {
            limiter.take(key(i), start).unwrap();
        }
        // A minute later every bucket is full again: a new key sweeps them.
        limiter
            .take(key(5_000), start + Duration::from_secs(60))
            .unwrap();
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn keys_past_the_cap_share_one_overflow_bucket() {
        let failures = TokenBuckets::new(60, 3, 10);
        let now = Instant::now();
        for i in 0..10 {
            failures.charge(key(i), now);
        }
        // The table is full of busy buckets: 10,000 more keys add nothing...
        for i in 10..10_010 {
            failures.charge(key(i), now);
        }
        assert_eq!(failures.len(), 10);
        // ...and are throttled together; the keys inside keep their own.
        assert!(failures.check(key(20_000), now).is_err());
        assert_eq!(failures.check(key(0), now), Ok(()));
    }

    #[test]
    fn ipv6_hosts_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert_eq!(address_key(mapped), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(address_key(v4), v4);
        assert_ne!(address_key(IpAddr::V6(Ipv6Addr::LOCALHOST)), v4);
    }
}
