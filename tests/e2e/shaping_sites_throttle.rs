//! A site that really throttles is slowed alone (issue 14, README "Shaping
//! units"): every recipient at one site is answered `451 4.7.1 Greylisted,
//! please try again later`, every time. Once `[delivery.greylist]
//! throttle_recipients` (5) distinct recipients of that site were greylisted
//! within the window, it counts as throttling: the reply rule it matches
//! (`try_again_later`, its factor made steep here) slows that site down —
//! exactly once. A slow-down multiplies what the site was observed doing
//! (five messages in five minutes, 60/h) and never leaves less than the floor of
//! 60/h (`actors/src/shaping_rate.rs`), so the site may take 60 this hour: when
//! it stops greylisting and 60 more are offered, exactly 55 go and 5 are
//! postponed as slowed, while the ten other sites (each its own MX site, all
//! under the `default` provider) keep sending everything at once.

use crate::support::sites::{SiteRig, own_mx, rcpt_rule};

fn emails(domain: &str, from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("r{i}@{domain}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttling_site_is_slowed_alone() {
    let throttling = "t.thr.test";
    let ordinary: Vec<String> = (0..10).map(|i| format!("o{i}.thr.test")).collect();
    let mut domains = ordinary.clone();
    domains.push(throttling.into());
    let rig = SiteRig::start("127.0.0.82", &own_mx(&domains), None, |c| {
        c.delivery.greylist.throttle_recipients = 5;
        let rule = c
            .delivery
            .reply_rules
            .iter_mut()
            .find(|r| r.name.as_deref() == Some("try_again_later"))
            .expect("the shipped try_again_later rule");
        rule.factor = Some(0.01);
    })
    .await;
    rig.sink
        .set_rules(vec![rcpt_rule(
            throttling,
            "451 4.7.1 Greylisted, please try again later",
            None,
        )])
        .unwrap();

    let mut first = emails(throttling, 0, 5);
    first.extend(ordinary.iter().flat_map(|d| emails(d, 0, 5)));
    let scenario = rig.first_campaign(&first).await;
    rig.wait_for_status("@t.thr.test", "deferred", 5).await;
    rig.wait_for_status(".thr.test", "sent", 50).await;
    assert_eq!(
        rig.rule_matches("slow_down").await,
        1.0,
        "five greylisted recipients of one site: one slow-down, of that site"
    );

    // The site stops refusing; the slow-down still holds it to 60 this hour.
    rig.sink.set_rules(Vec::new()).unwrap();
    let mut second = emails(throttling, 5, 65);
    second.extend(ordinary.iter().flat_map(|d| emails(d, 5, 10)));
    rig.next_campaign(&scenario, &second).await;
    rig.wait_for_status(".thr.test", "sent", 155).await;
    let postponed = rig.wait_for_postponed("@t.thr.test", 5).await;
    assert!(
        postponed.iter().all(|r| r.contains("slowed")),
        "{postponed:?}"
    );
    let row = rig
        .rig
        .env
        .psql("SELECT key, effective_per_hour FROM ip_shaping_actions WHERE action = 'slow_down'")
        .await;
    assert_eq!(row.len(), 1, "one slow-down recorded");
    let key: String = row[0].get(0);
    assert!(
        key.starts_with("site:") && key.contains("t.thr.test"),
        "{key}"
    );
    assert_eq!(
        row[0].get::<_, i32>(1),
        60,
        "the floor: 0.01 × 60/h observed"
    );
    assert_eq!(rig.sink.stats().messages_accepted, 155);
    assert_eq!(rig.rule_matches("slow_down").await, 1.0);
    rig.shutdown().await;
}
