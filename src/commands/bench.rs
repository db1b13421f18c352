//! `penguin bench`: end-to-end throughput. Sends N messages (default 100,000 of
//! about 10 KB) over `--tenants` tenants (default 10, up to 10,000) with
//! `--ips` IPs dealt round-robin over them (default one each: 127.0.0.2, …)
//! and 20 recipient domains through the whole engine to the loopback sink, and
//! reports messages/s, p50/p99 pick-up latency (job due → SMTP accepted) and
//! peak RSS.
//!
//! In the same run, a raw SMTP blast from this process to the same sink gives
//! the ceiling ([`super::bench_ceiling`], at most `--ceiling-connections`
//! connections at once); the engine/ceiling ratio is what the engine costs.
//!
//! Other modes, one per run: `--import-leads N` ([`super::bench_import`]),
//! `--idle` ([`super::bench_idle`]), `--hot-lane` ([`super::bench_hot`]) and
//! `--jobs-waiting N` ([`super::bench_waiting`]); `--events-history N` adds a
//! year of other tenants' events under the throughput run
//! ([`super::bench_history`]). Every mode drives the node
//! through the control API and watches the in-process sink.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use penguin_config::{Config, Route};
use penguin_engine::sink::{Sink, SinkConfig, SinkHandle};

use super::{bench_ceiling, bench_setup, bench_stats};
use crate::node::{Node, NodeOptions};
use crate::scenario::{Scenario, ScenarioSpec, SetupOptions};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// TOML configuration file (environment variables override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Messages in total (throughput; the bulk of --hot-lane).
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Tenants, 1 to 10,000.
    #[arg(long, default_value_t = 10)]
    pub tenants: usize,
    /// IPs (127.0.0.2, 127.0.0.3, …, 127.0.1.2, …), dealt round-robin over the
    /// tenants, 1 to 10,000 [default: one per tenant]. Sending modes need at
    /// least one per tenant.
    #[arg(long)]
    pub ips: Option<usize>,
    /// Approximate message size in bytes.
    #[arg(long, default_value_t = 10_000)]
    pub size: usize,
    /// Recipient domains the leads are spread over.
    #[arg(long, default_value_t = 20)]
    pub domains: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 1_800)]
    pub timeout_secs: u64,
    /// The ceiling blast opens at most this many SMTP connections at once.
    #[arg(long, default_value_t = 64)]
    pub ceiling_connections: usize,
    /// API requests the setup makes at once (creating tenants, IPs, campaigns).
    #[arg(long, default_value_t = 16)]
    pub setup_concurrency: usize,
    /// Measure lead import instead: post this many leads as one CSV body.
    #[arg(long)]
    pub import_leads: Option<usize>,
    /// Idle mode: create the tenants and IPs, send nothing, and measure this
    /// process's CPU, Redis commands/s, Postgres commits/s and RSS.
    #[arg(long)]
    pub idle: bool,
    /// Idle mode: seconds measured (after --settle-secs).
    #[arg(long, default_value_t = 60)]
    pub idle_secs: u64,
    /// Longest wait for the node to go quiet before measuring (idle,
    /// jobs-waiting): measuring starts after two quiet seconds in a row.
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,
    /// Hot-lane mode: bulk campaigns (priority 200) saturate the IPs while
    /// urgent leads (a running priority-10 campaign of tenant 1, same IPs) are
    /// added one per request; reports lead accepted → SMTP 250 latency.
    #[arg(long)]
    pub hot_lane: bool,
    /// Hot-lane mode: urgent leads trickled in.
    #[arg(long, default_value_t = 200)]
    pub hot_leads: usize,
    /// Hot-lane mode: urgent leads per second.
    #[arg(long, default_value_t = 20.0)]
    pub hot_rate: f64,
    /// Jobs-waiting mode: one tenant's campaign with this many leads (one CSV
    /// import), started with its IP paused so nothing is sent; reports RSS.
    #[arg(long)]
    pub jobs_waiting: Option<usize>,
    /// Throughput mode: first insert this many delivery events of other
    /// tenants over the last 13 months; then also time reading a campaign and
    /// dropping the oldest month of events.
    #[arg(long, default_value_t = 0)]
    pub events_history: u64,
}

/// What one run measures, chosen by the flags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Throughput,
    Import(usize),
    Idle,
    HotLane,
    JobsWaiting(usize),
}

/// The most jobs `--jobs-waiting` creates.
pub const MAX_JOBS_WAITING: usize = 10_000_000;

