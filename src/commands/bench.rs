//! `penguin bench`: end-to-end throughput. Sends N messages (default 100,000 of
//! about 10 KB) over ≥ 10 tenants (one IP each, 127.0.0.2…) and 20 recipient
//! domains through the whole engine to the loopback sink, and reports messages/s,
//! p50/p99 pick-up latency (job due → SMTP accepted) and peak RSS.
//!
//! In the same run, a raw SMTP blast from this process to the same sink — same
//! source IPs, same connection count and reuse, prebuilt messages, no Postgres or
//! Redis — gives the ceiling; the engine/ceiling ratio is what the engine costs.
//!
//! With `--import-leads N` it measures lead import instead
//! ([`super::bench_import`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use penguin_config::{Config, Route};
use penguin_engine::route::Destination;
use penguin_engine::sink::{Sink, SinkConfig, SinkHandle};
use penguin_engine::smtp::SmtpConnection;

use crate::node::{Node, NodeOptions};
use crate::scenario::{Scenario, ScenarioSpec};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// TOML configuration file (environment variables override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Messages in total.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Tenants (each with one IP on 127.0.0.2, 127.0.0.3, …).
    #[arg(long, default_value_t = 10)]
    pub tenants: usize,
    /// Approximate message size in bytes.
    #[arg(long, default_value_t = 10_000)]
    pub size: usize,
    /// Recipient domains the leads are spread over.
    #[arg(long, default_value_t = 20)]
    pub domains: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 1_800)]
    pub timeout_secs: u64,
    /// Measure lead import instead: post this many leads as one CSV body.
    #[arg(long)]
    pub import_leads: Option<usize>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.tenants >= 1 && args.tenants <= 200,
        "--tenants must be 1..=200"
    );
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
    config.validate()?;
    let config = Arc::new(config);
    let addresses: Vec<String> = (0..args.tenants)
        .map(|i| format!("127.0.{}.{}", (i + 2) / 250, (i + 2) % 250))
        .collect();
    let per_tenant = args.messages / args.tenants;
    let total = per_tenant * args.tenants;

    let node = Node::start(config.clone(), NodeOptions::standalone()).await?;
    if let Some(leads) = args.import_leads {
        let outcome =
            super::bench_import::run(&node.api_url(), &config.api.admin_token, leads).await;
        node.shutdown().await;
        sink.shutdown().await;
        return outcome;
    }
    let spec = ScenarioSpec {
        prefix: "bench".into(),
        tenants: addresses.iter().map(|a| vec![a.clone()]).collect(),
        leads_per_tenant: per_tenant,
        recipient_domains: args.domains,
        body_bytes: args.size,
    };
    eprintln!("setting up {} tenants × {per_tenant} leads …", args.tenants);
    let scenario =
        Scenario::setup(&node.api_url(), &config.api.admin_token, &node.pg, &spec).await?;
    eprintln!("sending {total} messages through the engine …");
    let started = Instant::now();
    scenario.start().await?;
    scenario
        .wait(Duration::from_secs(args.timeout_secs), |_| {})
        .await?;
    let engine_secs = started.elapsed().as_secs_f64();
    let engine_rate = total as f64 / engine_secs;
    let (p50, p99) = pickup_latency(&node.pg, &scenario).await?;
    let engine_stats = sink.stats();
    let rss_engine = peak_rss_kib();
    node.shutdown().await;

    eprintln!("raw SMTP blast (the ceiling) …");
    sink.reset();
    let connections = config.delivery.connections_per_ip;
    let ceiling_secs = blast(&sink, &addresses, connections, &config, total, args.size).await?;
    let ceiling_rate = total as f64 / ceiling_secs;
    let ceiling_stats = sink.stats();
    sink.shutdown().await;

    println!(
        "penguin bench: {total} messages of ~{} B, {} tenants, {} IPs, {} domains, {} connections/IP",
        args.size,
        args.tenants,
        addresses.len(),
        args.domains,
        connections
    );
    println!(
        "engine : {engine_rate:>9.0} msg/s  ({engine_secs:.1} s; sink got {} unique, {} duplicates)",
        engine_stats.unique_message_ids, engine_stats.duplicate_messages
    );
    println!(
        "pick-up latency (due → accepted): p50 {p50:.3} s, p99 {p99:.3} s (all jobs due at start)"
    );
    println!(
        "ceiling: {ceiling_rate:>9.0} msg/s  ({ceiling_secs:.1} s; raw SMTP, sink got {})",
        ceiling_stats.messages_accepted
    );
    println!("engine/ceiling: {:.2}", engine_rate / ceiling_rate);
    println!(
        "peak RSS of this process: {} MiB (engine phase, sink included)",
        rss_engine / 1024
    );
    anyhow::ensure!(
        engine_stats.unique_message_ids == total as u64 && engine_stats.duplicate_messages == 0,
        "the engine run was not exactly once"
    );
    Ok(())
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

/// Sends `total` prebuilt messages over `connections` connections per source
/// address, reusing each like the engine does; returns the seconds it took.
async fn blast(
    sink: &SinkHandle,
    addresses: &[String],
    connections: usize,
    config: &Config,
    total: usize,
    size: usize,
) -> anyhow::Result<f64> {
    let dest = Destination {
        host: "127.0.0.1".into(),
        port: sink.smtp_addr().port(),
    };
    let body_text = "x".repeat(size.saturating_sub(300));
    let workers = addresses.len() * connections;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let source: IpAddr = addresses[worker % addresses.len()].parse()?;
        let dest = dest.clone();
        let timeouts = config.delivery.timeouts.clone();
        let per_connection = config.delivery.messages_per_connection;
        let body_text = body_text.clone();
        let share = total / workers + usize::from(worker < total % workers);
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<SmtpConnection> = None;
            for n in 0..share {
                if conn.as_ref().is_none_or(|c| !c.is_usable() || c.messages_sent() >= per_connection) {
                    if let Some(old) = conn.take() {
                        old.quit().await;
                    }
                    conn = Some(
                        SmtpConnection::connect(source, &dest, "blast.test", &timeouts)
                            .await
                            .map_err(|o| anyhow::anyhow!("connect: {o:?}"))?,
                    );
                }
                let body = format!(
                    "From: <blast@bench.test>\r\nTo: <r{n}@domain.test>\r\nSubject: ceiling\r\nMessage-ID: <blast-{worker}-{n}@bench.test>\r\n\r\n{body_text}\r\n"
                );
                let c = conn.as_mut().expect("connected");
                let outcome = c.send("blast@bench.test", &format!("r{n}@domain.test"), body.as_bytes()).await;
                anyhow::ensure!(outcome.is_sent(), "blast message refused: {outcome:?}");
            }
            if let Some(c) = conn {
                c.quit().await;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Peak resident set size of this process (VmHWM), in KiB; 0 where unknown.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
