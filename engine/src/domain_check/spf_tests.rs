//! SPF evaluation against a [`FakeResolver`] zone.

use std::net::IpAddr;

use super::*;
use crate::dns::FakeResolver;
use crate::domain_check::MAX_LOOKUPS_PER_VERIFY;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

async fn outcome(dns: &FakeResolver, address: &str) -> Outcome {
    evaluate(
        &Lookups::new(dns, MAX_LOOKUPS_PER_VERIFY),
        ip(address),
        "acme.test",
    )
    .await
}

async fn spf_check(dns: &FakeResolver, ips: &[&str]) -> Check {
    let ips: Vec<IpAddr> = ips.iter().map(|a| ip(a)).collect();
    check(
        &Lookups::new(dns, MAX_LOOKUPS_PER_VERIFY),
        "acme.test",
        &ips,
    )
    .await
}

#[tokio::test]
async fn direct_ip_passes_and_others_soft_fail() {
    let dns = FakeResolver::new().with_txt(
        "acme.test",
        &[
            "google-site-verification=abc",
            "v=spf1 ip4:192.0.2.1 ip4:198.51.100.0/24 ~all",
        ],
    );
    assert_eq!(outcome(&dns, "192.0.2.1").await.result, SpfResult::Pass);
    assert_eq!(outcome(&dns, "198.51.100.77").await.result, SpfResult::Pass);
    let other = outcome(&dns, "192.0.2.2").await;
    assert_eq!(other.result, SpfResult::SoftFail);
    assert_eq!(other.why, "matched ~all at acme.test");
    let check = spf_check(&dns, &["192.0.2.1", "198.51.100.9"]).await;
    assert!(check.ok, "{check:?}");
    assert_eq!(check.found, "v=spf1 ip4:192.0.2.1 ip4:198.51.100.0/24 ~all");
    assert_eq!(check.expected, "v=spf1 ip4:192.0.2.1 ip4:198.51.100.9 ~all");
}

#[tokio::test]
async fn the_first_ip_that_does_not_pass_is_named() {
    let dns = FakeResolver::new().with_txt("acme.test", &["v=spf1 ip4:192.0.2.1 -all"]);
    let check = spf_check(&dns, &["192.0.2.1", "192.0.2.9", "192.0.2.10"]).await;
    assert!(!check.ok);
    assert_eq!(
        check.found,
        "192.0.2.9: fail (matched -all at acme.test); record: v=spf1 ip4:192.0.2.1 -all"
    );
}

#[tokio::test]
async fn all_before_the_ip_fails() {
    let dns = FakeResolver::new().with_txt("acme.test", &["v=spf1 -all ip4:192.0.2.1"]);
    let outcome = outcome(&dns, "192.0.2.1").await;
    assert_eq!(outcome.result, SpfResult::Fail);
    assert_eq!(outcome.why, "matched -all at acme.test");
}

#[tokio::test]
async fn ipv6_cidr() {
    let dns = FakeResolver::new().with_txt("acme.test", &["v=spf1 ip6:2001:db8::/32 -all"]);
    assert_eq!(outcome(&dns, "2001:db8:5::1").await.result, SpfResult::Pass);
    assert_eq!(outcome(&dns, "2001:db9::1").await.result, SpfResult::Fail);
    // An IPv4 address never matches an ip6 network.
    assert_eq!(outcome(&dns, "192.0.2.1").await.result, SpfResult::Fail);
}

#[tokio::test]
async fn include_passes_only_on_the_included_pass() {
    let dns = FakeResolver::new()
        .with_txt("acme.test", &["v=spf1 include:_spf.esp.test -all"])
        .with_txt("_spf.esp.test", &["v=spf1 ip4:192.0.2.0/24 ~all"]);
    assert_eq!(outcome(&dns, "192.0.2.44").await.result, SpfResult::Pass);
    // The included softfail is "no match": the outer -all decides.
    let other = outcome(&dns, "203.0.113.1").await;
    assert_eq!(other.result, SpfResult::Fail);
    assert_eq!(other.why, "matched -all at acme.test");
}

