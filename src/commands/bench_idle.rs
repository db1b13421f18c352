//! `penguin bench --idle`: what a node costs with nothing to send. Creates
//! `--tenants` tenants and `--ips` IPs through the API (no campaigns), lets
//! the node go quiet (at most `--settle-secs`: the tail of the setup's work
//! must not count), then measures over `--idle-secs`:
//!
//! - CPU of this process (the node, its API and the idle sink all run here) as
//!   a percentage of one core, from `/proc/self/stat` utime + stime;
//! - Redis commands/s: `INFO`'s `total_commands_processed` over the window,
//!   less the bench's own `INFO`, and Redis' own CPU (`used_cpu_*`);
//! - Postgres commits/s: `pg_stat_database.xact_commit` of this database
//!   (Postgres publishes it with up to a second's delay), less our own query;
//! - RSS now (`VmRSS`) and at its peak (`VmHWM`), with the fresh node's RSS
//!   from before the setup for comparison.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::bench::{BenchArgs, BenchEnv, load_average};
use super::bench_setup;
use super::bench_stats::{self, cpu_percent_of_core, mib, rate_per_sec};
use crate::client::ApiClient;

/// One reading of every counter the idle figures come from.
struct Reading {
    at: Instant,
    cpu_ticks: u64,
    redis_commands: u64,
    redis_cpu_secs: f64,
    pg_commits: u64,
}

pub async fn run(env: &BenchEnv, args: &BenchArgs) -> anyhow::Result<()> {
    let fresh_rss = bench_stats::own_rss_kib().0;
    let client = ApiClient::new(&env.node.api_url());
    bench_setup::create_fleet(
        &client,
        &env.config.api.admin_token,
        "idle",
        args.tenants,
        args.ip_count(),
        args.setup_concurrency,
    )
    .await?;
    let settled = settle(env, args.settle_secs).await?;
    eprintln!("measuring for {} s …", args.idle_secs);
    // One connection each for both readings: a pooled Redis connection is
    // checked with a PING when taken, which would count as the node's.
    let mut redis = env.node.redis.get().await.context("redis connection")?;
    let pg = env.node.pg.get().await.context("postgres connection")?;
    let start = read(&mut redis, &pg).await?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let end = read(&mut redis, &pg).await?;
    drop((redis, pg));
    let secs = end.at.duration_since(start.at).as_secs_f64();
    let (rss, peak) = bench_stats::own_rss_kib();
    let sent = env.sink.stats().messages_accepted;

    // Our own `INFO` at the start is counted by the end reading; the end's is not.
    let redis_rate = rate_per_sec(start.redis_commands, end.redis_commands, 1, secs);
    let redis_cpu = (end.redis_cpu_secs - start.redis_cpu_secs).max(0.0) / secs * 100.0;
    let pg_rate = rate_per_sec(start.pg_commits, end.pg_commits, 1, secs);
    let cpu = cpu_percent_of_core(end.cpu_ticks.saturating_sub(start.cpu_ticks), secs);
    println!(
        "penguin bench --idle: {} tenants, {} IPs, nothing to send; {settled}, measured {secs:.1} s",
        args.tenants,
        args.ip_count(),
    );
    println!("| what | value |");
    println!("|---|---|");
    println!("| CPU of this process (node + API + idle sink) | {cpu:.1} % of one core |");
    println!("| Redis commands/s | {redis_rate:.0} |");
    println!("| Redis server CPU | {redis_cpu:.1} % of one core |");
    println!("| Postgres commits/s (this database) | {pg_rate:.1} |");
    println!("| RSS at the end (VmRSS) | {} |", mib(rss));
    println!("| peak RSS (VmHWM, setup included) | {} |", mib(peak));
    println!(
        "| RSS of the fresh node, before the setup | {} |",
        mib(fresh_rss)
    );
    println!("| messages sent meanwhile | {sent} |");
    println!("load after the measurement: {}", load_average());
    anyhow::ensure!(sent == 0, "the idle node sent {sent} messages");
    Ok(())
}

/// Most Redis commands and Postgres commits per second a settled node may show
/// (a heartbeat is about 20 commands; the bench's own readings add a few).
const QUIET_REDIS_PER_SEC: f64 = 100.0;
const QUIET_PG_PER_SEC: f64 = 20.0;

/// Waits until the node is quiet — two consecutive one-second readings under
/// [`QUIET_REDIS_PER_SEC`] and [`QUIET_PG_PER_SEC`] — or `max_secs` have
/// passed, whichever is first, so the measurement does not count the tail of
/// the setup (the work its notifications started). Says which it was.
pub(super) async fn settle(env: &BenchEnv, max_secs: u64) -> anyhow::Result<String> {
    eprintln!("settling: waiting for a quiet node, at most {max_secs} s …");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(max_secs);
    let mut redis = env.node.redis.get().await.context("redis connection")?;
    let pg = env.node.pg.get().await.context("postgres connection")?;
    let mut last = read(&mut redis, &pg).await?;
    let mut quiet_in_a_row = 0;
    while Instant::now() < deadline {
        // The reading window: one second between two readings.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = read(&mut redis, &pg).await?;
        let secs = now.at.duration_since(last.at).as_secs_f64();
        let redis_rate = rate_per_sec(last.redis_commands, now.redis_commands, 1, secs);
        let pg_rate = rate_per_sec(last.pg_commits, now.pg_commits, 1, secs);
        let quiet = redis_rate < QUIET_REDIS_PER_SEC && pg_rate < QUIET_PG_PER_SEC;
        quiet_in_a_row = if quiet { quiet_in_a_row + 1 } else { 0 };
        last = now;
        if quiet_in_a_row >= 2 {
            return Ok(format!(
                "settled in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(format!("not quiet after {max_secs} s (measured anyway)"))
}

async fn read(
    redis: &mut penguin_engine::queue::RedisConn,
    pg: &deadpool_postgres::Object,
) -> anyhow::Result<Reading> {
    let info: String = redis::cmd("INFO")
        .query_async(redis)
        .await
        .context("redis INFO")?;
    let row = pg
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .context("pg_stat_database")?;
    let field = |name: &str| bench_stats::parse_info_field(&info, name);
    Ok(Reading {
        at: Instant::now(),
        cpu_ticks: bench_stats::own_cpu_ticks(),
        redis_commands: field("total_commands_processed")
            .context("INFO without total_commands_processed")? as u64,
        redis_cpu_secs: field("used_cpu_sys").unwrap_or(0.0)
            + field("used_cpu_user").unwrap_or(0.0),
        pg_commits: row.get::<_, i64>(0).max(0) as u64,
    })
}
