//! Greylisting is a deferral, not a signal (issue 14, README "Shaping units"):
//! 3 recipients at 3 greylisting domains (each answers `451 4.7.1 Greylisted,
//! please try again later` once per recipient) among 300 recipients at 30
//! ordinary domains, each domain its own MX site. All 300 are sent while the
//! engine's clock stands still, and no reply rule fires (the node's
//! `penguin_reply_rules_matched_total` counts no `slow_down` or `suspend`); the 3
//! greylisted recipients are deferred with the class `greylisted` and the short
//! first retry (`[delivery.greylist] first_retry_secs`, not the normal backoff),
//! and are sent once the clock reaches it. Greylisting also stays out of the
//! health breakers: however high the share of greylisted recipients, no
//! deferral-rate trip pauses or slows the IP.

use std::time::Duration;

use serde_json::Value;

use crate::support::api::ApiClient;
use crate::support::sites::{SiteRig, WAIT, leads, own_mx, rcpt_rule};
use crate::support::{admin_token, wait_for};

const GREYLIST: &str = "451 4.7.1 Greylisted, please try again later";
/// The greylisting retry, well apart from the normal first retry below.
const FIRST_RETRY_SECS: u64 = 60;
const BASE_DELAY_SECS: u64 = 900;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn greylisted_recipients_do_not_slow_the_other_sites() {
    let ordinary: Vec<String> = (0..30).map(|i| format!("o{i}.grey.test")).collect();
    let greylisting: Vec<String> = (0..3).map(|i| format!("g{i}.grey.test")).collect();
    let domains: Vec<String> = ordinary.iter().chain(&greylisting).cloned().collect();
    let clock = penguin_engine::clock::ManualClock::new(
        time::OffsetDateTime::now_utc() + Duration::from_secs(60),
    );
    let rig = SiteRig::start("127.0.0.81", &own_mx(&domains), Some(clock.clone()), |c| {
        c.delivery.greylist.first_retry_secs = FIRST_RETRY_SECS;
        c.delivery.retry.base_delay_secs = BASE_DELAY_SECS;
    })
    .await;
    rig.sink
        .set_rules(
            greylisting
                .iter()
                .map(|d| rcpt_rule(d, GREYLIST, Some(1)))
                .collect(),
        )
        .unwrap();
    let mut emails: Vec<String> = greylisting.iter().flat_map(|d| leads(d, 1)).collect();
    emails.extend(ordinary.iter().flat_map(|d| leads(d, 10)));
    let _scenario = rig.first_campaign(&emails).await;

    rig.wait_for_status("@g0.grey.test", "deferred", 1).await;
    rig.wait_for_status("@g1.grey.test", "deferred", 1).await;
    rig.wait_for_status("@g2.grey.test", "deferred", 1).await;
    rig.wait_for_status(".grey.test", "sent", 300).await;
    assert_eq!(rig.sink.stats().messages_accepted, 300);
    assert_eq!(
        rig.rule_matches("slow_down").await,
        0.0,
        "greylisting slowed something down"
    );
    assert_eq!(rig.rule_matches("suspend").await, 0.0);

    // The job's status and its delivery event are written apart (the event by
    // the analytics actor), so the events are awaited, not read at once.
    let rows = wait_for(
        "one deferred event per greylisted recipient",
        Duration::from_secs(30),
        || async {
            let rows = rig
                .rig
                .env
                .psql(
                    "SELECT j.run_at, j.first_attempt_at, e.class FROM send_jobs j
                     JOIN leads l ON l.id = j.lead_id
                     JOIN delivery_events e ON e.job_id = j.id AND e.kind = 'deferred'
                     WHERE l.email LIKE '%@g_.grey.test'",
                )
                .await;
            (rows.len() >= 3).then_some(rows)
        },
    )
    .await;
    assert_eq!(rows.len(), 3, "one deferred event per greylisted recipient");
    let mut latest = None;
    for row in &rows {
        let run_at: time::OffsetDateTime = row.get(0);
        let first: time::OffsetDateTime = row.get(1);
        let class: Option<String> = row.get(2);
        assert_eq!(class.as_deref(), Some("greylisted"));
        let delay = (run_at - first).as_seconds_f64();
        let short = FIRST_RETRY_SECS as f64;
        assert!(
            (short..=short * 1.1 + 1.0).contains(&delay),
            "retry {delay} s after the attempt, expected the greylisting retry of {short} s"
        );
        latest = latest.max(Some(run_at));
    }

    clock.set(latest.expect("three rows"));
    rig.wait_for_status(".grey.test", "sent", 303).await;
    assert_eq!(rig.sink.stats().messages_accepted, 303);
    rig.shutdown().await;
}