impl BenchArgs {
    /// The number of IPs: `--ips`, or one per tenant.
    pub fn ip_count(&self) -> usize {
        self.ips.unwrap_or(self.tenants)
    }

    /// Checks the flags together and picks the mode; the error says which flag
    /// is wrong and what it may be.
    pub fn mode(&self) -> Result<Mode, String> {
        let max = bench_setup::MAX_TENANTS;
        if !(1..=max).contains(&self.tenants) {
            return Err(format!(
                "--tenants must be 1 to {max}, got {}",
                self.tenants
            ));
        }
        if !(1..=max).contains(&self.ip_count()) {
            return Err(format!("--ips must be 1 to {max}, got {}", self.ip_count()));
        }
        if self.ceiling_connections == 0 {
            return Err("--ceiling-connections must be at least 1".into());
        }
        if self.setup_concurrency == 0 {
            return Err("--setup-concurrency must be at least 1".into());
        }
        let chosen: Vec<&str> = [
            (self.import_leads.is_some(), "--import-leads"),
            (self.idle, "--idle"),
            (self.hot_lane, "--hot-lane"),
            (self.jobs_waiting.is_some(), "--jobs-waiting"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if chosen.len() > 1 {
            return Err(format!("choose one mode, got {}", chosen.join(" and ")));
        }
        let sends = !self.idle && self.import_leads.is_none() && self.jobs_waiting.is_none();
        if sends && self.ip_count() < self.tenants {
            return Err(format!(
                "every sending tenant needs an IP: --ips ({}) must be at least --tenants ({})",
                self.ip_count(),
                self.tenants
            ));
        }
        if sends && self.messages < self.tenants {
            return Err(format!(
                "--messages ({}) must be at least --tenants ({})",
                self.messages, self.tenants
            ));
        }
        let history = super::bench_history::MAX_EVENTS_HISTORY;
        if self.events_history > history {
            return Err(format!(
                "--events-history must be at most {history}, got {}",
                self.events_history
            ));
        }
        if self.events_history > 0 && !chosen.is_empty() {
            return Err("--events-history goes with the throughput mode only".into());
        }
        if let Some(leads) = self.import_leads {
            if leads == 0 {
                return Err("--import-leads must be at least 1".into());
            }
            return Ok(Mode::Import(leads));
        }
        if self.idle {
            if self.idle_secs == 0 {
                return Err("--idle-secs must be at least 1".into());
            }
            return Ok(Mode::Idle);
        }
        if self.hot_lane {
            if self.hot_leads == 0 {
                return Err("--hot-leads must be at least 1".into());
            }
            if !(self.hot_rate > 0.0 && self.hot_rate <= 1_000.0) {
                return Err(format!(
                    "--hot-rate must be above 0 and at most 1000, got {}",
                    self.hot_rate
                ));
            }
            return Ok(Mode::HotLane);
        }
        if let Some(jobs) = self.jobs_waiting {
            if !(1..=MAX_JOBS_WAITING).contains(&jobs) {
                return Err(format!(
                    "--jobs-waiting must be 1 to {MAX_JOBS_WAITING}, got {jobs}"
                ));
            }
            return Ok(Mode::JobsWaiting(jobs));
        }
        Ok(Mode::Throughput)
    }
}

/// The node and the sink every mode runs against, in this process.
pub struct BenchEnv {
    pub sink: SinkHandle,
    pub node: Node,
    pub config: Arc<Config>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mode = args.mode().map_err(|e| anyhow::anyhow!(e))?;
    println!("load before the run: {}", load_average());
    let sink = Sink::start(SinkConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))).await?;
    let mut config = Config::layered(args.config.as_deref())?;
    config.generate_missing_secrets();
    config.api.listen = "127.0.0.1:0".into();
    config.public.listen = "127.0.0.1:0".into();
    config.delivery.routes = vec![Route {
        domain: "*".into(),
        host: "127.0.0.1".into(),
        port: sink.smtp_addr().port(),
    }];
    bench_setup::tune_config(&mut config);
    config.validate()?;
    let config = Arc::new(config);
    let node = Node::start(config.clone(), NodeOptions::standalone()).await?;
    let env = BenchEnv { sink, node, config };
    let outcome = match mode {
        Mode::Import(leads) => {
            super::bench_import::run(&env.node.api_url(), &env.config.api.admin_token, leads).await
        }
        Mode::Idle => super::bench_idle::run(&env, &args).await,
        Mode::HotLane => super::bench_hot::run(&env, &args).await,
        Mode::JobsWaiting(jobs) => super::bench_waiting::run(&env, &args, jobs).await,
        Mode::Throughput => return throughput(env, &args).await,
    };
    env.node.shutdown().await;
    env.sink.shutdown().await;
    println!("load after the run: {}", load_average());
    outcome
}

