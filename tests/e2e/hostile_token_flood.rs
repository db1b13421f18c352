//! Hostile input, random-token floods: one client presenting thousands of
//! random bearer tokens gets 401 until its address has spent
//! `api.auth_failures_burst`, then 429 `rate_limited` with `Retry-After` — and
//! those refusals never reach Postgres (while the test holds the API's only
//! connection, every one still comes back at once, where a token lookup would
//! wait `database.acquire_timeout_ms` and answer 503). The limiter's tables do
//! not grow per token: one entry for the flooding address, budgets only for the
//! tokens that authenticated. A legitimate token from another address keeps
//! working throughout.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::support::TestEnv;
use crate::support::api::ApiServer;

/// A client whose connections leave from `source` (127.0.0.x needs no setup).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().ok())
        .build()
        .expect("an HTTP client")
}

/// A tenant-looking token nobody issued.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("pt_{hex}")
}

/// `GET /v1/suppressions` with `token`: status, Retry-After, error code, time taken.
async fn probe(
    client: &reqwest::Client,
    base: &str,
    token: &str,
) -> (u16, Option<u64>, String, Duration) {
    let started = Instant::now();
    let response = client
        .get(format!("{base}/v1/suppressions"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the API answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    (status, retry_after, code, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_token_floods_are_throttled_per_address_before_any_lookup() {
    let env = TestEnv::start().await;
    // The API's own pool of one connection, which the test can take away.
    let mut database = env.config.database.clone();
    database.max_connections = 1;
    database.acquire_timeout_ms = 2_000;
    let api_pg = penguin_engine::db::pg_pool(&database).expect("API pool");
    let mut config = env.config.clone();
    // One failure back a minute: however long the flood takes on a loaded
    // machine, no refill lets one of its requests through to the lookup.
    config.api.auth_failures_per_minute = 1;
    config.api.auth_failures_burst = 20;
    let server = ApiServer::start_on(config, api_pg.clone(), env.redis.clone()).await;
    let base = server.api.base.clone();
    let (_, token) = server.api.create_tenant("acme").await; // from 127.0.0.1

    // The burst: each random token is looked up and refused.
    let attacker = client_from("127.0.0.3");
    for _ in 0..20 {
        let (status, _, code, _) = probe(&attacker, &base, &random_token()).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"));
    }

    // Past it, 2,000 more (32 at a time) while no connection is free: each is
    // refused at once, so none asked Postgres.
    let held = api_pg.get().await.expect("the API's only connection");
    let started = Instant::now();
    let answers: Vec<_> = futures::stream::iter(0..2_000)
        .map(|_| {
            let (attacker, base) = (&attacker, &base);
            async move { probe(attacker, base, &random_token()).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let flood_took = started.elapsed();
    let slowest = answers.iter().map(|a| a.3).max().unwrap_or_default();
    for (status, retry_after, code, _) in &answers {
        assert_eq!((*status, code.as_str()), (429, "rate_limited"));
        assert!(
            retry_after.is_some_and(|s| (1..=60).contains(&s)),
            "Retry-After: {retry_after:?}"
        );
    }
    assert!(
        slowest < Duration::from_millis(1_500),
        "a refusal waited {slowest:?}: it must not wait for a connection"
    );
    // The admin token is refused too from there: nothing is compared.
    let admin = probe(&attacker, &base, crate::support::admin_token()).await;
    assert_eq!((admin.0, admin.2.as_str()), (429, "rate_limited"));
    drop(held);
    println!(
        "2,000 throttled requests in {flood_took:?} (slowest {slowest:?}); \
         tables: {} address(es), {} token budget(s)",
        server.limits.auth_failures.len(),
        server.limits.requests.len()
    );

    // A legitimate token from another address works, and from the client's own.
    for source in ["127.0.0.4", "127.0.0.1"] {
        let (status, _, code, _) = probe(&client_from(source), &base, &token).await;
        assert_eq!(status, 200, "from {source}: {code}");
    }
    // Memory: one failure entry (the attacker) and two budgets (the admin and
    // the one real token), whatever the number of tokens tried.
    assert_eq!(server.limits.auth_failures.len(), 1);
    assert_eq!(server.limits.requests.len(), 2);
}
