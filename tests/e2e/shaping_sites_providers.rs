//! Named providers keep their shared shaping (issue 14, README "Shaping
//! units"): two domains hosted by Google (MX `aspmx.l.google.com` and
//! `alt1.aspmx.l.google.com`, two different MX sites) are one unit, `google`. A
//! block-list rejection at one suspends the other too, while ordinary sites
//! (each its own unit) keep sending.

use crate::support::sites::{SiteRig, rcpt_rule};

fn emails(domain: &str, from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("r{i}@{domain}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suspension_of_one_google_domain_holds_the_other() {
    let ordinary: Vec<String> = (0..5).map(|i| format!("o{i}.gm.test")).collect();
    let mut sites: Vec<(&str, Vec<String>)> = vec![
        ("g1.gm.test", vec!["aspmx.l.google.com".into()]),
        ("g2.gm.test", vec!["alt1.aspmx.l.google.com".into()]),
    ];
    sites.extend(
        ordinary
            .iter()
            .map(|d| (d.as_str(), vec![format!("mx.{d}")])),
    );
    let rig = SiteRig::start("127.0.0.84", &sites, None, |_| {}).await;
    rig.sink
        .set_rules(vec![rcpt_rule(
            "g1.gm.test",
            "550 5.7.1 Service unavailable, Client host [127.0.0.2] blocked using zen.spamhaus.org",
            None,
        )])
        .unwrap();

    let mut first = emails("g1.gm.test", 0, 1);
    first.extend(ordinary.iter().flat_map(|d| emails(d, 0, 5)));
    let scenario = rig.first_campaign(&first).await;
    rig.wait_for_status("@g1.gm.test", "bounced", 1).await;
    rig.wait_for_status(".gm.test", "sent", 25).await;
    assert_eq!(rig.rule_matches("suspend").await, 1.0);

    let mut second = emails("g2.gm.test", 0, 3);
    second.extend(ordinary.iter().flat_map(|d| emails(d, 5, 10)));
    rig.next_campaign(&scenario, &second).await;
    rig.wait_for_status(".gm.test", "sent", 50).await;
    let postponed = rig.wait_for_postponed("@g2.gm.test", 3).await;
    assert!(
        postponed.iter().all(|r| r.contains("suspended")),
        "{postponed:?}"
    );
    assert_eq!(rig.sink.stats().messages_accepted, 50);
    rig.shutdown().await;
}
