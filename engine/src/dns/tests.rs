//! The resolution policy, on the in-memory resolver. The hickory adapter against a
//! real (loopback) DNS server is tested in `engine/tests/dns_mx.rs`.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use penguin_config::Route;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn mx(preference: u16, exchange: &str) -> MxRecord {
    MxRecord {
        preference,
        exchange: exchange.to_owned(),
    }
}

fn hosts(list: &[MxHost]) -> Vec<&str> {
    list.iter().map(|h| h.host.as_str()).collect()
}

#[test]
fn order_is_by_preference_with_ties_shuffled() {
    let records = vec![mx(30, "c"), mx(10, "a1"), mx(20, "b"), mx(10, "a2")];
    let mut seen_first = HashSet::new();
    for seed in 0..64 {
        let ordered =
            order_mx("d.test", records.clone(), &mut StdRng::seed_from_u64(seed)).unwrap();
        let prefs: Vec<u16> = ordered.iter().map(|h| h.preference).collect();
        assert_eq!(prefs, [10, 10, 20, 30]);
        assert_eq!(&hosts(&ordered)[2..], ["b", "c"]);
        seen_first.insert(ordered[0].host.clone());
    }
    // Both hosts of the best preference lead sometimes: load is spread.
    assert_eq!(
        seen_first,
        HashSet::from(["a1".to_owned(), "a2".to_owned()])
    );
}

#[test]
fn duplicate_hosts_keep_their_best_preference() {
    let ordered = order_mx(
        "d.test",
        vec![mx(20, "a"), mx(10, "b"), mx(5, "a")],
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap();
    assert_eq!(hosts(&ordered), ["a", "b"]);
    assert_eq!(ordered[0].preference, 5);
}

#[test]
fn null_mx_alone_is_permanent_beside_real_ones_ignored() {
    let mut rng = StdRng::seed_from_u64(1);
    let err = order_mx("d.test", vec![mx(0, "")], &mut rng).unwrap_err();
    assert_eq!(
        err,
        DnsError::NullMx {
            domain: "d.test".into()
        }
    );
    assert!(err.is_permanent());
    let ordered = order_mx("d.test", vec![mx(0, ""), mx(10, "mx.d.test")], &mut rng).unwrap();
    assert_eq!(hosts(&ordered), ["mx.d.test"]);
}

#[tokio::test]
async fn resolve_applies_the_rfc_policy() {
    let dns = FakeResolver::new()
        .with_mx(
            "Multi.Test.",
            &[(20, "MX2.multi.test."), (10, "mx1.multi.test")],
        )
        .with_addresses("noMX.test", &[ADDR])
        .with_mx("null.test", &[(0, ".")])
        .with_nxdomain("gone.test")
        .with_failure("flaky.test", "SERVFAIL");

    let multi = dns.resolve("multi.TEST").await.unwrap();
    assert_eq!(hosts(&multi), ["mx1.multi.test", "mx2.multi.test"]);

    let implicit = dns.resolve("nomx.test.").await.unwrap();
    assert_eq!(
        implicit,
        [MxHost {
            host: "nomx.test".into(),
            preference: 0
        }]
    );

    let cases = [
        ("null.test", "NullMx", true),
        ("gone.test", "NoSuchDomain", true),
        ("bare.test", "NoMailHost", true),
        ("flaky.test", "Temporary", false),
        ("a..test", "InvalidName", true),
        ("", "InvalidName", true),
    ];
    for (domain, variant, permanent) in cases {
        let err = dns.resolve(domain).await.unwrap_err();
        assert!(format!("{err:?}").starts_with(variant), "{domain}: {err:?}");
        assert_eq!(err.is_permanent(), permanent, "{domain}");
    }
}

#[tokio::test]
async fn address_lookups() {
    let dns = FakeResolver::new()
        .with_addresses("mx.a.test", &[ADDR])
        .with_nxdomain("gone.test");
    assert_eq!(dns.resolve_addresses("MX.a.test.").await.unwrap(), [ADDR]);
    assert_eq!(dns.resolve_addresses("192.0.2.1").await.unwrap(), [ADDR]);
    assert_eq!(
        dns.resolve_addresses("none.a.test").await.unwrap_err(),
        DnsError::NoAddresses {
            host: "none.a.test".into()
        }
    );
    assert!(matches!(
        dns.resolve_addresses("gone.test").await,
        Err(DnsError::NoSuchDomain { .. })
    ));
}

#[tokio::test]
async fn routed_domains_skip_dns_others_go_to_their_mx() {
    let route = |domain: &str, host: &str, port| Route {
        domain: domain.into(),
        host: host.into(),
        port,
    };
    let dns = FakeResolver::new().with_mx("b.test", &[(5, "mx.b.test")]);

    let exact = RouteTable::new(&[route("A.test", "10.0.0.1", 2525)]);
    let got = destinations(&exact, &dns, "a.test.").await.unwrap();
    assert_eq!(
        got,
        [Destination {
            host: "10.0.0.1".into(),
            port: 2525
        }]
    );
    assert_eq!(dns.lookups(), 0, "a routed domain must not reach DNS");

    let got = destinations(&exact, &dns, "b.test").await.unwrap();
    assert_eq!(
        got,
        [Destination {
            host: "mx.b.test".into(),
            port: SMTP_PORT
        }]
    );
    assert_eq!(dns.lookups(), 1);

    let wildcard = RouteTable::new(&[route("*", "127.0.0.1", 2525)]);
    let got = destinations(&wildcard, &dns, "anything.test")
        .await
        .unwrap();
    assert_eq!(got[0].port, 2525);
    assert_eq!(dns.lookups(), 1);

    let err = destinations(&RouteTable::default(), &dns, "c.test")
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::NoMailHost { .. }), "{err:?}");
}

#[test]
fn route_lookup_tells_routed_from_unrouted() {
    let table = RouteTable::new(&[Route {
        domain: "a.test".into(),
        host: "h".into(),
        port: 1,
    }]);
    assert!(table.lookup("A.TEST.").is_some());
    assert!(table.lookup("b.test").is_none());
    assert!(RouteTable::default().lookup("a.test").is_none());
}

#[test]
fn names_are_normalized_or_rejected() {
    assert_eq!(normalize_name(" Example.COM. ").unwrap(), "example.com");
    for bad in ["", ".", "a..b", "a b.test", "user@a.test", &"a".repeat(254)] {
        assert!(
            matches!(normalize_name(bad), Err(DnsError::InvalidName { .. })),
            "{bad}"
        );
    }
}
