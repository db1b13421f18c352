//! The harness itself: isolated databases and Redis servers per test, a Redis
//! restart the pools survive, servers gone with their `TestEnv`, and `wait_for`
//! failing loudly at its deadline.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use crate::support::{TestEnv, wait_for};

async fn get(env: &TestEnv, key: &str) -> Option<String> {
    let mut conn = env.redis.get().await.expect("redis connection");
    conn.get(key).await.expect("GET")
}

async fn set(env: &TestEnv, key: &str, value: &str) {
    let mut conn = env.redis.get().await.expect("redis connection");
    let () = conn.set(key, value).await.expect("SET");
}

#[tokio::test]
async fn two_envs_are_migrated_and_isolated() {
    let started = Instant::now();
    let (a, b) = tokio::join!(TestEnv::start(), TestEnv::start());
    eprintln!("two TestEnvs (cold) started in {:?}", started.elapsed());
    let started = Instant::now();
    let c = TestEnv::start().await;
    eprintln!("one TestEnv (warm) started in {:?}", started.elapsed());

    assert_ne!(a.database_name(), b.database_name());
    assert_ne!(a.config.redis.url, b.config.redis.url);
    for env in [&a, &b, &c] {
        let rows = env
            .psql("SELECT count(*) FROM warmup_schedules WHERE builtin")
            .await;
        assert_eq!(rows[0].get::<_, i64>(0), 3, "{}", env.database_name());
        let rows = env.psql("SELECT current_database()").await;
        assert_eq!(rows[0].get::<_, String>(0), env.database_name());
    }

    // A row written in one database is not in the other.
    a.psql("INSERT INTO warmup_schedules (name, daily_volumes) VALUES ('only-a', '{1,2}')")
        .await;
    let rows = b
        .psql("SELECT count(*) FROM warmup_schedules WHERE name = 'only-a'")
        .await;
    assert_eq!(rows[0].get::<_, i64>(0), 0);

    set(&a, "smoke", "in-a").await;
    assert_eq!(get(&a, "smoke").await.as_deref(), Some("in-a"));
    assert_eq!(get(&b, "smoke").await, None);

    b.flush_redis().await;
    assert_eq!(get(&a, "smoke").await.as_deref(), Some("in-a"));
    a.flush_redis().await;
    assert_eq!(get(&a, "smoke").await, None);
}

#[tokio::test]
async fn restart_redis_empties_it_and_pools_reconnect() {
    let env = TestEnv::start().await;
    set(&env, "before", "1").await;

    let started = Instant::now();
    env.restart_redis().await;
    eprintln!("restart_redis took {:?}", started.elapsed());

    // Pooled connections to the old server are discarded on their next checkout.
    let value = wait_for(
        "Redis reachable through the pool",
        Duration::from_secs(5),
        || async {
            let mut conn = env.redis.get().await.ok()?;
            let value: Option<String> = conn.get("before").await.ok()?;
            Some(value)
        },
    )
    .await;
    assert_eq!(value, None, "a restarted Redis starts empty");
    set(&env, "after", "2").await;
    assert_eq!(get(&env, "after").await.as_deref(), Some("2"));
}

#[tokio::test]
async fn redis_server_stops_with_its_env() {
    let env = TestEnv::start().await;
    let Some(socket) = env.config.redis.url.strip_prefix("redis+unix://") else {
        return; // a shared REDIS_URL: nothing of ours to stop
    };
    let socket = PathBuf::from(socket);
    assert!(socket.exists(), "{} should exist", socket.display());
    drop(env);
    assert!(
        !socket.exists(),
        "{} should be gone with its TestEnv",
        socket.display()
    );
}

#[tokio::test]
#[should_panic(expected = "timed out after 200ms waiting for the impossible")]
async fn wait_for_panics_at_its_deadline() {
    wait_for("the impossible", Duration::from_millis(200), || async {
        None::<()>
    })
    .await;
}

#[tokio::test]
async fn wait_for_returns_the_first_some() {
    let mut calls = 0;
    let value = wait_for("the third call", Duration::from_secs(5), || {
        calls += 1;
        let ready = calls >= 3;
        async move { ready.then_some(calls) }
    })
    .await;
    assert_eq!(value, 3);
}
