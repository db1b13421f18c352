//! TLS to Postgres and Redis (issue 20): the engine's own pools, built from a
//! `DATABASE_URL` with libpq's `sslmode`/`sslrootcert` and a `rediss://` URL
//! with `[redis] ca_file`, against servers that accept TLS only, with a
//! certificate for `localhost` signed by a CA made for the test.
//!
//! What must hold: `verify-full` connects (and migrates) when the CA is trusted
//! and the name matches, and refuses an untrusted CA or another host name;
//! `verify-ca` skips only the name; `require` encrypts without a check; a
//! plain connection is refused by the server. Redis: trusted CA connects,
//! another CA or none (the system store) is refused.

use std::time::Duration;

use penguin_config::{DatabaseConfig, RedisConfig};
use penguin_engine::{db, queue};

use crate::support::tls_servers::{TlsPostgres, TlsRedis};
use crate::support::wait_for_showing;

fn pg_config(url: String) -> DatabaseConfig {
    DatabaseConfig {
        url,
        max_connections: 2,
        acquire_timeout_ms: 5_000,
        ..DatabaseConfig::default()
    }
}

/// Whether the pool's connection to `url` runs over TLS (`pg_stat_ssl`), or
/// why it failed.
async fn pg_ssl(url: String) -> Result<bool, String> {
    let pool = db::pg_pool(&pg_config(url)).map_err(|e| e.to_string())?;
    let client = pool.get().await.map_err(|e| format!("{e:?}"))?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_checks_what_sslmode_asks() {
    let server = TlsPostgres::start();
    let ca = server.pki.ca_file.display().to_string();
    let other = server.pki.other_ca_file.display().to_string();
    let full = server.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    // The server is up once a checked connection goes through.
    let encrypted = wait_for_showing("the TLS Postgres", Duration::from_secs(30), || {
        let url = full.clone();
        async move { pg_ssl(url).await }
    })
    .await;
    assert!(encrypted, "verify-full must run over TLS");

    // The real schema goes over it too.
    let pool = db::pg_pool(&pg_config(full.clone())).unwrap();
    let applied = db::migrate(&pool).await.expect("migrate over TLS");
    assert!(!applied.is_empty(), "a fresh database gets every migration");

    let wrong_host = server.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let err = pg_ssl(wrong_host)
        .await
        .expect_err("the certificate names localhost only");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let ca_only = server.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"));
    assert_eq!(pg_ssl(ca_only).await, Ok(true), "verify-ca skips the name");

    let untrusted = server.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    );
    let err = pg_ssl(untrusted).await.expect_err("signed by another CA");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let require = server.url("127.0.0.1", "sslmode=require");
    assert_eq!(
        pg_ssl(require).await,
        Ok(true),
        "require encrypts, unchecked"
    );

    let plain = server.url("localhost", "sslmode=disable");
    let err = pg_ssl(plain).await.expect_err("the server takes TLS only");
    assert!(
        err.contains("no encryption") || err.contains("pg_hba"),
        "{err}\n{}",
        server.log_tail()
    );
}

/// PING through the engine's Redis pool, or why it failed.
async fn redis_ping(config: RedisConfig) -> Result<String, String> {
    let pool = queue::redis_pool(&config).map_err(|e| e.to_string())?;
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    deadpool_redis::redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_trusts_the_configured_ca_only() {
    let server = TlsRedis::start();
    let trusted = RedisConfig {
        url: server.url("localhost"),
        ca_file: Some(server.pki.ca_file.clone()),
        ..RedisConfig::default()
    };
    let pong = wait_for_showing("the TLS Redis", Duration::from_secs(30), || {
        let config = trusted.clone();
        async move { redis_ping(config).await }
    })
    .await;
    assert_eq!(pong, "PONG");

    let other_ca = RedisConfig {
        ca_file: Some(server.pki.other_ca_file.clone()),
        ..trusted.clone()
    };
    let err = redis_ping(other_ca)
        .await
        .expect_err("signed by another CA");
    assert!(!err.is_empty(), "{}", server.log_tail());

    let system_store = RedisConfig {
        ca_file: None,
        ..trusted.clone()
    };
    redis_ping(system_store)
        .await
        .expect_err("the test CA is in no system store");

    let plain = RedisConfig {
        url: format!("redis://localhost:{}", server.port),
        ca_file: None,
        ..RedisConfig::default()
    };
    redis_ping(plain)
        .await
        .expect_err("the port speaks TLS only");
}
