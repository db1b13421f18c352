//! The end-to-end harness: real Postgres and Redis per test, fast.
//!
//! [`TestEnv::start`] gives a test its own freshly migrated database and its own
//! empty redis-server, plus a [`Config`] pointing at both with short intervals
//! (see [`test_config`]). Costs, measured on 2 cores: the first `TestEnv` of the
//! binary also starts Postgres and migrates the template database; after that a
//! `TestEnv` is one `CREATE DATABASE … TEMPLATE` plus one redis-server start.
//!
//! - Postgres: one server per test binary (`pg_server`), or the server of
//!   `DATABASE_URL` when set. Each `TestEnv` gets database `test_<n>`.
//! - Redis: one redis-server per `TestEnv` (`redis_server`), on a unix socket;
//!   falls back to `REDIS_URL` (FLUSHDB, no restart) when redis-server is absent.
//! - Servers run under a watchdog (`process`): they die with their owner, and at
//!   the latest with the test process, however it ends.
//!
//! Never sleep for a fixed time in a scenario: poll with [`wait_for`].
//!
//! `E2E_LOG=<filter>` (a `tracing` env filter, e.g. `penguin_actors=debug`) prints
//! the engine's logs of every scenario to the test's output.

// Each scenario uses a different part of the harness.
#![allow(dead_code)]

pub mod api;
pub mod cluster;
pub mod deploy_metrics;
pub mod deploy_text;
pub mod dns_zone;
pub mod foreign_smtp;
pub mod health_probe;
pub mod limits;
pub mod node_process;
mod pg_server;
pub mod process;
pub mod quiet;
pub mod redis_cluster;
mod redis_server;
pub mod rig;
mod routes;
pub mod sites;
pub mod slow_upload;
pub mod tls_servers;
pub mod webhook_receiver;

use std::future::Future;
use std::time::{Duration, Instant};

use penguin_config::Config;

use self::pg_server::TestDatabase;
use self::redis_cluster::RedisCluster;
use self::redis_server::RedisServer;

/// Engine logs on the test's output when `E2E_LOG` is set (once per binary).
fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("E2E_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// The operator token of every test configuration: random per test process (a
/// node refuses published tokens), the same for every node the process starts.
pub fn admin_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(penguin_config::random_secret)
}

/// One test's world: a migrated database, an empty Redis, and a config for both.
pub struct TestEnv {
    pub config: Config,
    pub pg: deadpool_postgres::Pool,
    pub redis: penguin_engine::queue::RedisPool,
    redis_server: RedisBackend,
    database: TestDatabase,
}

/// The Redis of one test: one server, or a 3-master Redis Cluster.
enum RedisBackend {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl TestEnv {
    /// A fresh migrated database and a fresh Redis; `config.database.url` and
    /// `config.redis.url` point at them and `config.api.listen` and
    /// `config.public.listen` are `127.0.0.1:0`.
    pub async fn start() -> TestEnv {
        init_logs();
        let (database, redis_server) =
            tokio::join!(pg_server::test_database(), RedisServer::start());
        let config = test_config(&database.url, redis_server.url());
        TestEnv::with(config, database, RedisBackend::Single(redis_server))
    }

    /// [`TestEnv::start`] on a real 3-master Redis Cluster on loopback ports:
    /// `config.redis.cluster` lists its masters.
    pub async fn start_on_cluster() -> TestEnv {
        init_logs();
        let (database, cluster) = tokio::join!(pg_server::test_database(), RedisCluster::start());
        let seeds = cluster.seeds();
        let mut config = test_config(&database.url, &seeds[0]);
        config.redis.cluster = seeds;
        TestEnv::with(config, database, RedisBackend::Cluster(cluster))
    }

    fn with(config: Config, database: TestDatabase, redis_server: RedisBackend) -> TestEnv {
        let pg = penguin_engine::db::pg_pool(&config.database)
            .unwrap_or_else(|e| panic!("test Postgres pool: {e}"));
        let redis = penguin_engine::queue::redis_pool(&config.redis)
            .unwrap_or_else(|e| panic!("test Redis pool: {e}"));
        TestEnv {
            config,
            pg,
            redis,
            redis_server,
            database,
        }
    }

