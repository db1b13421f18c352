//! A DNSBL rejection at one site suspends that site only (issue 14, README
//! "Shaping units"): one recipient at one site is refused `550 5.7.1 … blocked
//! using zen.spamhaus.org`, which matches the shipped `blocklisted` rule
//! (suspend). The site's later mail is postponed as suspended; the ten other
//! sites (each its own MX site, all under the `default` provider) keep sending
//! everything.

use crate::support::sites::{SiteRig, own_mx, rcpt_rule};

fn emails(domain: &str, from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("r{i}@{domain}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocklisting_site_is_suspended_alone() {
    let blocking = "b.bl.test";
    let ordinary: Vec<String> = (0..10).map(|i| format!("o{i}.bl.test")).collect();
    let mut domains = ordinary.clone();
    domains.push(blocking.into());
    let rig = SiteRig::start("127.0.0.83", &own_mx(&domains), None, |_| {}).await;
    rig.sink
        .set_rules(vec![rcpt_rule(
            blocking,
            "550 5.7.1 Service unavailable, Client host [127.0.0.2] blocked using zen.spamhaus.org",
            None,
        )])
        .unwrap();

    let mut first = emails(blocking, 0, 1);
    first.extend(ordinary.iter().flat_map(|d| emails(d, 0, 5)));
    let scenario = rig.first_campaign(&first).await;
    rig.wait_for_status("@b.bl.test", "bounced", 1).await;
    rig.wait_for_status(".bl.test", "sent", 50).await;
    assert_eq!(rig.rule_matches("suspend").await, 1.0);

    let mut second = emails(blocking, 1, 4);
    second.extend(ordinary.iter().flat_map(|d| emails(d, 5, 10)));
    rig.next_campaign(&scenario, &second).await;
    rig.wait_for_status(".bl.test", "sent", 100).await;
    let postponed = rig.wait_for_postponed("@b.bl.test", 3).await;
    assert!(
        postponed.iter().all(|r| r.contains("suspended")),
        "{postponed:?}"
    );
    assert_eq!(rig.sink.stats().messages_accepted, 100);
    rig.shutdown().await;
}