#[tokio::test]
async fn nested_include_chain() {
    let dns = FakeResolver::new()
        .with_txt("acme.test", &["v=spf1 include:one.test -all"])
        .with_txt("one.test", &["v=spf1 include:two.test -all"])
        .with_txt("two.test", &["v=spf1 include:three.test -all"])
        .with_txt("three.test", &["v=spf1 ip4:192.0.2.3 -all"]);
    let passed = outcome(&dns, "192.0.2.3").await;
    assert_eq!(passed.result, SpfResult::Pass);
    assert_eq!(passed.why, "matched include:one.test at acme.test");
    assert_eq!(outcome(&dns, "192.0.2.4").await.result, SpfResult::Fail);
    // An include without an SPF record is a permerror (RFC 7208 §5.2).
    let dns = FakeResolver::new().with_txt("acme.test", &["v=spf1 include:nothing.test -all"]);
    let broken = outcome(&dns, "192.0.2.3").await;
    assert_eq!(broken.result, SpfResult::PermError);
    assert!(
        broken.why.contains("no SPF record at nothing.test"),
        "{}",
        broken.why
    );
}

#[tokio::test]
async fn a_and_mx_with_cidr() {
    let dns = FakeResolver::new()
        .with_txt("acme.test", &["v=spf1 a mx:mail.acme.test/24 -all"])
        .with_addresses("acme.test", &[ip("192.0.2.10")])
        .with_mx(
            "mail.acme.test",
            &[(10, "mx1.acme.test"), (20, "mx2.acme.test")],
        )
        .with_addresses("mx1.acme.test", &[ip("203.0.113.5")])
        .with_addresses("mx2.acme.test", &[ip("198.51.100.5")]);
    assert_eq!(outcome(&dns, "192.0.2.10").await.result, SpfResult::Pass);
    assert_eq!(outcome(&dns, "192.0.2.11").await.result, SpfResult::Fail);
    assert_eq!(
        outcome(&dns, "198.51.100.200").await.result,
        SpfResult::Pass
    );
    let dns = FakeResolver::new()
        .with_txt("acme.test", &["v=spf1 a:v6.acme.test//64 -all"])
        .with_addresses("v6.acme.test", &[ip("2001:db8:1::1")]);
    assert_eq!(
        outcome(&dns, "2001:db8:1::ffff").await.result,
        SpfResult::Pass
    );
}

#[tokio::test]
async fn redirect_and_exists() {
    let dns = FakeResolver::new()
        .with_txt(
            "acme.test",
            &["v=spf1 ?exists:gate.acme.test redirect=_spf.esp.test"],
        )
        .with_txt("_spf.esp.test", &["v=spf1 ip4:192.0.2.5 -all"]);
    assert_eq!(outcome(&dns, "192.0.2.5").await.result, SpfResult::Pass);
    assert_eq!(outcome(&dns, "192.0.2.6").await.result, SpfResult::Fail);
    let dns = FakeResolver::new()
        .with_txt("acme.test", &["v=spf1 exists:gate.acme.test -all"])
        .with_addresses("gate.acme.test", &[ip("127.0.0.2")]);
    assert_eq!(outcome(&dns, "192.0.2.6").await.result, SpfResult::Pass);
}

#[tokio::test]
async fn more_than_ten_dns_terms_is_a_permerror() {
    let mut dns = FakeResolver::new();
    let mut record = String::from("v=spf1");
    for n in 1..=11 {
        let name = format!("i{n}.test");
        dns = dns.with_txt(&name, &["v=spf1 ?all"]);
        record.push_str(&format!(" include:{name}"));
    }
    record.push_str(" ip4:192.0.2.1 -all");
    let dns = dns.with_txt("acme.test", &[&record]);
    let outcome = outcome(&dns, "192.0.2.1").await;
    assert_eq!(outcome.result, SpfResult::PermError);
    assert!(
        outcome.why.starts_with("more than 10 DNS-querying terms"),
        "{}",
        outcome.why
    );
    // The eleventh include was never asked for.
    assert_eq!(dns.lookups(), 11);
    let check = spf_check(&dns, &["192.0.2.1"]).await;
    assert!(!check.ok);
    assert!(
        check
            .found
            .starts_with("192.0.2.1: permerror (more than 10"),
        "{}",
        check.found
    );
}

#[tokio::test]
async fn an_include_loop_stops_on_the_term_limit() {
    let dns = FakeResolver::new()
        .with_txt("acme.test", &["v=spf1 include:loop.test -all"])
        .with_txt("loop.test", &["v=spf1 include:acme.test -all"]);
    let outcome = outcome(&dns, "192.0.2.1").await;
    assert_eq!(outcome.result, SpfResult::PermError);
    assert!(outcome.why.contains("loop"), "{}", outcome.why);
    // Remembered answers: the loop asked each name once.
    assert_eq!(dns.lookups(), 2);
}

