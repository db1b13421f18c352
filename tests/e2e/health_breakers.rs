//! Reputation breakers under real traffic (DESIGN.md §6): a bounce spike pauses
//! an IP after a bounded number of SMTP attempts, its jobs wait while the pause
//! lasts, and it resumes by itself at the reduced rate; complaints over the
//! critical rate pause it too (below it, only the warning applies). (Pair
//! breakers — a provider sicker than its IP — are unit-tested in `breaker.rs`:
//! every sink here is the same provider.)
//!
//! The clock is a [`ManualClock`](penguin_engine::clock::ManualClock) parked at
//! a UTC midnight (see `support::limits`), moved to whole-hour starts + 1 s so
//! every hourly quota is a whole hour's. The API computes its views on the wall
//! clock, so assertions on the API stick to what does not depend on the instant
//! (state, reason, `paused_until`, rate factor, allowance, the quota of an IP
//! active all day).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use penguin_engine::sink::{Rule, RuleStage};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::limits::{IpPlan, LimitsRig};
use crate::support::wait_for;

const IP: &str = "127.0.0.2";
/// A second IP of the tenant, outside the pool of the paused IP's campaign: its
/// traffic proves the engine was running while the paused IP stayed silent.
const WITNESS: &str = "127.0.0.3";

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn timestamp(value: &Value) -> OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp: {value}"));
    OffsetDateTime::parse(text, &Rfc3339).expect("RFC 3339")
}

fn warm_ip(address: &str) -> IpPlan<'_> {
    IpPlan {
        address,
        schedule: None,
        timezone: "UTC",
        active_hours: (0, 24),
    }
}

fn rcpt_rule(pattern: &str, reply: &str) -> Rule {
    Rule {
        recipient_pattern: pattern.into(),
        stage: RuleStage::Rcpt,
        reply: Some(reply.into()),
        times: None,
        delay_ms: None,
        drop_connection: false,
    }
}

/// SMTP transactions that reached the sink's verdict: accepted or refused at RCPT.
fn attempts(rig: &LimitsRig) -> u64 {
    let stats = rig.rig.sink.stats();
    stats.messages_accepted + stats.rejected_5xx
}

