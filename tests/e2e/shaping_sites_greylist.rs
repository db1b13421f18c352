//! Greylisting is a deferral, not a signal (issue 14, README "Shaping units"):
//! 3 recipients at 3 greylisting domains (each answers `451 4.7.1 Greylisted,
//! please try again later` once per recipient) among 300 recipients at 30
//! ordinary domains, each domain its own MX site. All 300 are sent while the
//! engine's clock stands still, and no reply rule fires (the node's
//! `penguin_reply_rules_matched_total` counts no `slow_down` or `suspend`); the 3
//! greylisted recipients are deferred with the class `greylisted` and the short
//! first retry (`[delivery.greylist] first_retry_secs`, not the normal backoff),
//! and are sent once the clock reaches it.

use std::time::Duration;

use crate::support::sites::{SiteRig, leads, own_mx, rcpt_rule};

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
