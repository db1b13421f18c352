//! `penguin bench --jobs-waiting N`: memory with a large backlog that cannot
//! be sent. One tenant, one IP, one campaign; the IP is paused through the API,
//! N leads are imported as one CSV body (the fast path) into the draft, and the
//! campaign is started, so N jobs are due and none can go. After
//! the node has gone quiet (at most `--settle-secs`) the bench reports this process's RSS (the node runs here)
//! and Redis' memory: comparing N = 10,000 with N = 1,000,000 shows whether
//! memory follows the in-flight window or the backlog.

use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use super::bench::{BenchArgs, BenchEnv};
use super::bench_import::{csv_body, post_csv};
use super::bench_setup;
use super::bench_stats::{self, mib};
use crate::client::ApiClient;

pub async fn run(env: &BenchEnv, args: &BenchArgs, jobs: usize) -> anyhow::Result<()> {
    let api_url = env.node.api_url();
    let admin = &env.config.api.admin_token;
    let client = ApiClient::new(&api_url);
    let fresh_rss = bench_stats::own_rss_kib().0;
    let (tenant, token) = client.create_tenant(admin, "waiting-1").await?;
    client.trust_domain(admin, tenant, "waiting-1.test").await?;
    let ip = client
        .add_ip(
            admin,
            tenant,
            &bench_setup::address(0),
            "mta1.waiting-1.test",
        )
        .await?;
    client
        .post(
            &format!("/v1/ips/{ip}/pause"),
            &token,
            &json!({ "reason": "bench: jobs wait" }),
        )
        .await
        .context("pausing the IP")?;
    let campaign = client
        .create_campaign(
            &token,
            &json!({
                "name": "waiting",
                "from": "hello@waiting-1.test",
                "subject": "Hi {{first_name}}",
                "text": "Hello {{first_name}} of {{company}}",
                "ip_ids": [ip.to_string()],
            }),
        )
        .await?;
    let body = csv_body(jobs);
    eprintln!("importing {jobs} leads ({} MiB of CSV) …", body.len() >> 20);
    let (answer, import_secs) = post_csv(&api_url, &token, campaign, body).await?;
    anyhow::ensure!(
        answer["accepted"].as_u64() == Some(jobs as u64),
        "not every lead was accepted: {answer}"
    );
    let after_import = bench_stats::own_rss_kib().0;
    let started = Instant::now();
    client.campaign_action(&token, campaign, "start").await?;
    let start_secs = started.elapsed().as_secs_f64();
    let settled = super::bench_idle::settle(env, args.settle_secs).await?;
    let (rss, peak) = bench_stats::own_rss_kib();
    let redis_memory = redis_used_memory(env).await?;
    let counts = client.campaign(&token, campaign).await?["counts"].clone();
    let sent = env.sink.stats().messages_accepted;

    println!(
        "penguin bench --jobs-waiting {jobs}: one tenant, one paused IP, a started campaign of {jobs} jobs; {settled}"
    );
    println!("| what | value |");
    println!("|---|---|");
    println!("| RSS of the fresh node | {} |", mib(fresh_rss));
    println!(
        "| RSS after the import ({jobs} leads in {import_secs:.1} s) | {} |",
        mib(after_import)
    );
    println!(
        "| RSS after the start ({start_secs:.1} s) and the settling (VmRSS) | {} |",
        mib(rss)
    );
    println!(
        "| growth from the start and the settling | {} |",
        mib(rss.saturating_sub(after_import))
    );
    println!("| peak RSS (VmHWM, import included) | {} |", mib(peak));
    println!("| Redis used_memory | {} |", mib(redis_memory / 1024));
    println!("| job counts | {counts} |");
    println!("| messages sent | {sent} |");
    anyhow::ensure!(sent == 0, "{sent} messages went out from a paused IP");
    Ok(())
}

/// Redis' `used_memory`, in bytes.
async fn redis_used_memory(env: &BenchEnv) -> anyhow::Result<u64> {
    let mut redis = env.node.redis.get().await.context("redis connection")?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut redis)
        .await
        .context("redis INFO memory")?;
    Ok(bench_stats::parse_info_field(&info, "used_memory").unwrap_or(0.0) as u64)
}
