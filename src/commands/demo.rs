//! `penguin demo`: the engine's main job, end to end, on this machine. Starts the
//! loopback SMTP sink and an engine node (Postgres and Redis from the config or
//! `DATABASE_URL`/`REDIS_URL`), creates 2 tenants with 3 IPs between them on
//! 127.0.0.2–127.0.0.4, one campaign of 10,000 leads each, sends them with a
//! progress bar, and reports per IP and per state, the throughput, and whether
//! the sink received every message exactly once.
//!
//! With `--stay` the node and the sink keep running afterwards, at fixed
//! addresses (the API on `api.listen`, default `127.0.0.1:8025`; the public
//! links on `public.listen`, default `127.0.0.1:8026`; the sink's
//! stats on `127.0.0.1:2526`), so the README's curl examples run against the
//! demo's data until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use penguin_config::{Config, Route};
use penguin_engine::sink::{Sink, SinkConfig};

use crate::node::{Node, NodeOptions};
use crate::scenario::{Scenario, ScenarioSpec};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// TOML configuration file (environment variables override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Leads per campaign (one campaign per tenant).
    #[arg(long, default_value_t = 10_000)]
    pub leads: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Keep the node (API on `api.listen`) and the sink (stats on
    /// http://127.0.0.1:2526) running after the report, until Ctrl-C.
    #[arg(long)]
    pub stay: bool,
}

/// Where the sink's HTTP stats listen with `--stay`.
const SINK_HTTP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 2526);

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut sink_config = SinkConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    if args.stay {
        sink_config.http_listen = Some(SINK_HTTP);
    }
    let sink = Sink::start(sink_config).await?;
    let mut config = Config::layered(args.config.as_deref())?;
    config.generate_missing_secrets();
    if !args.stay {
        config.api.listen = "127.0.0.1:0".into();
        config.public.listen = "127.0.0.1:0".into();
    }
    config.delivery.routes = vec![Route {
        domain: "*".into(),
        host: sink.smtp_addr().ip().to_string(),
        port: sink.smtp_addr().port(),
    }];
    // A webhook receiver on this machine (the README's examples) is allowed.
    if !config.webhooks.allows("127.0.0.1") {
        config.webhooks.allow_hosts.push("127.0.0.1".into());
    }
    config.validate()?;
    let config = Arc::new(config);
    let node = Node::start(config.clone(), NodeOptions::standalone()).await?;
    println!(
        "engine node {} — API {} — public links {} — sink smtp://{}",
        config.node.id,
        node.api_url(),
        node.public_url(),
        sink.smtp_addr()
    );

    let spec = ScenarioSpec {
        prefix: "demo".into(),
        tenants: vec![
            vec!["127.0.0.2".into(), "127.0.0.3".into()],
            vec!["127.0.0.4".into()],
        ],
        leads_per_tenant: args.leads,
        recipient_domains: 20,
        body_bytes: 2_000,
    };
    let scenario =
        Scenario::setup(&node.api_url(), &config.api.admin_token, &node.pg, &spec).await?;
    println!(
        "2 tenants, 3 IPs, {} leads loaded; starting both campaigns",
        scenario.total
    );

    let bar = ProgressBar::new(scenario.total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} terminal  {per_sec}  {msg}")
            .expect("static template"),
    );
    let started = Instant::now();
    scenario.start().await?;
    let outcome = scenario
        .wait(Duration::from_secs(args.timeout_secs), |p| {
            bar.set_position(p.terminal);
            bar.set_message(format!(
                "sent {}",
                p.counts.get("sent").copied().unwrap_or(0)
            ));
        })
        .await;
    let elapsed = started.elapsed();
    bar.finish();
    let stats = sink.stats();
    let progress = outcome?;

    println!("\nper state (all campaigns):");
    for (state, n) in &progress.counts {
        if *n > 0 {
            println!("  {state:<10} {n:>8}");
        }
    }
    println!("per IP (messages the sink received from each source address):");
    for (tenant, address) in scenario.addresses() {
        let ip: std::net::IpAddr = address.parse()?;
        let n = stats.per_source_ip.get(&ip).copied().unwrap_or(0);
        println!("  tenant {} {address:<12} {n:>8}", tenant + 1);
    }
    let sent = progress.counts.get("sent").copied().unwrap_or(0);
    println!(
        "throughput: {sent} messages in {:.1} s = {:.0} msg/s",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    let exactly_once = stats.messages_accepted == scenario.total
        && stats.unique_message_ids == scenario.total
        && stats.duplicate_messages == 0
        && sent == scenario.total;
    println!(
        "sink: {} messages, {} unique Message-IDs, {} duplicates, over {} connections",
        stats.messages_accepted,
        stats.unique_message_ids,
        stats.duplicate_messages,
        stats.connections
    );
    if exactly_once {
        println!("exactly once: yes — every lead was delivered once and only once");
    }
    if args.stay {
        println!("\nstill running for the README's API examples (Ctrl-C stops):");
        println!(
            "  API  {}   admin token: {}",
            node.api_url(),
            config.api.admin_token
        );
        println!("  public links (/t, /u)  {}", node.public_url());
        for (n, tenant) in scenario.tenants.iter().enumerate() {
            println!(
                "  tenant {}: TENANT={} TOKEN={} CAMPAIGN={}",
                n + 1,
                tenant.id,
                tenant.token,
                tenant.campaign
            );
        }
        if let Some(http) = sink.http_addr() {
            println!("  sink stats  http://{http}/stats");
        }
        super::serve::shutdown_signal().await;
    }
    node.shutdown().await;
    sink.shutdown().await;
    anyhow::ensure!(exactly_once, "exactly once: NO — see the counts above");
    Ok(())
}