/// Greylisting stays out of the health breakers (the deferral is not a
/// reputation signal): with breakers judging after 10 attempts and pausing at a
/// 20 % deferral rate, 20 recipients greylisted at 20 sites (one each, below
/// `[delivery.greylist] throttle_recipients`) beside 20 delivered recipients
/// would be a 50 % deferral rate if they counted. No breaker fires: the node's
/// `penguin_ip_health_trips_total` stays absent, the IP is not paused and its
/// rate factor stays 1, and a second campaign to other sites is sent in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn greylisting_does_not_trip_the_health_breakers() {
    let greylisting: Vec<String> = (0..20).map(|i| format!("g{i}.gh.test")).collect();
    let ordinary: Vec<String> = (0..10).map(|i| format!("o{i}.gh.test")).collect();
    let later: Vec<String> = (0..10).map(|i| format!("p{i}.gh.test")).collect();
    let domains: Vec<String> = [&greylisting, &ordinary, &later]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    // The clock stands still: no greylisted recipient is retried.
    let clock = penguin_engine::clock::ManualClock::new(
        time::OffsetDateTime::now_utc() + Duration::from_secs(60),
    );
    let rig = SiteRig::start("127.0.0.85", &own_mx(&domains), Some(clock), |c| {
        c.health.min_sends = 10;
        c.health.deferral_warning = 0.1;
        c.health.deferral_critical = 0.2;
    })
    .await;
    rig.sink
        .set_rules(
            greylisting
                .iter()
                .map(|d| rcpt_rule(d, GREYLIST, None))
                .collect(),
        )
        .unwrap();
    let mut emails: Vec<String> = greylisting.iter().flat_map(|d| leads(d, 1)).collect();
    emails.extend(ordinary.iter().flat_map(|d| leads(d, 2)));
    let scenario = rig.first_campaign(&emails).await;
    // Every recipient tried once, or a breaker fired (then fail on that).
    let trips = wait_for(
        "20 deferred and 20 sent, or a health trip",
        WAIT,
        || async {
            let trips: Vec<String> = health_trips(&rig.rig.metrics().await);
            let statuses = rig.statuses(".gh.test").await;
            let tried = statuses.get("deferred") == Some(&20) && statuses.get("sent") == Some(&20);
            (tried || !trips.is_empty()).then_some(trips)
        },
    )
    .await;
    assert!(trips.is_empty(), "a health breaker fired: {trips:?}");
    let ip = scenario.tenants[0].ips[0].0;
    let shown = ApiClient::new(&rig.rig.node().api_url())
        .get(&format!("/v1/ips/{ip}"), Some(admin_token()))
        .await;
    let shown = shown.expect(200);
    assert_ne!(shown["state"], "paused", "{shown:#}");
    assert_eq!(shown["status"], "active", "{shown:#}");
    assert_eq!(shown["paused_until"], Value::Null, "{shown:#}");
    assert_eq!(shown["rate_factor"], 1.0, "{shown:#}");

    // Other mail keeps flowing: a second campaign to other sites, in full.
    let next: Vec<String> = later.iter().flat_map(|d| leads(d, 2)).collect();
    rig.next_campaign(&scenario, &next).await;
    rig.wait_for_status(".gh.test", "sent", 40).await;
    assert_eq!(rig.sink.stats().messages_accepted, 40);
    let trips = health_trips(&rig.rig.metrics().await);
    assert!(trips.is_empty(), "a health breaker fired: {trips:?}");
    rig.shutdown().await;
}

/// The `penguin_ip_health_trips_total` lines of a `/metrics` page.
fn health_trips(page: &str) -> Vec<String> {
    page.lines()
        .filter(|line| line.starts_with("penguin_ip_health_trips_total"))
        .map(str::to_string)
        .collect()
}
