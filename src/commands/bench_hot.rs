//! `penguin bench --hot-lane`: how long urgent mail waits behind bulk.
//!
//! Every tenant gets a bulk campaign (priority 200, `--messages` in all) over
//! its IPs. Tenant 1 also gets an urgent campaign (priority 10, the same IPs),
//! started first and kept `running` by one lead the sink defers (451) forever.
//! Once bulk is flowing, `--hot-leads` urgent leads are added to the urgent
//! campaign one per request at `--hot-rate` per second, and for each the bench
//! takes the time from the import's answer to the sink accepting it (its 250;
//! a watcher here stamps each accepted urgent recipient as it appears). The
//! trickle stops early, and says so, when less than 5 % of the bulk is left:
//! from then on bulk no longer saturates the IPs. After bulk has finished, 20
//! more urgent leads give the same path on an idle engine, for comparison.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use penguin_engine::sink::{Rule, RuleStage};
use serde_json::json;
use uuid::Uuid;

use super::bench::{BenchArgs, BenchEnv};
use super::bench_setup;
use super::bench_stats;
use crate::client::ApiClient;
use crate::scenario::{Scenario, ScenarioSpec, SetupOptions};

const URGENT_DOMAIN: &str = "urgent.test";
const KEEPER_DOMAIN: &str = "keeper.test";
/// Urgent leads sent after bulk has finished: the idle baseline.
const IDLE_LEADS: usize = 20;

/// What the watcher has seen at the sink.
#[derive(Default)]
struct Seen {
    /// Urgent recipient → when the sink's record of it was first seen.
    urgent: Mutex<HashMap<String, Instant>>,
    bulk: AtomicU64,
    stop: AtomicBool,
}

/// The urgent campaign and how to add a lead to it.
struct Urgent<'a> {
    client: &'a ApiClient,
    token: &'a str,
    campaign: Uuid,
}

/// One trickle's outcome: latencies in ms, leads sent, leads never seen.
struct Trickle {
    latencies_ms: Vec<f64>,
    sent: usize,
    missing: usize,
    /// Bulk messages not yet at the sink when the last urgent lead was answered.
    bulk_left_at_last: u64,
    stopped_early: bool,
    rate: f64,
}

pub async fn run(env: &BenchEnv, args: &BenchArgs) -> anyhow::Result<()> {
    let sink = &env.sink;
    let per_tenant = args.messages / args.tenants;
    let bulk_total = (per_tenant * args.tenants) as u64;
    let spec = ScenarioSpec {
        prefix: "hot".into(),
        tenants: bench_setup::addresses_per_tenant(args.tenants, args.ip_count()),
        leads_per_tenant: per_tenant,
        recipient_domains: args.domains,
        body_bytes: args.size,
    };
    let options = SetupOptions {
        concurrency: args.setup_concurrency,
        priority: Some(200),

        placement: None,
    };
    eprintln!(
        "setting up {} bulk tenants × {per_tenant} leads …",
        args.tenants
    );
    let admin = &env.config.api.admin_token;
    let scenario =
        Scenario::setup_with(&env.node.api_url(), admin, &env.node.pg, &spec, &options).await?;
    let first = &scenario.tenants[0];
    sink.set_rules(vec![Rule {
        recipient_pattern: format!("*@{KEEPER_DOMAIN}"),
        stage: RuleStage::Rcpt,
        reply: Some("451 4.7.1 keeps the urgent campaign running".into()),
        times: None,
        delay_ms: None,
        drop_connection: false,
    }])?;
    let client = &scenario.client;
    let campaign = client
        .create_campaign(
            &first.token,
            &json!({
                "name": "urgent",
                "from": "urgent@hot-1.test",
                "subject": "Your code, {{first_name}}",
                "text": "Hello {{first_name}}, your code is 123456.",
                "ip_ids": first.ips.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>(),
                "priority": 10,
            }),
        )
        .await?;
    let urgent = Urgent {
        client,
        token: &first.token,
        campaign,
    };
    urgent.add(&format!("keeper@{KEEPER_DOMAIN}")).await?;
    client
        .campaign_action(&first.token, campaign, "start")
        .await?;

    let seen = Seen::default();
    let warm = (bulk_total / 20).clamp(1, 1_000);
    let phases = async {
        scenario.start_with(args.setup_concurrency).await?;
        eprintln!("waiting for bulk to flow ({warm} messages) …");
        wait_until(Duration::from_secs(args.timeout_secs), || {
            seen.bulk.load(Ordering::Relaxed) >= warm
        })
        .await
        .context("bulk did not start")?;
        eprintln!(
            "trickling {} urgent leads at {}/s while bulk saturates …",
            args.hot_leads, args.hot_rate
        );
        let hot = trickle(
            &urgent,
            &seen,
            "u",
            args.hot_leads,
            args.hot_rate,
            Some(bulk_total),
        )
        .await?;
        eprintln!("waiting for the rest of the bulk …");
        wait_until(Duration::from_secs(args.timeout_secs), || {
            seen.bulk.load(Ordering::Relaxed) >= bulk_total
        })
        .await
        .context("bulk did not finish")?;
        let idle = trickle(&urgent, &seen, "i", IDLE_LEADS, args.hot_rate, None).await?;
        Ok::<_, anyhow::Error>((hot, idle))
    };
    // The watcher stops whichever way the phases end.
    let run = async {
        let outcome = phases.await;
        seen.stop.store(true, Ordering::Relaxed);
        outcome
    };
    let (outcome, ()) = tokio::join!(run, watch(sink, &seen));
    let (mut hot, mut idle) = outcome?;
    let duplicates = sink.stats().duplicate_messages;

    println!(
        "penguin bench --hot-lane: {} tenants, {} IPs, bulk {bulk_total} × ~{} B at priority 200; \
         urgent leads at priority 10 in tenant 1's running campaign, one per request",
        args.tenants,
        args.ip_count(),
        args.size
    );
    println!("| phase | urgent leads | rate | p50 | p99 | max | not arrived |");
    println!("|---|---|---|---|---|---|---|");
    for (label, t) in [("under bulk", &mut hot), ("idle engine", &mut idle)] {
        let (p50, p99, max) = bench_stats::summary(&mut t.latencies_ms).unwrap_or_default();
        println!(
            "| {label} | {} | {:.1}/s | {p50:.1} ms | {p99:.1} ms | {max:.1} ms | {} |",
            t.sent, t.rate, t.missing
        );
    }
    println!(
        "latency: from the import request's answer to the sink accepting the message (its 250)"
    );
    if hot.stopped_early {
        println!(
            "the trickle stopped after {} of {} leads: less than 5 % of the bulk was left",
            hot.sent, args.hot_leads
        );
    }
    println!(
        "bulk still to arrive when the last urgent lead was answered: {} of {bulk_total}",
        hot.bulk_left_at_last
    );
    anyhow::ensure!(duplicates == 0, "{duplicates} messages arrived twice");
    anyhow::ensure!(
        hot.missing == 0 && idle.missing == 0,
        "urgent messages did not arrive"
    );
    Ok(())
}

