//! [`verify`] and [`status`] over a [`FakeResolver`] zone.

use std::net::IpAddr;

use super::*;
use crate::dns::FakeResolver;

const DKIM: &str = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAq1";
const DKIM_ED: &str = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn expected() -> Expected<'static> {
    Expected {
        domain: "acme.test",
        dkim: vec![("s1".into(), DKIM.into()), ("s2".into(), DKIM_ED.into())],
        ips: vec![ip("192.0.2.1"), ip("2001:db8::1")],
    }
}

/// Everything `expected()` asks for, and forward-confirmed DNS for the IPv4 only.
fn published() -> FakeResolver {
    FakeResolver::new()
        .with_txt("s1._domainkey.acme.test", &[DKIM])
        .with_txt("s2._domainkey.acme.test", &[DKIM_ED])
        .with_txt("acme.test", &[&spf_value(&expected().ips)])
        .with_txt("_dmarc.acme.test", &[&dmarc_value("acme.test")])
        .with_ptr(ip("192.0.2.1"), &["mta1.acme.test"])
        .with_addresses("mta1.acme.test", &[ip("192.0.2.1")])
}

fn check(name: &str, ok: bool, found: &str, required: bool) -> Check {
    Check {
        name: name.into(),
        ok,
        expected: "x".into(),
        found: found.into(),
        required,
    }
}

#[tokio::test]
async fn a_domain_that_published_everything_is_verified() {
    let dns = published();
    let checks = verify(&dns, &expected()).await;
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "dkim:s1",
            "dkim:s2",
            "spf",
            "dmarc",
            "ptr:192.0.2.1",
            "ptr:2001:db8::1"
        ]
    );
    let not_ok: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    assert_eq!(not_ok.len(), 1, "{not_ok:?}");
    assert_eq!(not_ok[0].name, "ptr:2001:db8::1");
    assert!(!not_ok[0].required);
    assert_eq!(status(&checks), "verified");
}

#[tokio::test]
async fn a_changed_record_fails_and_a_missing_one_is_pending() {
    let dns = published().with_txt("_dmarc.acme.test", &["v=DMARC1; p=none"]);
    // Two DMARC records: wrong, not absent.
    let checks = verify(&dns, &expected()).await;
    assert_eq!(status(&checks), "failed");

    let nothing = FakeResolver::new();
    let checks = verify(&nothing, &expected()).await;
    assert!(
        checks
            .iter()
            .filter(|c| c.required)
            .all(|c| c.found == NO_RECORD),
        "{checks:?}"
    );
    assert_eq!(status(&checks), "pending");
}

#[tokio::test]
async fn a_temporary_failure_fails_only_its_check() {
    let dns = published().with_failure("_dmarc.acme.test", "SERVFAIL");
    let checks = verify(&dns, &expected()).await;
    let dmarc = checks.iter().find(|c| c.name == "dmarc").unwrap();
    assert!(!dmarc.ok);
    assert_eq!(
        dmarc.found,
        "temporary DNS failure: _dmarc.acme.test: SERVFAIL"
    );
    assert!(
        checks
            .iter()
            .filter(|c| c.name != "dmarc" && c.required)
            .all(|c| c.ok)
    );
    assert_eq!(status(&checks), "pending");
}

/// A hostile SPF record (ten `mx` terms of ten hosts each: 110 lookups if
/// followed) costs at most the verification's cap, and fails.
#[tokio::test]
async fn a_hostile_spf_record_costs_at_most_the_cap() {
    let mut record = String::from("v=spf1");
    let mut dns = FakeResolver::new()
        .with_txt("s1._domainkey.acme.test", &[DKIM])
        .with_txt("s2._domainkey.acme.test", &[DKIM_ED])
        .with_txt("_dmarc.acme.test", &[&dmarc_value("acme.test")]);
    for m in 0..10 {
        let name = format!("m{m}.evil.test");
        let hosts: Vec<(u16, String)> = (0..10).map(|h| (10, format!("h{h}.{name}"))).collect();
        let hosts: Vec<(u16, &str)> = hosts.iter().map(|(p, h)| (*p, h.as_str())).collect();
        dns = dns.with_mx(&name, &hosts);
        record.push_str(&format!(" mx:{name}"));
    }
    record.push_str(" -all");
    let dns = dns.with_txt("acme.test", &[&record]);
    let checks = verify(&dns, &expected()).await;
    let spf = checks.iter().find(|c| c.name == "spf").unwrap();
    assert!(!spf.ok);
    assert!(
        spf.found.contains("reached its cap of 40 DNS lookups"),
        "{}",
        spf.found
    );
    // DKIM and DMARC ran first and were not starved.
    assert!(
        checks
            .iter()
            .filter(|c| c.name.starts_with("dkim") || c.name == "dmarc")
            .all(|c| c.ok)
    );
    let ptr_cap = expected().ips.len() * (ptr::MAX_PTR_NAMES + 1);
    assert!(
        dns.lookups() <= MAX_LOOKUPS_PER_VERIFY + ptr_cap,
        "{} lookups",
        dns.lookups()
    );
    assert_eq!(status(&checks), "failed");
}

#[test]
fn status_cases() {
    let ok = check("spf", true, "v=spf1 ~all", true);
    let ptr_bad = check("ptr:192.0.2.1", false, NO_RECORD, false);
    let ptr_wrong = check("ptr:192.0.2.1", false, "x does not resolve back", false);
    let absent = check("dmarc", false, NO_RECORD, true);
    let wrong = check(
        "dkim:s1",
        false,
        "v=DKIM1; p=other (p= is not the expected public key)",
        true,
    );
    let temporary = check("dmarc", false, "temporary DNS failure: x: SERVFAIL", true);

    assert_eq!(status(std::slice::from_ref(&ok)), "verified");
    assert_eq!(status(&[]), "verified");
    assert_eq!(
        status(&[ok.clone(), ptr_bad.clone(), ptr_wrong]),
        "verified"
    );
    assert_eq!(status(&[ok.clone(), absent.clone()]), "pending");
    assert_eq!(status(&[ok.clone(), temporary.clone()]), "pending");
    assert_eq!(status(&[absent.clone(), wrong.clone()]), "failed");
    assert_eq!(status(&[wrong, ok, temporary]), "failed");
    assert_eq!(status(&[ptr_bad, absent]), "pending");
}

#[test]
fn checks_serialize_with_the_contract_fields() {
    let json = serde_json::to_value(check("spf", true, "v=spf1 ~all", true)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"name": "spf", "ok": true, "expected": "x", "found": "v=spf1 ~all", "required": true})
    );
}
