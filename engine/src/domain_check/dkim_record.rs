//! The `dkim:<selector>` check: is the expected public key published at
//! `<selector>._domainkey.<domain>`?
//!
//! Records are compared as RFC 6376 §3.2 tag-value lists, not as text: tag order,
//! spacing and whitespace inside values (a key folded over several
//! character-strings) do not matter. What must agree: `p=` (non-empty: an empty
//! `p=` is a revoked key), `k=` (absent means `rsa`), and `v=` when present must
//! be `DKIM1`. Other tags (`t=`, `h=`, `n=`, …) are the publisher's business.

use super::lookups::Lookups;
use super::{Check, NO_RECORD};

pub(crate) async fn check(
    lookups: &Lookups<'_>,
    domain: &str,
    selector: &str,
    expected: &str,
) -> Check {
    let name = format!("dkim:{selector}");
    let found = match lookups
        .txt(&format!("{selector}._domainkey.{domain}"))
        .await
    {
        Ok(records) => judge(&records, expected),
        Err(err) => Err(err.found()),
    };
    let (ok, found) = match found {
        Ok(record) => (true, record),
        Err(why) => (false, why),
    };
    Check {
        name,
        ok,
        expected: expected.to_owned(),
        found,
        required: true,
    }
}

/// The matching record, or what is wrong with the records found.
fn judge(records: &[String], expected: &str) -> Result<String, String> {
    if records.is_empty() {
        return Err(NO_RECORD.to_owned());
    }
    let mut problems = Vec::new();
    for record in records {
        match matches(record, expected) {
            Ok(()) => return Ok(record.clone()),
            Err(problem) => problems.push(format!("{record} ({problem})")),
        }
    }
    Err(problems.join(" | "))
}

/// Whether `record` publishes the key of `expected`, and if not, why.
pub(crate) fn matches(record: &str, expected: &str) -> Result<(), String> {
    let found = tags(record);
    let wanted = tags(expected);
    if let Some(version) = tag(&found, "v")
        && version != "DKIM1"
    {
        return Err(format!("v={version} is not DKIM1"));
    }
    let found_k = tag(&found, "k").unwrap_or("rsa");
    let wanted_k = tag(&wanted, "k").unwrap_or("rsa");
    if !found_k.eq_ignore_ascii_case(wanted_k) {
        return Err(format!("k={found_k}, expected k={wanted_k}"));
    }
    match (tag(&found, "p"), tag(&wanted, "p")) {
        (None, _) => Err("no p= tag".to_owned()),
        (Some(""), _) => Err("empty p=: the key is revoked".to_owned()),
        (Some(found_p), Some(wanted_p)) if found_p == wanted_p => Ok(()),
        (Some(_), _) => Err("p= is not the expected public key".to_owned()),
    }
}

/// `tag=value` pairs; whitespace around tags and anywhere in values removed.
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|pair| {
            let (tag, value) = pair.split_once('=')?;
            let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
            Some((tag.trim().to_owned(), value))
        })
        .collect()
}

fn tag<'t>(tags: &'t [(String, String)], name: &str) -> Option<&'t str> {
    tags.iter()
        .find(|(tag, _)| tag == name)
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::FakeResolver;
    use crate::domain_check::MAX_LOOKUPS_PER_VERIFY;

    const KEY: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAq1";
    const VALUE: &str = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAq1";

    async fn run(dns: &FakeResolver, expected: &str) -> Check {
        let lookups = Lookups::new(dns, MAX_LOOKUPS_PER_VERIFY);
        check(&lookups, "acme.test", "s1", expected).await
    }

    #[tokio::test]
    async fn the_published_key_is_found() {
        let dns = FakeResolver::new()
            .with_txt("s1._domainkey.acme.test", &["k=rsa;p="])
            .with_txt("s1._domainkey.acme.test", &[&format!("p={KEY} ; v=DKIM1")]);
        let check = run(&dns, VALUE).await;
        assert!(check.ok, "{check:?}");
        assert_eq!(check.name, "dkim:s1");
        assert_eq!(check.expected, VALUE);
        assert_eq!(check.found, format!("p={KEY} ; v=DKIM1"));
        assert!(check.required);
    }

    #[tokio::test]
    async fn a_key_split_over_character_strings_is_joined() {
        let dns = FakeResolver::new().with_txt_strings(
            "s1._domainkey.acme.test",
            &[
                "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEF",
                "AAOCAQ8AMIIBCgKCAQEAq1",
            ],
        );
        assert!(run(&dns, VALUE).await.ok);
        // A UI that put a space where the record was folded changes nothing either.
        let dns = FakeResolver::new().with_txt(
            "s1._domainkey.acme.test",
            &["v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEF AAOCAQ8AMIIBCgKCAQEAq1"],
        );
        assert!(run(&dns, VALUE).await.ok);
    }

    #[tokio::test]
    async fn a_wrong_key_fails_and_says_why() {
        let dns = FakeResolver::new()
            .with_txt("s1._domainkey.acme.test", &["v=DKIM1; k=rsa; p=MIIBother"]);
        let check = run(&dns, VALUE).await;
        assert!(!check.ok);
        assert_eq!(
            check.found,
            "v=DKIM1; k=rsa; p=MIIBother (p= is not the expected public key)"
        );
        let dns = FakeResolver::new().with_txt(
            "s1._domainkey.acme.test",
            &[&format!("v=DKIM1; k=ed25519; p={KEY}")],
        );
        assert!(
            run(&dns, VALUE)
                .await
                .found
                .contains("k=ed25519, expected k=rsa")
        );
        let dns = FakeResolver::new().with_txt("s1._domainkey.acme.test", &["v=DKIM1; k=rsa; p="]);
        assert!(run(&dns, VALUE).await.found.contains("revoked"));
        let dns = FakeResolver::new()
            .with_txt("s1._domainkey.acme.test", &[&format!("v=DKIM2; p={KEY}")]);
        assert!(
            run(&dns, VALUE)
                .await
                .found
                .contains("v=DKIM2 is not DKIM1")
        );
    }

    #[tokio::test]
    async fn a_missing_record_is_no_record() {
        let dns = FakeResolver::new().with_txt("s2._domainkey.acme.test", &[VALUE]);
        let check = run(&dns, VALUE).await;
        assert!(!check.ok);
        assert_eq!(check.found, NO_RECORD);
        let dns = FakeResolver::new().with_nxdomain("s1._domainkey.acme.test");
        assert_eq!(run(&dns, VALUE).await.found, NO_RECORD);
    }

    #[tokio::test]
    async fn a_temporary_failure_says_so() {
        let dns = FakeResolver::new().with_failure("s1._domainkey.acme.test", "SERVFAIL");
        let check = run(&dns, VALUE).await;
        assert!(!check.ok);
        assert_eq!(
            check.found,
            "temporary DNS failure: s1._domainkey.acme.test: SERVFAIL"
        );
    }
}