    /// The log of the Postgres server the harness started (`None` when
    /// `DATABASE_URL` names the server).
    pub fn postgres_log(&self) -> Option<std::path::PathBuf> {
        pg_server::server_log()
    }

    /// The name of this test's database.
    pub fn database_name(&self) -> &str {
        &self.database.name
    }

    /// Empties this test's Redis (FLUSHALL, on every master of a cluster;
    /// FLUSHDB on a shared `REDIS_URL`).
    pub async fn flush_redis(&self) {
        match &self.redis_server {
            RedisBackend::Single(server) => server.flush().await,
            RedisBackend::Cluster(cluster) => cluster.flush().await,
        }
    }

    /// Kills this test's redis-server by PID and starts a new, empty one at the
    /// same address (every master of a cluster, one after another). Pools
    /// reconnect on their next use.
    pub async fn restart_redis(&self) {
        match &self.redis_server {
            RedisBackend::Single(server) => server.restart().await,
            RedisBackend::Cluster(cluster) => cluster.restart_all().await,
        }
    }

    /// This test's Redis Cluster (panics on one server).
    pub fn redis_cluster(&self) -> &RedisCluster {
        match &self.redis_server {
            RedisBackend::Cluster(cluster) => cluster,
            RedisBackend::Single(_) => panic!("this TestEnv runs on one redis-server"),
        }
    }

    /// Runs one SQL statement on the test database and returns its rows.
    pub async fn psql(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        let client = self
            .pg
            .get()
            .await
            .unwrap_or_else(|e| panic!("psql: no connection: {e}"));
        client
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("psql `{sql}`: {e}"))
    }
}

/// The configuration of a test node: the given servers, fast timers, the API and
/// the public listener each on a free loopback port, [`admin_token`] and a random
/// tracking secret. No delivery routes: scenarios add the
/// route to their sink.
pub fn test_config(database_url: &str, redis_url: &str) -> Config {
    let mut config = Config::default();
    config.database.url = database_url.to_string();
    config.redis.url = redis_url.to_string();
    config.api.listen = "127.0.0.1:0".into();
    config.public.listen = "127.0.0.1:0".into();
    config.api.admin_token = admin_token().into();
    config.tracking.secret = penguin_config::random_secret();
    // Every scenario's client is 127.0.0.1, and the refusal matrices make
    // hundreds of failed authentications on purpose; `hostile_token_flood`
    // sets the failure budget it proves.
    config.api.auth_failures_burst = 10_000;
    config.node.id = "test-node-1".into();
    config.node.lease_ttl_ms = 3_000;
    config.node.heartbeat_ms = 500;
    config.queue.feed_idle_ms = 50;
    config.queue.reaper_interval_ms = 200;
    config.queue.inflight_deadline_ms = 3_000;
    config.queue.sending_timeout_ms = 120_000;
    config.delivery.attempt_timeout_ms = 60_000;
    // Sending domains: every rig can seal keys, so the scenario rigs register
    // (and trust) their From domains and their mail is DKIM-signed. Scenarios
    // about something else post campaigns from domains nobody registered; the
    // domain scenarios (`api_domains`, `dkim_signing`) turn the requirement on.
    config.secrets.master_key = Some(penguin_config::random_master_key());
    config.domains.require_verified = false;
    config
        .validate()
        .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
    config
}

/// Polls `probe` every 25 ms until it returns `Some`, and returns that value.
/// Panics naming `what` when `timeout` passes first (a hung probe included).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let probe = move || {
        let reading = probe();
        async move { reading.await.ok_or(()) }
    };
    match poll_until(timeout, probe).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// [`wait_for`] whose probe says what it saw when not yet done (`Err`): a
/// timeout panics with the last reading.
pub async fn wait_for_showing<T, S, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    S: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S>>,
{
    match poll_until(timeout, probe).await {
        Ok(value) => value,
        Err(last) => panic!("timed out after {timeout:?} waiting for {what}; last saw {last:?}"),
    }
}

/// Polls `probe` every 25 ms until it returns `Ok` and returns that value, or
/// the last reading (`None` when the probe never answered in time) once
/// `timeout` passed. The one polling loop of the harness: a test needing a
/// condition within a window uses this, never a sleep.
pub async fn poll_until<T, S, F, Fut>(timeout: Duration, mut probe: F) -> Result<T, Option<S>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, probe()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(seen)) => last = Some(seen),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
