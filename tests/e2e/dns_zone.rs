//! The test DNS zone serves what a test added and stops serving what it
//! removed, as the node's real resolver sees it: `HickoryResolver` built from
//! the zone's `[delivery.dns]` settings verifies a sending domain through
//! `domain_check::verify`, then sees a removed DKIM key as absent and a changed
//! SPF record as failing.

use std::net::IpAddr;
use std::time::Duration;

use penguin_engine::dns::HickoryResolver;
use penguin_engine::domain_check::{self, Check, Expected, NO_RECORD, dmarc_value, spf_value};

use crate::support::dns_zone::DnsZone;
use crate::support::wait_for_showing;

/// A 2048-bit RSA key's length of base64: the zone must split the record.
fn dkim_value() -> String {
    format!("v=DKIM1; k=rsa; p=MIIBIjANBgkq{}IDAQAB", "Q".repeat(380))
}

/// Verifies until `done` holds for the checks (10 s at most) and returns them.
async fn verify_until(
    what: &str,
    resolver: &HickoryResolver,
    expected: &Expected<'_>,
    done: impl Fn(&[Check]) -> bool,
) -> Vec<Check> {
    let done = &done;
    wait_for_showing(what, Duration::from_secs(10), move || async move {
        let checks = domain_check::verify(resolver, expected).await;
        if done(&checks) {
            Ok(checks)
        } else {
            Err(checks)
        }
    })
    .await
}

fn by_name<'c>(checks: &'c [Check], name: &str) -> &'c Check {
    checks.iter().find(|c| c.name == name).expect(name)
}

#[tokio::test]
async fn zone_serves_added_records_and_forgets_removed_ones() {
    let zone = DnsZone::start().await;
    let ip: IpAddr = "192.0.2.25".parse().unwrap();
    let expected = Expected {
        domain: "news.acme.test",
        dkim: vec![("pg1".into(), dkim_value())],
        ips: vec![ip],
    };
    let resolver = HickoryResolver::from_config(&zone.dns_config()).unwrap();

    // Nothing published yet: every required record is absent.
    let checks = domain_check::verify(&resolver, &expected).await;
    assert_eq!(domain_check::status(&checks), "pending", "{checks:#?}");
    assert!(checks.iter().all(|c| c.found == NO_RECORD), "{checks:#?}");

    zone.add_txt("pg1._domainkey.news.acme.test", &dkim_value())
        .await;
    zone.add_txt("news.acme.test", &spf_value(&[ip])).await;
    zone.add_txt("_dmarc.news.acme.test", &dmarc_value("news.acme.test"))
        .await;
    zone.add_a("mta.acme.test", ip).await;
    zone.add_ptr(ip, "mta.acme.test").await;

    let checks = verify_until("the domain to verify", &resolver, &expected, |checks| {
        domain_check::status(checks) == "verified"
    })
    .await;
    assert_eq!(by_name(&checks, "dkim:pg1").found, dkim_value());
    assert!(by_name(&checks, "ptr:192.0.2.25").ok, "{checks:#?}");

    // Removed: the key is no longer served; the PTR neither.
    zone.remove("pg1._domainkey.news.acme.test").await;
    zone.remove("192.0.2.25").await;
    let checks = verify_until("the key to be gone", &resolver, &expected, |checks| {
        by_name(checks, "dkim:pg1").found == NO_RECORD
    })
    .await;
    assert_eq!(domain_check::status(&checks), "pending");
    assert_eq!(by_name(&checks, "ptr:192.0.2.25").found, NO_RECORD);

    // Replaced: an SPF record without our IP fails.
    zone.add_txt("pg1._domainkey.news.acme.test", &dkim_value())
        .await;
    zone.remove("news.acme.test").await;
    zone.add_txt("news.acme.test", "v=spf1 ip4:198.51.100.1 -all")
        .await;
    let checks = verify_until(
        "the new SPF record to fail",
        &resolver,
        &expected,
        |checks| domain_check::status(checks) == "failed",
    )
    .await;
    assert_eq!(
        by_name(&checks, "spf").found,
        "192.0.2.25: fail (matched -all at news.acme.test); record: v=spf1 ip4:198.51.100.1 -all"
    );
    assert!(by_name(&checks, "dkim:pg1").ok);
}