/// The default mode: every campaign started at once, timed until the sink has
/// every message; then the ceiling blast.
async fn throughput(env: BenchEnv, args: &BenchArgs) -> anyhow::Result<()> {
    let BenchEnv { sink, node, config } = env;
    let per_tenant = args.messages / args.tenants;
    let total = per_tenant * args.tenants;
    let spec = ScenarioSpec {
        prefix: "bench".into(),
        tenants: bench_setup::addresses_per_tenant(args.tenants, args.ip_count()),
        leads_per_tenant: per_tenant,
        recipient_domains: args.domains,
        body_bytes: args.size,
    };
    let addresses: Vec<String> = spec.tenants.iter().flatten().cloned().collect();
    eprintln!("setting up {} tenants × {per_tenant} leads …", args.tenants);
    let options = SetupOptions {
        concurrency: args.setup_concurrency,
        priority: None,

        placement: None,
    };
    let scenario = Scenario::setup_with(
        &node.api_url(),
        &config.api.admin_token,
        &node.pg,
        &spec,
        &options,
    )
    .await?;
    if args.events_history > 0 {
        eprintln!("inserting {} history events …", args.events_history);
        let secs = super::bench_history::insert(&node.pg, args.events_history).await?;
        println!(
            "history: {} events of other tenants over 13 months, inserted and analysed in {secs:.1} s",
            args.events_history
        );
    }
    eprintln!("sending {total} messages through the engine …");
    let started = Instant::now();
    scenario.start_with(args.setup_concurrency).await?;
    let arrived = sink
        .wait_for_messages(total as u64, Duration::from_secs(args.timeout_secs))
        .await;
    let engine_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        arrived,
        "only {} of {total} messages arrived within {} s",
        sink.stats().messages_accepted,
        args.timeout_secs
    );
    let engine_rate = total as f64 / engine_secs;
    // Every job terminal (events written) before reading the latencies; not timed.
    scenario
        .wait(Duration::from_secs(args.timeout_secs), |_| {})
        .await?;
    let (p50, p99) = pickup_latency(&node.pg, &scenario).await?;
    let engine_stats = sink.stats();
    let rss_engine = bench_stats::own_rss_kib().1;
    let first = &scenario.tenants[0];
    let (read_p50, read_p99) =
        super::bench_history::time_campaign_reads(&scenario.client, &first.token, first.campaign)
            .await?;
    let dropped = match args.events_history {
        0 => None,
        _ => super::bench_history::time_drop_oldest(&node.pg).await?,
    };
    node.shutdown().await;

    eprintln!("raw SMTP blast (the ceiling) …");
    sink.reset();
    let (ceiling_secs, ceiling_connections) = bench_ceiling::blast(
        &sink,
        &addresses,
        args.ceiling_connections,
        &config,
        total,
        args.size,
    )
    .await?;
    let ceiling_rate = total as f64 / ceiling_secs;
    let ceiling_stats = sink.stats();
    sink.shutdown().await;

    println!(
        "penguin bench: {total} messages of ~{} B, {} tenants, {} IPs, {} domains, {} connections/IP",
        args.size,
        args.tenants,
        addresses.len(),
        args.domains,
        config.delivery.connections_per_ip
    );
    println!(
        "engine : {engine_rate:>9.0} msg/s  ({engine_secs:.1} s from the starts to the sink's last 250; sink got {} unique, {} duplicates)",
        engine_stats.unique_message_ids, engine_stats.duplicate_messages
    );
    println!(
        "pick-up latency (due → accepted): p50 {p50:.3} s, p99 {p99:.3} s (all jobs due at start)"
    );
    println!(
        "ceiling: {ceiling_rate:>9.0} msg/s  ({ceiling_secs:.1} s; raw SMTP over {ceiling_connections} connections at once, sink got {})",
        ceiling_stats.messages_accepted
    );
    println!("engine/ceiling: {:.2}", engine_rate / ceiling_rate);
    println!(
        "GET /v1/campaigns/{{id}} after the run: p50 {read_p50:.2} ms, p99 {read_p99:.2} ms (200 reads, one at a time)"
    );
    if let Some((name, rows, took)) = dropped {
        println!(
            "dropping the oldest month of events ({name}, {rows} rows): {:.1} ms",
            took.as_secs_f64() * 1_000.0
        );
    }
    println!(
        "peak RSS of this process: {} (engine phase, sink included)",
        bench_stats::mib(rss_engine)
    );
    println!("load after the run: {}", load_average());
    anyhow::ensure!(
        engine_stats.unique_message_ids == total as u64 && engine_stats.duplicate_messages == 0,
        "the engine run was not exactly once"
    );
    Ok(())
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages: the machine is shared, so
/// every figure comes with what else was running.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// p50 and p99 of (SMTP accepted − job due) over the scenario's sent jobs, in s.
async fn pickup_latency(
    pg: &deadpool_postgres::Pool,
    scenario: &Scenario,
) -> anyhow::Result<(f64, f64)> {
    let campaigns: Vec<uuid::Uuid> = scenario.tenants.iter().map(|t| t.campaign).collect();
    let client = pg.get().await?;
    let row = client
        .query_one(
            "SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY d), 0),
                    coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY d), 0)
             FROM (SELECT extract(epoch FROM e.created_at - j.run_at)::float8 AS d
                   FROM delivery_events e
                   JOIN send_jobs j ON j.tenant_id = e.tenant_id AND j.id = e.job_id
                   WHERE e.kind = 'sent' AND e.campaign_id = ANY($1)) s",
            &[&campaigns],
        )
        .await
        .context("latency query")?;
    Ok((row.get(0), row.get(1)))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn mode(args: &[&str]) -> Result<Mode, String> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.bench.mode()
    }

    #[test]
    fn tenants_are_one_to_ten_thousand() {
        assert_eq!(mode(&[]), Ok(Mode::Throughput));
        assert_eq!(mode(&["--tenants", "10000"]), Ok(Mode::Throughput));
        assert_eq!(
            mode(&["--tenants", "0"]),
            Err("--tenants must be 1 to 10000, got 0".into())
        );
        assert_eq!(
            mode(&["--tenants", "10001"]),
            Err("--tenants must be 1 to 10000, got 10001".into())
        );
        assert_eq!(
            mode(&["--idle", "--tenants", "100", "--ips", "10001"]),
            Err("--ips must be 1 to 10000, got 10001".into())
        );
    }

    #[test]
    fn sending_modes_need_an_ip_per_tenant() {
        assert_eq!(
            mode(&["--idle", "--tenants", "10000", "--ips", "1000"]),
            Ok(Mode::Idle)
        );
        let err = mode(&["--tenants", "100", "--ips", "10"]).unwrap_err();
        assert!(
            err.contains("--ips (10) must be at least --tenants (100)"),
            "{err}"
        );
        let err = mode(&["--hot-lane", "--tenants", "2", "--ips", "1"]).unwrap_err();
        assert!(err.contains("every sending tenant needs an IP"), "{err}");
        assert_eq!(
            mode(&["--tenants", "2", "--ips", "5"]),
            Ok(Mode::Throughput)
        );
        let err = mode(&["--tenants", "100", "--messages", "99"]).unwrap_err();
        assert!(err.contains("--messages (99)"), "{err}");
    }

    #[test]
    fn one_mode_at_a_time() {
        assert_eq!(mode(&["--hot-lane"]), Ok(Mode::HotLane));
        assert_eq!(
            mode(&["--jobs-waiting", "1000000"]),
            Ok(Mode::JobsWaiting(1_000_000))
        );
        assert_eq!(mode(&["--import-leads", "5"]), Ok(Mode::Import(5)));
        assert_eq!(
            mode(&["--idle", "--hot-lane"]),
            Err("choose one mode, got --idle and --hot-lane".into())
        );
        assert!(mode(&["--jobs-waiting", "0"]).is_err());
        assert!(mode(&["--jobs-waiting", "10000001"]).is_err());
        assert!(mode(&["--idle", "--idle-secs", "0"]).is_err());
        assert!(mode(&["--hot-lane", "--hot-rate", "0"]).is_err());
        assert!(mode(&["--hot-lane", "--hot-leads", "0"]).is_err());
        assert!(mode(&["--ceiling-connections", "0"]).is_err());
        assert!(mode(&["--setup-concurrency", "0"]).is_err());
        assert_eq!(
            mode(&["--events-history", "10000000"]),
            Ok(Mode::Throughput)
        );
        assert!(mode(&["--events-history", "50000001"]).is_err());
        assert_eq!(
            mode(&["--idle", "--events-history", "5"]),
            Err("--events-history goes with the throughput mode only".into())
        );
    }
}