/// Jobs per status.
async fn job_counts(rig: &LimitsRig) -> HashMap<String, i64> {
    rig.rig
        .env
        .psql("SELECT status, count(*) FROM send_jobs GROUP BY status")
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Waits until no job is in SMTP and Postgres holds an outcome for every SMTP
/// attempt the sink saw (so no transaction is still under way).
async fn quiet(rig: &LimitsRig, what: &str) -> HashMap<String, i64> {
    wait_for(what, Duration::from_secs(30), || async {
        let counts = job_counts(rig).await;
        let done = ["sent", "bounced"]
            .iter()
            .map(|s| counts.get(*s).copied().unwrap_or(0))
            .sum::<i64>();
        (!counts.contains_key("sending") && done as u64 == attempts(rig)).then_some(counts)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bounce_spike_pauses_the_ip_then_it_resumes_at_half_rate() {
    let rig = LimitsRig::start(|c| c.limits.warm_daily_volume = 24_000).await;
    let config = rig.rig.config().clone();
    let (health, connections) = (config.health.clone(), config.delivery.connections_per_ip);
    let ip = rig.add_ip(&warm_ip(IP)).await;
    let witness = rig.add_ip(&warm_ip(WITNESS)).await;
    let before = rig.ip(ip).await;
    assert_eq!(
        (&before["allowance_today"], &before["hourly_quota"]),
        (&json!(24_000), &json!(1_000)),
        "24 000 a day over 24 active hours"
    );
    let hour0 = rig.now() + Duration::from_secs(1);
    rig.set_clock(hour0);

    // Every fifth lead is refused at RCPT: a 20 % bounce rate, twice the critical one.
    rig.rig
        .sink
        .set_rules(vec![rcpt_rule("*@bounce.test", "550 5.1.1 user unknown")])
        .unwrap();
    let leads = 1_200;
    let emails: Vec<String> = (0..leads)
        .map(|i| {
            let domain = if i % 5 == 0 { "bounce.test" } else { "ok.test" };
            format!("lead{i}@{domain}")
        })
        .collect();
    rig.start_campaign_to(&[ip], &emails).await;

    let paused = wait_for(
        "the breaker pauses the ip",
        Duration::from_secs(30),
        || async {
            let shown = rig.ip(ip).await;
            (shown["state"] == "paused").then_some(shown)
        },
    )
    .await;
    let counts = quiet(&rig, "the SMTP under way at the pause to finish").await;
    let at_pause = attempts(&rig);
    let accepted_at_pause = rig.rig.sink.stats().messages_accepted;
    eprintln!("attempts before the pause: {at_pause}; jobs {counts:?}");
    // The breaker judges from `min_sends` attempts on, and the worker that trips it
    // stops the others at once: only the transactions the other workers had
    // already begun may still reach the sink.
    let bound = u64::from(health.min_sends) + connections as u64;
    assert!(
        (u64::from(health.min_sends)..=bound).contains(&at_pause),
        "{at_pause} attempts before the pause; expected {}..={bound}",
        health.min_sends
    );
    assert_eq!(paused["status"], "paused");
    let reason = paused["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("bounce rate"), "{paused:#}");
    assert!(
        paused["state_reason"]
            .as_str()
            .unwrap_or_default()
            .contains(reason),
        "{paused:#}"
    );
    let until = timestamp(&paused["paused_until"]);
    assert_eq!(
        until,
        hour0 + Duration::from_secs(health.pause_secs),
        "paused for health.pause_secs from the trip"
    );
    assert_eq!(paused["rate_factor"], json!(health.resume_factor));
    let rest = leads as i64 - at_pause as i64;
    assert_eq!(
        counts.get("pending").copied().unwrap_or(0) + counts.get("queued").copied().unwrap_or(0),
        rest,
        "every other job waits: {counts:?}"
    );

    // While the pause lasts, the clock moves through it and the tenant's other IP
    // sends a campaign each time; the paused IP sends nothing.
    let mut witnessed = 0;
    for at in [
        hour0 + Duration::from_secs(3600),
        until - Duration::from_secs(1),
    ] {
        rig.set_clock(at);
        let probe: Vec<String> = (0..20)
            .map(|i| format!("w{witnessed}-{i}@ok.test"))
            .collect();
        rig.start_campaign_to(&[witness], &probe).await;
        witnessed += 20;
        rig.settle(
            &HashMap::from([(addr(IP), accepted_at_pause), (addr(WITNESS), witnessed)]),
            "the witness campaign, nothing from the paused ip",
        )
        .await;
        assert_eq!(
            attempts(&rig),
            at_pause + witnessed,
            "no attempt from the paused ip"
        );
        assert_eq!(rig.ip(ip).await["state"], "paused");
    }

    // The pause ends: the Warmup actor resumes the IP at half its rate, and the hour
    // that begins with it carries half the hourly quota, no more.
    rig.rig.sink.set_rules(Vec::new()).unwrap();
    rig.set_clock(until);
    let resumed = wait_for("the ip resumes", Duration::from_secs(30), || async {
        let shown = rig.ip(ip).await;
        (shown["state"] == "sending").then_some(shown)
    })
    .await;
    assert_eq!(resumed["status"], "active");
    assert_eq!(resumed["paused_until"], Value::Null);
    assert_eq!(resumed["status_reason"], Value::Null);
    assert_eq!(resumed["rate_factor"], json!(health.resume_factor));
    assert_eq!(
        (&resumed["allowance_today"], &resumed["hourly_quota"]),
        (&json!(12_000), &json!(500)),
        "the day and the hour are halved"
    );
    let mut expected = accepted_at_pause + 500;
    rig.settle(
        &HashMap::from([(addr(IP), expected), (addr(WITNESS), witnessed)]),
        "half the hourly quota in the hour of the resume",
    )
    .await;

    // The next whole hour: half the quota again.
    rig.set_clock(until + Duration::from_secs(3600));
    expected += 500;
    rig.settle(
        &HashMap::from([(addr(IP), expected), (addr(WITNESS), witnessed)]),
        "half the hourly quota in the next hour",
    )
    .await;
    let counts = job_counts(&rig).await;
    assert_eq!(
        counts.get("pending").copied().unwrap_or(0) + counts.get("queued").copied().unwrap_or(0),
        rest - 1_000,
        "the rest waits for the next hour: {counts:?}"
    );
    assert_eq!(rig.rig.sink.stats().duplicate_messages, 0);
    rig.rig.shutdown().await;
}

/// Files a complaint (JSON, by job id) as the tenant.
async fn complain(rig: &LimitsRig, job: &str) {
    let body = json!({ "job_id": job });
    let answer = rig
        .api
        .post("/v1/complaints", Some(&rig.token), &body)
        .await;
    answer.expect(202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn complaints_over_the_critical_rate_pause_the_ip() {
    let rig = LimitsRig::start(|c| c.limits.warm_daily_volume = 24_000).await;
    let health = rig.rig.config().health.clone();
    let ip = rig.add_ip(&warm_ip(IP)).await;
    let hour0 = rig.now() + Duration::from_secs(1);
    rig.set_clock(hour0);
    let sent = 1_000;
    rig.start_campaign(&[ip], sent as usize).await;
    rig.settle(&HashMap::from([(addr(IP), sent)]), "the campaign")
        .await;
    let jobs: Vec<String> = rig
        .rig
        .env
        .psql("SELECT id::text FROM send_jobs WHERE status = 'sent' ORDER BY id LIMIT 3")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();

    // Two complaints in 1 000: 0.2 %, over the warning rate (0.1 %), under the
    // critical one (0.3 %). The IP keeps sending.
    complain(&rig, &jobs[0]).await;
    complain(&rig, &jobs[1]).await;
    let shown = wait_for(
        "two complaints counted",
        Duration::from_secs(10),
        || async {
            let shown = rig.ip(ip).await;
            (shown["health"]["complaints"] == 2).then_some(shown)
        },
    )
    .await;
    // (The API judges `health` on the wall clock's day, not on this test's.)
    assert_eq!(shown["state"], "sending", "{shown:#}");
    assert_eq!(shown["status"], "active", "{shown:#}");

    // The third makes 0.3 %: the IP pauses, for `pause_secs`, to resume at half rate.
    complain(&rig, &jobs[2]).await;
    let paused = wait_for(
        "the complaints pause the ip",
        Duration::from_secs(10),
        || async {
            let shown = rig.ip(ip).await;
            (shown["state"] == "paused").then_some(shown)
        },
    )
    .await;
    assert_eq!(paused["status"], "paused");
    let reason = paused["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("complaint rate"), "{paused:#}");
    // The engine's clock has stood at `hour0` since the campaign: the third
    // complaint was counted then, so the pause ends exactly `pause_secs` later.
    assert_eq!(rig.now(), hour0, "the clock did not move");
    let until = timestamp(&paused["paused_until"]);
    assert_eq!(
        until,
        hour0 + Duration::from_secs(health.pause_secs),
        "paused for health.pause_secs from the third complaint: {paused:#}"
    );
    assert_eq!(paused["rate_factor"], json!(health.resume_factor));
    assert_eq!(rig.rig.sink.stats().duplicate_messages, 0);
    rig.rig.shutdown().await;
}