impl Urgent<'_> {
    /// Adds one lead; returns when the import has answered.
    async fn add(&self, email: &str) -> anyhow::Result<()> {
        let answer = self
            .client
            .post(
                &format!("/v1/campaigns/{}/leads", self.campaign),
                self.token,
                &json!({ "leads": [{ "email": email, "fields": { "first_name": "Urgent" } }] }),
            )
            .await?;
        anyhow::ensure!(
            answer["accepted"].as_u64() == Some(1),
            "urgent lead {email} not accepted: {answer}"
        );
        Ok(())
    }
}

/// Adds `count` urgent leads (`{tag}{n}@urgent.test`) at `rate` per second,
/// one request at a time; with `bulk_total`, stops once less than 5 % of the
/// bulk is left. Then waits up to 60 s for them at the sink.
async fn trickle(
    urgent: &Urgent<'_>,
    seen: &Seen,
    tag: &str,
    count: usize,
    rate: f64,
    bulk_total: Option<u64>,
) -> anyhow::Result<Trickle> {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut answered: Vec<(String, Instant)> = Vec::with_capacity(count);
    let mut stopped_early = false;
    let mut bulk_left_at_last = 0;
    let started = Instant::now();
    for n in 0..count {
        ticks.tick().await;
        let bulk_left = bulk_total.map(|t| t.saturating_sub(seen.bulk.load(Ordering::Relaxed)));
        if let (Some(left), Some(total)) = (bulk_left, bulk_total)
            && left * 20 < total
        {
            stopped_early = true;
            break;
        }
        let email = format!("{tag}{n}@{URGENT_DOMAIN}");
        urgent.add(&email).await?;
        answered.push((email, Instant::now()));
        if let Some(total) = bulk_total {
            bulk_left_at_last = total.saturating_sub(seen.bulk.load(Ordering::Relaxed));
        }
    }
    let rate = answered.len() as f64 / started.elapsed().as_secs_f64();
    let _ = wait_until(Duration::from_secs(60), || {
        let got = seen.urgent.lock().expect("lock");
        answered.iter().all(|(email, _)| got.contains_key(email))
    })
    .await;
    let got = seen.urgent.lock().expect("lock");
    let latencies_ms: Vec<f64> = answered
        .iter()
        .filter_map(|(email, at)| {
            let accepted = got.get(email)?;
            // Signed: a 250 before the import's answer reached us reads negative.
            Some(if accepted >= at {
                accepted.duration_since(*at).as_secs_f64() * 1e3
            } else {
                -(at.duration_since(*accepted).as_secs_f64() * 1e3)
            })
        })
        .collect();
    Ok(Trickle {
        missing: answered.len() - latencies_ms.len(),
        sent: answered.len(),
        latencies_ms,
        bulk_left_at_last,
        stopped_early,
        rate,
    })
}

/// Stamps every message the sink records as soon as it appears: urgent ones
/// by recipient, bulk ones counted; until `seen.stop`.
async fn watch(sink: &penguin_engine::sink::SinkHandle, seen: &Seen) {
    let mut last_seq = 0;
    let mut scanned = 0;
    while !seen.stop.load(Ordering::Relaxed) {
        sink.wait_for_messages(scanned + 1, Duration::from_millis(50))
            .await;
        let now = Instant::now();
        loop {
            let batch = sink.messages_after(last_seq, 5_000);
            let Some(last) = batch.last() else { break };
            last_seq = last.seq;
            scanned += batch.len() as u64;
            let mut urgent = seen.urgent.lock().expect("lock");
            for message in &batch {
                match message.rcpt_to.iter().find(|r| r.ends_with(URGENT_DOMAIN)) {
                    Some(rcpt) => {
                        urgent.entry(rcpt.to_ascii_lowercase()).or_insert(now);
                    }
                    None => {
                        seen.bulk.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// Polls `done` every 10 ms until it holds or `timeout` passes.
async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
