//! The `ptr:<ip>` checks: forward-confirmed reverse DNS of each sending IP.
//!
//! Ok when a PTR name of the IP has an A/AAAA record equal to the IP (receivers
//! such as Gmail distrust senders without it). Reported, never required: the PTR
//! record belongs to whoever owns the address block, not to the domain. At most
//! [`MAX_PTR_NAMES`] PTR names are followed, so each check costs at most
//! `1 + MAX_PTR_NAMES` lookups.

use std::net::IpAddr;

use super::lookups::Lookups;
use super::{Check, NO_RECORD};

/// Most PTR names of one IP whose addresses are looked up.
pub const MAX_PTR_NAMES: usize = 5;

pub(crate) async fn check(lookups: &Lookups<'_>, ip: IpAddr) -> Check {
    let (ok, found) = match confirm(lookups, ip).await {
        Ok(found) => found,
        Err(why) => (false, why),
    };
    Check {
        name: format!("ptr:{ip}"),
        ok,
        expected: format!("a PTR record for {ip} naming a host whose A/AAAA records include {ip}"),
        found,
        required: false,
    }
}

async fn confirm(lookups: &Lookups<'_>, ip: IpAddr) -> Result<(bool, String), String> {
    let names = lookups.ptr(ip).await.map_err(|e| e.found())?;
    if names.is_empty() {
        return Ok((false, NO_RECORD.to_owned()));
    }
    for name in names.iter().take(MAX_PTR_NAMES) {
        let addresses = lookups.addresses(name).await.map_err(|e| e.found())?;
        if addresses.contains(&ip) {
            return Ok((true, format!("{name} → {ip}")));
        }
    }
    let skipped = names.len().saturating_sub(MAX_PTR_NAMES);
    let mut found = format!(
        "{} does not resolve back to {ip}",
        names
            .iter()
            .take(MAX_PTR_NAMES)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    if skipped > 0 {
        found.push_str(&format!(" ({skipped} more PTR names not followed)"));
    }
    Ok((false, found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::FakeResolver;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    async fn run(dns: &FakeResolver, address: &str) -> Check {
        check(&Lookups::new(dns, MAX_PTR_NAMES + 1), ip(address)).await
    }

    #[tokio::test]
    async fn forward_confirmed_reverse_dns_passes() {
        let dns = FakeResolver::new()
            .with_ptr(ip("192.0.2.7"), &["other.example.test", "mta7.acme.test."])
            .with_addresses("other.example.test", &[ip("192.0.2.99")])
            .with_addresses("mta7.acme.test", &[ip("192.0.2.7")]);
        let check = run(&dns, "192.0.2.7").await;
        assert!(check.ok, "{check:?}");
        assert_eq!(check.name, "ptr:192.0.2.7");
        assert_eq!(check.found, "mta7.acme.test → 192.0.2.7");
        assert!(!check.required);

        let dns = FakeResolver::new()
            .with_ptr(ip("2001:db8::7"), &["mta7.acme.test"])
            .with_addresses("mta7.acme.test", &[ip("2001:db8::7")]);
        assert!(run(&dns, "2001:db8::7").await.ok);
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_back_fails() {
        let dns = FakeResolver::new()
            .with_ptr(ip("192.0.2.7"), &["mta7.acme.test"])
            .with_addresses("mta7.acme.test", &[ip("192.0.2.8")]);
        let check = run(&dns, "192.0.2.7").await;
        assert!(!check.ok);
        assert_eq!(
            check.found,
            "mta7.acme.test does not resolve back to 192.0.2.7"
        );
        assert_eq!(
            run(&FakeResolver::new(), "192.0.2.7").await.found,
            NO_RECORD
        );
    }

    #[tokio::test]
    async fn many_ptr_names_cost_a_bounded_number_of_lookups() {
        let names: Vec<String> = (0..20).map(|n| format!("h{n}.acme.test")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let dns = FakeResolver::new().with_ptr(ip("192.0.2.7"), &names);
        let check = run(&dns, "192.0.2.7").await;
        assert!(!check.ok);
        assert!(
            check.found.ends_with("(15 more PTR names not followed)"),
            "{}",
            check.found
        );
        assert_eq!(dns.lookups(), 1 + MAX_PTR_NAMES);
    }
}
