//! Per-token request budgets: a token bucket per bearer token (the admin's
//! included), `api.rate_limit_burst` deep and refilled at
//! `api.rate_limit_per_minute`. A request over budget answers 429 `rate_limited`
//! with `Retry-After` before any handler runs, so it changes nothing. Requests
//! without a bearer token (the public routes) are not counted here.
//!
//! Buckets live in this process: with several nodes behind a balancer each node
//! grants its own budget. Tokens are keyed by their sha256, never kept in clear.
//! The table is bounded: past [`MAX_BUCKETS`] entries, full (idle) buckets are
//! dropped, which forgets nothing a caller could gain from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::RETRY_AFTER;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{bearer_token, token_hash};
use crate::error::AppError;

/// Buckets kept before idle ones are swept.
pub const MAX_BUCKETS: usize = 10_000;

/// The budgets of every token seen by this process.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Mutex<Buckets>>,
}

struct Buckets {
    per_second: f64,
    burst: f64,
    map: HashMap<[u8; 32], Bucket>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_minute` = 0 turns the limit off.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        RateLimiter {
            inner: Arc::new(Mutex::new(Buckets {
                per_second: f64::from(per_minute) / 60.0,
                burst: f64::from(burst.max(1)),
                map: HashMap::new(),
            })),
        }
    }

    fn enabled(&self) -> bool {
        self.inner.lock().expect("rate limiter lock").per_second > 0.0
    }

    /// Takes one request from `key`'s budget at `now`; `Err(seconds)` until the
    /// next request is allowed when the budget is spent.
    pub fn take(&self, key: [u8; 32], now: Instant) -> Result<(), u64> {
        let mut buckets = self.inner.lock().expect("rate limiter lock");
        let (rate, burst) = (buckets.per_second, buckets.burst);
        if rate <= 0.0 {
            return Ok(());
        }
        if buckets.map.len() >= MAX_BUCKETS && !buckets.map.contains_key(&key) {
            buckets
                .map
                .retain(|_, bucket| level(bucket, rate, burst, now) < burst);
        }
        let bucket = buckets.map.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens = level(bucket, rate, burst, now);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// A bucket's fill at `now`.
fn level(bucket: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

/// Middleware: counts the request against its bearer token's budget.
pub async fn limit(State(limiter): State<RateLimiter>, req: Request, next: Next) -> Response {
    if !limiter.enabled() {
        return next.run(req).await;
    }
    let token = bearer_token(req.headers()).ok();
    if let Some(token) = token
        && let Err(retry_after) = limiter.take(token_hash(token), Instant::now())
    {
        let mut response = AppError::rate_limited(retry_after).into_response();
        if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return response;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_grants_its_burst_then_refills_at_the_rate() {
        let limiter = RateLimiter::new(60, 3); // one per second
        let start = Instant::now();
        let key = [1; 32];
        for _ in 0..3 {
            assert_eq!(limiter.take(key, start), Ok(()));
        }
        assert_eq!(limiter.take(key, start), Err(1));
        assert_eq!(limiter.take([2; 32], start), Ok(()), "tokens are separate");
        assert_eq!(
            limiter.take(key, start + Duration::from_millis(999)),
            Err(1)
        );
        assert_eq!(
            limiter.take(key, start + Duration::from_millis(1_100)),
            Ok(())
        );
        // Refill stops at the burst.
        let later = start + Duration::from_secs(3_600);
        for _ in 0..3 {
            assert_eq!(limiter.take(key, later), Ok(()));
        }
        assert!(limiter.take(key, later).is_err());
    }

    #[test]
    fn retry_after_counts_whole_seconds_until_one_request_is_back() {
        let limiter = RateLimiter::new(15, 1); // one per four seconds
        let start = Instant::now();
        assert_eq!(limiter.take([7; 32], start), Ok(()));
        assert_eq!(limiter.take([7; 32], start), Err(4));
        assert_eq!(
            limiter.take([7; 32], start + Duration::from_secs(2)),
            Err(2)
        );
    }

    #[test]
    fn zero_per_minute_is_off() {
        let limiter = RateLimiter::new(0, 1);
        let now = Instant::now();
        for _ in 0..1_000 {
            assert_eq!(limiter.take([3; 32], now), Ok(()));
        }
    }

    #[test]
    fn the_table_stays_bounded_by_dropping_idle_buckets() {
        let limiter = RateLimiter::new(60, 2);
        let start = Instant::now();
        for i in 0..MAX_BUCKETS as u32 {
            let mut key = [0; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            limiter.take(key, start).unwrap();
        }
        // A minute later every bucket is full again: a new token sweeps them.
        limiter
            .take([9; 32], start + Duration::from_secs(60))
            .unwrap();
        assert_eq!(limiter.inner.lock().unwrap().map.len(), 1);
    }
}
