//! The `dmarc` check and the DMARC value to publish.
//!
//! A domain passes when exactly one TXT record at `_dmarc.<domain>` starts with
//! `v=DMARC1` (RFC 7489 §6.6.3: other TXT records there are ignored; two DMARC
//! records are no policy at all) and carries `p=none`, `p=quarantine` or
//! `p=reject`. Without a record at the domain itself, the parents are asked
//! in turn (a receiver applies the organizational domain's policy to its
//! subdomains); with no public-suffix list the walk stops at two labels, and
//! `found` then names where the record was.

use super::lookups::Lookups;
use super::{Check, NO_RECORD};

/// The DMARC record to publish at `_dmarc.<domain>`: `v=DMARC1; p=none`.
///
/// `p=none` changes no delivery: it only declares the domain as DMARC-aware,
/// which Gmail and Yahoo require of bulk senders. There is no `rua=` report
/// address: reports would go to an address the tenant may not read, and a
/// record without one is complete. Once the domain's mail is known to pass,
/// the owner can tighten it to `quarantine` or `reject` and add reports; the
/// value is the same for every domain, the parameter keeps room for a `rua`.
pub fn dmarc_value(_domain: &str) -> String {
    "v=DMARC1; p=none".to_owned()
}

const POLICIES: [&str; 3] = ["none", "quarantine", "reject"];

pub(crate) async fn check(lookups: &Lookups<'_>, domain: &str) -> Check {
    let (ok, found) = match find(lookups, domain).await {
        Ok(found) => found,
        Err(why) => (false, why),
    };
    Check {
        name: "dmarc".to_owned(),
        ok,
        expected: dmarc_value(domain),
        found,
        required: true,
    }
}

/// `(ok, found)`: the first name from the domain upwards with DMARC records.
async fn find(lookups: &Lookups<'_>, domain: &str) -> Result<(bool, String), String> {
    let domain = domain.trim().trim_end_matches('.');
    let mut at = domain;
    loop {
        let records = lookups
            .txt(&format!("_dmarc.{at}"))
            .await
            .map_err(|e| e.found())?;
        let dmarc: Vec<&String> = records.iter().filter(|r| is_dmarc(r)).collect();
        let inherited = if at == domain {
            String::new()
        } else {
            format!(" (at _dmarc.{at}, which covers {domain})")
        };
        match dmarc.as_slice() {
            [] => {}
            [record] => {
                return Ok(match valid(record) {
                    Ok(()) => (true, format!("{record}{inherited}")),
                    Err(why) => (false, format!("{record}{inherited} ({why})")),
                });
            }
            many => {
                return Ok((
                    false,
                    format!(
                        "{} DMARC records{inherited}, receivers apply none of them: {}",
                        many.len(),
                        many.iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ),
                ));
            }
        }
        match at.split_once('.') {
            Some((_, parent)) if parent.contains('.') => at = parent,
            _ => return Ok((false, NO_RECORD.to_owned())),
        }
    }
}

/// RFC 7489 §6.4: the record starts with the `v=DMARC1` tag.
fn is_dmarc(record: &str) -> bool {
    let first = record.split(';').next().unwrap_or_default();
    let compact: String = first.chars().filter(|c| !c.is_whitespace()).collect();
    compact == "v=DMARC1"
}

fn valid(record: &str) -> Result<(), String> {
    let policy = record.split(';').skip(1).find_map(|pair| {
        let (tag, value) = pair.split_once('=')?;
        (tag.trim() == "p").then(|| value.trim().to_owned())
    });
    match policy {
        None => Err("no p= tag".to_owned()),
        Some(p) if POLICIES.contains(&p.to_ascii_lowercase().as_str()) => Ok(()),
        Some(p) => Err(format!("p={p} is not none, quarantine or reject")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::FakeResolver;
    use crate::domain_check::MAX_LOOKUPS_PER_VERIFY;

    async fn run(dns: &FakeResolver, domain: &str) -> Check {
        check(&Lookups::new(dns, MAX_LOOKUPS_PER_VERIFY), domain).await
    }

    #[tokio::test]
    async fn a_valid_record_passes() {
        let dns = FakeResolver::new().with_txt(
            "_dmarc.acme.test",
            &[
                "google-site-verification=x",
                "v=DMARC1; p=quarantine; rua=mailto:d@acme.test",
            ],
        );
        let check = run(&dns, "acme.test").await;
        assert!(check.ok, "{check:?}");
        assert_eq!(
            check.found,
            "v=DMARC1; p=quarantine; rua=mailto:d@acme.test"
        );
        assert_eq!(check.expected, "v=DMARC1; p=none");
        assert!(check.required);
        assert_eq!(check.expected, dmarc_value("acme.test"));
    }

    #[tokio::test]
    async fn a_missing_record_is_no_record() {
        let dns = FakeResolver::new().with_txt("acme.test", &["v=DMARC1; p=none"]);
        let check = run(&dns, "mail.acme.test").await;
        assert!(!check.ok);
        assert_eq!(check.found, NO_RECORD);
        // mail.acme.test, then acme.test; never the bare TLD.
        assert_eq!(dns.lookups(), 2);
    }

    #[tokio::test]
    async fn a_record_without_a_valid_policy_fails() {
        let dns =
            FakeResolver::new().with_txt("_dmarc.acme.test", &["v=DMARC1; rua=mailto:x@acme.test"]);
        let check = run(&dns, "acme.test").await;
        assert!(!check.ok);
        assert_eq!(check.found, "v=DMARC1; rua=mailto:x@acme.test (no p= tag)");
        let dns = FakeResolver::new().with_txt("_dmarc.acme.test", &["v=DMARC1; p=block"]);
        assert!(
            run(&dns, "acme.test")
                .await
                .found
                .contains("p=block is not")
        );
        let dns = FakeResolver::new().with_txt(
            "_dmarc.acme.test",
            &["v=DMARC1; p=none", "v=DMARC1; p=reject"],
        );
        let check = run(&dns, "acme.test").await;
        assert!(!check.ok);
        assert!(
            check.found.starts_with("2 DMARC records"),
            "{}",
            check.found
        );
    }

    #[tokio::test]
    async fn a_parent_policy_covers_a_subdomain() {
        let dns = FakeResolver::new().with_txt("_dmarc.acme.test", &["v=DMARC1; p=reject"]);
        let check = run(&dns, "news.mail.acme.test").await;
        assert!(check.ok, "{check:?}");
        assert_eq!(
            check.found,
            "v=DMARC1; p=reject (at _dmarc.acme.test, which covers news.mail.acme.test)"
        );
    }
}