#[tokio::test]
async fn more_than_two_void_lookups_is_a_permerror() {
    let dns = FakeResolver::new()
        .with_txt(
            "acme.test",
            &["v=spf1 a:x.test a:y.test a:z.test ip4:192.0.2.1 -all"],
        )
        .with_nxdomain("y.test");
    let outcome = outcome(&dns, "192.0.2.1").await;
    assert_eq!(outcome.result, SpfResult::PermError);
    assert!(
        outcome.why.contains("more than 2 lookups found nothing"),
        "{}",
        outcome.why
    );
}

#[tokio::test]
async fn two_spf_records_is_a_permerror() {
    let dns = FakeResolver::new().with_txt(
        "acme.test",
        &["v=spf1 ip4:192.0.2.1 -all", "v=spf1 include:esp.test ~all"],
    );
    let check = spf_check(&dns, &["192.0.2.1"]).await;
    assert!(!check.ok);
    assert!(
        check
            .found
            .starts_with("permerror: 2 SPF records at acme.test"),
        "{}",
        check.found
    );
    let missing = spf_check(&FakeResolver::new(), &["192.0.2.1"]).await;
    assert_eq!(missing.found, NO_RECORD);
    let broken = FakeResolver::new().with_txt("acme.test", &["v=spf1 ip4:192.0.2.300 -all"]);
    let broken = spf_check(&broken, &["192.0.2.1"]).await;
    assert!(
        broken.found.contains("(permerror: ip4:192.0.2.300"),
        "{}",
        broken.found
    );
}

#[tokio::test]
async fn macros_and_ptr_are_named_in_found() {
    let dns = FakeResolver::new().with_txt(
        "acme.test",
        &["v=spf1 ip4:192.0.2.1 exists:%{i}.bl.acme.test -all"],
    );
    // The macro is never reached for an IP that matched before it.
    assert!(spf_check(&dns, &["192.0.2.1"]).await.ok);
    let check = spf_check(&dns, &["192.0.2.2"]).await;
    assert!(!check.ok);
    assert!(
        check
            .found
            .starts_with("192.0.2.2: unsupported (%{i}.bl.acme.test uses an SPF macro"),
        "{}",
        check.found
    );
    let dns = FakeResolver::new().with_txt("acme.test", &["v=spf1 ptr ~all"]);
    let check = spf_check(&dns, &["192.0.2.2"]).await;
    assert!(
        check
            .found
            .contains("a ptr mechanism was treated as not matching"),
        "{}",
        check.found
    );
}

#[tokio::test]
async fn a_temporary_failure_is_reported_as_such() {
    let dns = FakeResolver::new()
        .with_txt("acme.test", &["v=spf1 include:esp.test -all"])
        .with_failure("esp.test", "timed out");
    let check = spf_check(&dns, &["192.0.2.1"]).await;
    assert!(!check.ok);
    assert!(
        check
            .found
            .starts_with("temporary DNS failure: esp.test: timed out (evaluating 192.0.2.1)"),
        "{}",
        check.found
    );
}

#[tokio::test]
async fn every_ip_shares_the_lookups() {
    let dns = FakeResolver::new()
        .with_txt("acme.test", &["v=spf1 include:esp.test mx -all"])
        .with_txt("esp.test", &["v=spf1 ip4:192.0.2.0/28 -all"])
        .with_mx("acme.test", &[(10, "mx.acme.test")])
        .with_addresses("mx.acme.test", &[ip("203.0.113.9")]);
    let many = ["192.0.2.1", "192.0.2.2", "203.0.113.9", "192.0.2.3"];
    assert!(spf_check(&dns, &many).await.ok);
    assert_eq!(
        dns.lookups(),
        4,
        "acme.test, esp.test, its MX and the MX host, once each"
    );
}

#[test]
fn spf_value_lists_each_ip_once_then_softfail() {
    let ips = [ip("192.0.2.1"), ip("2001:db8::1"), ip("192.0.2.1")];
    assert_eq!(spf_value(&ips), "v=spf1 ip4:192.0.2.1 ip6:2001:db8::1 ~all");
    assert_eq!(spf_value(&[]), "v=spf1 ~all");
}
