//! What each SMTP answer does to a job, end to end through the engine and a
//! scripted sink: 4xx defers and retries on schedule (controlled clock), a drop
//! during DATA defers and retries, 550 5.1.1 bounces and suppresses, 552 bounces
//! as "mailbox full" without suppressing, a policy block matches a reply rule that
//! suspends the (IP, provider) pair, and unresolvable domains bounce with the reason.

use std::sync::Arc;
use std::time::Duration;

use penguin_engine::dns::FakeResolver;
use penguin_engine::sink::{Rule, RuleStage};

use crate::support::rig::{Rig, RigOptions};

fn rule(pattern: &str, stage: RuleStage, reply: Option<&str>, times: Option<u32>) -> Rule {
    Rule {
        recipient_pattern: pattern.into(),
        stage,
        reply: reply.map(str::to_string),
        times,
        delay_ms: None,
        drop_connection: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_4xx_defers_then_the_retry_is_sent_on_schedule() {
    let (rig, clock) = Rig::start_with_clock(|_| {}).await;
    rig.sink
        .set_rules(vec![rule(
            "*",
            RuleStage::Rcpt,
            Some("450 4.2.0 mailbox busy"),
            Some(1),
        )])
        .unwrap();
    let leads: Vec<String> = (0..20).map(|n| format!("busy{n}@retry.test")).collect();
    let scenario = rig
        .campaign_with_leads(&leads.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    scenario.start().await.unwrap();
    rig.wait_for_jobs("deferred", 20, Duration::from_secs(30))
        .await;
    assert_eq!(rig.sink.stats().messages_accepted, 0);
    assert_eq!(rig.sink.stats().rejected_4xx, 20);

    // The retry is scheduled base_delay (300 s) ± 10 % after the first attempt.
    let rows = rig
        .env
        .psql(
            "SELECT extract(epoch FROM run_at - first_attempt_at)::float8, attempts FROM send_jobs",
        )
        .await;
    for row in &rows {
        let delay: f64 = row.get(0);
        assert!(
            (270.0..=330.0).contains(&delay),
            "retry scheduled after {delay} s"
        );
        assert_eq!(row.get::<_, i32>(1), 1);
    }
    // Nothing is retried before its time: with the clock 200 s on, two feeder
    // rounds begin after the move (so the first of them ran in full on the moved
    // clock); each claims what is due, and none of the jobs is.
    clock.advance(Duration::from_secs(200));
    let (rounds, _) = rig.node().engine().wakeups();
    crate::support::wait_for(
        "two feeder rounds on the moved clock",
        Duration::from_secs(10),
        || async { (rig.node().engine().wakeups().0 >= rounds + 2).then_some(()) },
    )
    .await;
    let counts = rig.job_counts().await;
    assert_eq!(
        counts.get("deferred"),
        Some(&20),
        "no job fed before its retry time: {counts:?}"
    );
    assert_eq!(rig.sink.stats().messages_accepted, 0);
    assert_eq!(rig.sink.stats().rejected_4xx, 20, "no second attempt yet");

    clock.advance(Duration::from_secs(131));
    rig.wait_for_jobs("sent", 20, Duration::from_secs(30)).await;
    let stats = rig.sink.stats();
    assert_eq!((stats.messages_accepted, stats.duplicate_messages), (20, 0));
    let rows = rig
        .env
        .psql("SELECT count(*) FROM send_jobs WHERE attempts = 2")
        .await;
    assert_eq!(rows[0].get::<_, i64>(0), 20, "sent on the second attempt");
    crate::support::wait_for("deferred and sent events", Duration::from_secs(10), || async {
        let rows = rig
            .env
            .psql("SELECT count(*) FILTER (WHERE kind = 'deferred' AND class = 'transient'), count(*) FILTER (WHERE kind = 'sent') FROM delivery_events")
            .await;
        (rows[0].get::<_, i64>(0) == 20 && rows[0].get::<_, i64>(1) == 20).then_some(())
    })
    .await;
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drop_during_data_defers_and_the_retry_delivers_once() {
    let (rig, clock) = Rig::start_with_clock(|_| {}).await;
    let mut drop = rule("*", RuleStage::DataEnd, None, Some(1));
    drop.drop_connection = true;
    rig.sink.set_rules(vec![drop]).unwrap();
    let scenario = rig
        .campaign_with_leads(&["a@drop.test", "b@drop.test", "c@drop.test"])
        .await;
    scenario.start().await.unwrap();
    rig.wait_for_jobs("deferred", 3, Duration::from_secs(30))
        .await;
    let replies = rig.env.psql("SELECT last_reply FROM send_jobs").await;
    for row in &replies {
        let reply: String = row.get(0);
        assert!(!reply.is_empty(), "the deferral says why");
    }
    clock.advance(Duration::from_secs(400));
    rig.wait_for_jobs("sent", 3, Duration::from_secs(30)).await;
    let stats = rig.sink.stats();
    assert_eq!((stats.messages_accepted, stats.duplicate_messages), (3, 0));
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hard_bounces_suppress_and_mailbox_full_does_not() {
    let rig = Rig::start(|_| {}).await;
    rig.sink
        .set_rules(vec![
            rule(
                "*@gone.test",
                RuleStage::Rcpt,
                Some("550 5.1.1 <x@gone.test>: user unknown"),
                None,
            ),
            rule(
                "*@full.test",
                RuleStage::Rcpt,
                Some("552 5.2.2 mailbox full"),
                None,
            ),
        ])
        .unwrap();
    let scenario = rig
        .campaign_with_leads(&["ann@gone.test", "bob@full.test", "cy@fine.test"])
        .await;
    scenario.start().await.unwrap();
    rig.wait_until_done(&scenario, Duration::from_secs(30))
        .await;
    let counts = rig.job_counts().await;
    assert_eq!(counts.get("bounced"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("sent"), Some(&1), "{counts:?}");

    crate::support::wait_for(
        "bounce events and suppression",
        Duration::from_secs(10),
        || async {
            let rows = rig
                .env
                .psql("SELECT email, reason FROM suppressions ORDER BY email")
                .await;
            let events = rig
                .env
                .psql("SELECT class FROM delivery_events WHERE kind = 'bounced' ORDER BY class")
                .await;
            (rows.len() == 1 && events.len() == 2).then_some((rows, events))
        },
    )
    .await;
    let suppressed = rig.env.psql("SELECT email, reason FROM suppressions").await;
    assert_eq!(suppressed[0].get::<_, String>(0), "ann@gone.test");
    assert_eq!(suppressed[0].get::<_, String>(1), "hard_bounce");
    let classes: Vec<String> = rig
        .env
        .psql("SELECT class FROM delivery_events WHERE kind = 'bounced' ORDER BY class")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(classes, vec!["invalid_recipient", "mailbox_full"]);

    // A later campaign of the same tenant skips the suppressed address at import
    // and never sends to it.
    let body = rig
        .import_into_new_campaign(&scenario, &["ann@gone.test", "dee@fine.test"])
        .await;
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["suppressed"], 1);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_block_suspends_the_ip_provider_pair() {
    let rig = Rig::start(|c| c.delivery.connections_per_ip = 2).await;
    rig.sink
        .set_rules(vec![rule(
            "*",
            RuleStage::Rcpt,
            Some("550 5.7.1 Service unavailable; client host [127.0.0.2] blocked using zen.spamhaus.org"),
            None,
        )])
        .unwrap();
    let leads: Vec<String> = (0..50).map(|n| format!("p{n}@blocked.test")).collect();
    let scenario = rig
        .campaign_with_leads(&leads.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    scenario.start().await.unwrap();

    // The first refusals suspend the pair; everything else waits in Postgres.
    crate::support::wait_for(
        "every job bounced or postponed",
        Duration::from_secs(30),
        || async {
            let counts = rig.job_counts().await;
            let bounced = counts.get("bounced").copied().unwrap_or(0);
            let pending = counts.get("pending").copied().unwrap_or(0);
            (bounced + pending == 50 && bounced >= 1).then_some(())
        },
    )
    .await;
    let stats = rig.sink.stats();
    assert!(
        stats.rejected_5xx <= 2,
        "{} attempts reached the blocked provider",
        stats.rejected_5xx
    );
    let rows = rig
        .env
        .psql("SELECT count(*) FROM send_jobs WHERE status = 'pending' AND run_at > now() + interval '50 minutes' AND last_reply LIKE 'postponed: provider suspended%'")
        .await;
    let pending = rig.job_counts().await.get("pending").copied().unwrap_or(0);
    assert_eq!(
        rows[0].get::<_, i64>(0),
        pending,
        "postponed jobs wait for the suspension to end"
    );
    let classes = crate::support::wait_for("bounce events", Duration::from_secs(10), || async {
        let rows = rig
            .env
            .psql("SELECT DISTINCT class FROM delivery_events WHERE kind = 'bounced'")
            .await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(classes.len(), 1);
    assert_eq!(classes[0].get::<_, String>(0), "policy_block");
    assert!(
        rig.sink.stats().rejected_5xx <= 2,
        "still no traffic to the suspended pair"
    );
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_are_reused_within_the_provider_caps() {
    let rig = Rig::start(|c| {
        c.delivery.providers = vec![penguin_config::ProviderConfig {
            name: "loopback".into(),
            mx_patterns: Some(vec!["127.0.0.1".into()]),
            max_connections: Some(2),
            max_messages_per_connection: Some(7),
            max_messages_per_hour: Some(0),
        }];
    })
    .await;
    let scenario = rig.scenario(vec![vec!["127.0.0.2"]], 210).await;
    scenario.start().await.unwrap();
    rig.wait_until_done(&scenario, Duration::from_secs(60))
        .await;
    let stats = rig.sink.stats();
    let source: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(stats.messages_accepted, 210);
    assert!(
        stats.peak_open_connections_per_source_ip[&source] <= 2,
        "{stats:?}"
    );
    assert!(
        stats.connections >= 30,
        "at most 7 messages per connection: {}",
        stats.connections
    );
    assert!(
        stats.connections <= 45,
        "connections are reused: {}",
        stats.connections
    );
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_hourly_cap_postpones_the_rest_to_the_next_hour() {
    let (rig, clock) = Rig::start_with_clock(|c| {
        c.delivery.providers = vec![penguin_config::ProviderConfig {
            name: "loopback".into(),
            mx_patterns: Some(vec!["127.0.0.1".into()]),
            max_connections: None,
            max_messages_per_connection: None,
            max_messages_per_hour: Some(10),
        }];
    })
    .await;
    let scenario = rig.scenario(vec![vec!["127.0.0.2"]], 25).await;
    scenario.start().await.unwrap();
    rig.wait_for_jobs("sent", 10, Duration::from_secs(30)).await;
    rig.wait_for_jobs("pending", 15, Duration::from_secs(30))
        .await;
    assert_eq!(rig.sink.stats().messages_accepted, 10, "the cap holds");
    clock.advance(Duration::from_secs(3600));
    rig.wait_for_jobs("sent", 20, Duration::from_secs(30)).await;
    rig.wait_for_jobs("pending", 5, Duration::from_secs(30))
        .await;
    assert_eq!(
        rig.sink.stats().messages_accepted,
        20,
        "ten more in the next hour"
    );
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unresolvable_domains_bounce_with_the_reason() {
    let resolver = FakeResolver::new()
        .with_nxdomain("nowhere.test")
        .with_mx("nullmx.test", &[(0, ".")]);
    let options = RigOptions {
        resolver: Some(Arc::new(resolver)),
        routed_domains: Some(vec!["ok.test".into()]),
        ..RigOptions::default()
    };
    let rig = Rig::start_with(|_| {}, options).await;
    let scenario = rig
        .campaign_with_leads(&["a@ok.test", "b@nowhere.test", "c@nullmx.test"])
        .await;
    scenario.start().await.unwrap();
    rig.wait_until_done(&scenario, Duration::from_secs(30))
        .await;
    let rows = rig
        .env
        .psql("SELECT l.email, j.status, j.last_reply FROM send_jobs j JOIN leads l ON l.id = j.lead_id ORDER BY l.email")
        .await;
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get::<_, Option<String>>(2).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(got[0].1, "sent");
    assert_eq!(got[1].1, "bounced");
    assert!(
        got[1].2.to_lowercase().contains("nowhere.test"),
        "reason names the domain: {}",
        got[1].2
    );
    assert_eq!(got[2].1, "bounced");
    assert!(
        got[2].2.to_lowercase().contains("null mx"),
        "reason says null MX: {}",
        got[2].2
    );
    assert_eq!(rig.sink.stats().messages_accepted, 1);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn required_tls_never_falls_back_to_plain() {
    let rig = Rig::start(|c| {
        c.delivery.tls = penguin_config::TlsPolicy::Required;
    })
    .await;
    let scenario = rig.campaign_with_leads(&["a@tls.test", "b@tls.test"]).await;
    scenario.start().await.unwrap();
    rig.wait_for_jobs("deferred", 2, Duration::from_secs(30))
        .await;
    assert_eq!(
        rig.sink.stats().messages_accepted,
        0,
        "nothing sent in plain text"
    );
    let rows = rig.env.psql("SELECT last_reply FROM send_jobs").await;
    for row in rows {
        let reply: String = row.get(0);
        assert!(reply.contains("TLS"), "the deferral names TLS: {reply}");
    }
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_address_suppressed_while_its_job_waits_for_a_retry_is_never_sent() {
    let (rig, clock) = Rig::start_with_clock(|_| {}).await;
    rig.sink
        .set_rules(vec![rule(
            "*",
            RuleStage::Rcpt,
            Some("451 4.3.0 try later"),
            Some(1),
        )])
        .unwrap();
    let scenario = rig
        .campaign_with_leads(&["stop@later.test", "go@later.test"])
        .await;
    scenario.start().await.unwrap();
    rig.wait_for_jobs("deferred", 2, Duration::from_secs(30))
        .await;

    // The recipient unsubscribes (through the API) while the retry waits.
    let tenant = &scenario.tenants[0];
    scenario
        .client
        .post(
            "/v1/suppressions",
            &tenant.token,
            &serde_json::json!({"emails": ["stop@later.test"], "reason": "unsubscribe"}),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(400));
    rig.wait_until_done(&scenario, Duration::from_secs(30))
        .await;
    let counts = rig.job_counts().await;
    assert_eq!(counts.get("suppressed"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("sent"), Some(&1), "{counts:?}");
    let received: Vec<String> = rig
        .sink
        .messages()
        .into_iter()
        .flat_map(|m| m.rcpt_to)
        .collect();
    assert_eq!(received, vec!["go@later.test".to_string()]);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_deferred_past_the_maximum_attempts_fails_with_the_reason() {
    let (rig, clock) = Rig::start_with_clock(|c| c.delivery.retry.max_attempts = 2).await;
    rig.sink
        .set_rules(vec![rule(
            "*",
            RuleStage::Rcpt,
            Some("451 4.4.1 no answer from host"),
            None,
        )])
        .unwrap();
    let scenario = rig.campaign_with_leads(&["never@later.test"]).await;
    scenario.start().await.unwrap();
    rig.wait_for_jobs("deferred", 1, Duration::from_secs(30))
        .await;
    clock.advance(Duration::from_secs(400));
    rig.wait_for_jobs("failed", 1, Duration::from_secs(30))
        .await;
    let rows = rig
        .env
        .psql("SELECT attempts, last_reply FROM send_jobs")
        .await;
    assert_eq!(rows[0].get::<_, i32>(0), 2);
    let reply: String = rows[0].get(1);
    assert!(
        reply.contains("451 4.4.1") && reply.contains("maximum attempts"),
        "{reply}"
    );
    assert_eq!(rig.sink.stats().rejected_4xx, 2);
    rig.shutdown().await;
}
