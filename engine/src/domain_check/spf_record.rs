//! SPF record syntax (RFC 7208 §4.5, §5, §6, §12): a `v=spf1` TXT record parsed
//! into directives and the `redirect=` modifier, and CIDR matching.
//!
//! Unknown mechanisms, bad CIDR lengths, bad IP literals and repeated `redirect=`
//! or `exp=` are syntax errors (a permerror for the caller). Unknown modifiers
//! are ignored, as §6 requires. Macro strings are kept as written: the
//! evaluator refuses them when it reaches them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// RFC 7208 §4.6.2: a directive's result when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mechanism {
    All,
    Include(String),
    /// `a` and `mx`: an optional domain and the IPv4/IPv6 prefix lengths.
    A {
        domain: Option<String>,
        v4: u8,
        v6: u8,
    },
    Mx {
        domain: Option<String>,
        v4: u8,
        v6: u8,
    },
    Ptr(Option<String>),
    Ip4(Ipv4Addr, u8),
    Ip6(Ipv6Addr, u8),
    Exists(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
    /// The term as written, for messages.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SpfRecord {
    pub directives: Vec<Directive>,
    pub redirect: Option<String>,
}

/// RFC 7208 §4.5: a record whose version section is exactly `v=spf1`.
pub(crate) fn is_spf(txt: &str) -> bool {
    let mut words = txt.split(' ');
    words
        .next()
        .is_some_and(|version| version.eq_ignore_ascii_case("v=spf1"))
}

pub(crate) fn parse(txt: &str) -> Result<SpfRecord, String> {
    let mut terms = txt.split_ascii_whitespace();
    match terms.next() {
        Some(version) if version.eq_ignore_ascii_case("v=spf1") => {}
        _ => return Err("the record does not start with v=spf1".to_owned()),
    }
    let mut record = SpfRecord::default();
    let mut exp = false;
    for term in terms {
        if let Some((name, value)) = modifier(term) {
            match name.to_ascii_lowercase().as_str() {
                "redirect" if record.redirect.is_some() => {
                    return Err("redirect= appears twice".to_owned());
                }
                "redirect" => record.redirect = Some(domain_spec(term, value)?),
                "exp" if exp => return Err("exp= appears twice".to_owned()),
                "exp" => exp = true,
                _ => {}
            }
            continue;
        }
        record.directives.push(directive(term)?);
    }
    Ok(record)
}

/// `name=value` where name is ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
fn modifier(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let mut chars = name.chars();
    let starts = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (starts && rest).then_some((name, value))
}

fn directive(term: &str) -> Result<Directive, String> {
    let (qualifier, rest) = match term.as_bytes()[0] {
        b'+' => (Qualifier::Pass, &term[1..]),
        b'-' => (Qualifier::Fail, &term[1..]),
        b'~' => (Qualifier::SoftFail, &term[1..]),
        b'?' => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let split = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, arguments) = rest.split_at(split);
    let domain = arguments.strip_prefix(':');
    let mechanism = match name.to_ascii_lowercase().as_str() {
        "all" if arguments.is_empty() => Mechanism::All,
        "include" => Mechanism::Include(domain_spec(term, required(term, domain)?)?),
        "exists" => Mechanism::Exists(domain_spec(term, required(term, domain)?)?),
        "ptr" => Mechanism::Ptr(domain.map(|d| domain_spec(term, d)).transpose()?),
        "a" | "mx" => {
            let (domain, v4, v6) = dual_cidr(term, arguments)?;
            if name.eq_ignore_ascii_case("a") {
                Mechanism::A { domain, v4, v6 }
            } else {
                Mechanism::Mx { domain, v4, v6 }
            }
        }
        "ip4" => {
            let (ip, len) = ip_cidr(term, required(term, domain)?, 32)?;
            match ip {
                IpAddr::V4(ip) => Mechanism::Ip4(ip, len),
                IpAddr::V6(_) => return Err(format!("{term}: not an IPv4 address")),
            }
        }
        "ip6" => {
            let (ip, len) = ip_cidr(term, required(term, domain)?, 128)?;
            match ip {
                IpAddr::V6(ip) => Mechanism::Ip6(ip, len),
                IpAddr::V4(_) => return Err(format!("{term}: not an IPv6 address")),
            }
        }
        _ => return Err(format!("{term}: unknown mechanism")),
    };
    Ok(Directive {
        qualifier,
        mechanism,
        text: term.to_owned(),
    })
}

fn required<'t>(term: &str, domain: Option<&'t str>) -> Result<&'t str, String> {
    domain.ok_or_else(|| format!("{term}: needs a domain or address after ':'"))
}

fn domain_spec(term: &str, spec: &str) -> Result<String, String> {
    if spec.is_empty() || spec.contains('/') {
        return Err(format!("{term}: bad domain {spec:?}"));
    }
    Ok(spec.to_owned())
}

/// `[:domain][/v4][//v6]` after `a` or `mx`.
fn dual_cidr(term: &str, arguments: &str) -> Result<(Option<String>, u8, u8), String> {
    let (domain, cidr) = match arguments.find('/') {
        Some(at) => arguments.split_at(at),
        None => (arguments, ""),
    };
    let domain = match domain.strip_prefix(':') {
        Some(spec) => Some(domain_spec(term, spec)?),
        None if domain.is_empty() => None,
        None => return Err(format!("{term}: unknown mechanism")),
    };
    let (v4, v6) = match cidr.strip_prefix("//") {
        Some(v6) => ("", v6),
        None => match cidr.strip_prefix('/') {
            Some(both) => match both.split_once("//") {
                Some((v4, v6)) => (v4, v6),
                None => (both, ""),
            },
            None => ("", ""),
        },
    };
    let v4 = if v4.is_empty() {
        32
    } else {
        prefix(term, v4, 32)?
    };
    let v6 = if v6.is_empty() {
        128
    } else {
        prefix(term, v6, 128)?
    };
    if cidr.starts_with('/') && cidr.len() == 1 {
        return Err(format!("{term}: empty prefix length"));
    }
    Ok((domain, v4, v6))
}

fn ip_cidr(term: &str, argument: &str, max: u8) -> Result<(IpAddr, u8), String> {
    let (address, len) = match argument.split_once('/') {
        Some((address, len)) => (address, prefix(term, len, max)?),
        None => (argument, max),
    };
    let ip = address
        .parse()
        .map_err(|_| format!("{term}: {address:?} is not an IP address"))?;
    Ok((ip, len))
}

/// A prefix length in `0..=max`, written without a leading zero (RFC 7208 §5.6).
fn prefix(term: &str, text: &str, max: u8) -> Result<u8, String> {
    let bad = || format!("{term}: bad prefix length /{text}");
    if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
        return Err(bad());
    }
    let len: u8 = text.parse().map_err(|_| bad())?;
    if len > max {
        return Err(bad());
    }
    Ok(len)
}

/// Whether `ip` is in the network `net/len` (both of one family).
pub(crate) fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    (u32::from(ip) & mask) == (u32::from(net) & mask)
}

pub(crate) fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    (u128::from(ip) & mask) == (u128::from(net) & mask)
}

/// Whether `ip` is in `net` with the prefix length of its family.
pub(crate) fn in_network(ip: IpAddr, net: IpAddr, v4: u8, v6: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => in_v4(ip, net, v4),
        (IpAddr::V6(ip), IpAddr::V6(net)) => in_v6(ip, net, v6),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_into_directives_and_modifiers() {
        let record = parse(
            "v=spf1 ip4:192.0.2.0/24 -ip6:2001:db8::/32 a mx:mail.test/24//64 ~include:x.test \
             ?exists:e.test ptr redirect=r.test exp=why.test unknown=ignored -all",
        )
        .unwrap();
        let mechanisms: Vec<_> = record.directives.iter().map(|d| &d.mechanism).collect();
        assert_eq!(
            mechanisms,
            [
                &Mechanism::Ip4("192.0.2.0".parse().unwrap(), 24),
                &Mechanism::Ip6("2001:db8::".parse().unwrap(), 32),
                &Mechanism::A {
                    domain: None,
                    v4: 32,
                    v6: 128
                },
                &Mechanism::Mx {
                    domain: Some("mail.test".into()),
                    v4: 24,
                    v6: 64
                },
                &Mechanism::Include("x.test".into()),
                &Mechanism::Exists("e.test".into()),
                &Mechanism::Ptr(None),
                &Mechanism::All,
            ]
        );
        assert_eq!(record.directives[1].qualifier, Qualifier::Fail);
        assert_eq!(record.directives[4].qualifier, Qualifier::SoftFail);
        assert_eq!(record.redirect.as_deref(), Some("r.test"));
        let a = parse("v=spf1 a//64").unwrap();
        assert_eq!(
            a.directives[0].mechanism,
            Mechanism::A {
                domain: None,
                v4: 32,
                v6: 64
            }
        );
    }

    #[test]
    fn bad_records_are_errors() {
        for bad in [
            "v=spf1 ip4:192.0.2.1/33",
            "v=spf1 ip4:2001:db8::1",
            "v=spf1 ip6:2001:db8::/129",
            "v=spf1 include",
            "v=spf1 frobnicate:x.test",
            "v=spf1 redirect=a.test redirect=b.test",
            "v=spf1 a/024",
            "v=spf1 all:x.test",
            "spf1 -all",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
        assert!(is_spf("v=spf1 -all") && is_spf("V=SPF1") && !is_spf("v=spf10 -all"));
    }

    #[test]
    fn cidr_matching() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_network(ip("192.0.2.200"), ip("192.0.2.0"), 24, 128));
        assert!(!in_network(ip("192.0.3.1"), ip("192.0.2.0"), 24, 128));
        assert!(in_network(ip("10.1.2.3"), ip("192.0.2.0"), 0, 128));
        assert!(in_network(ip("2001:db8:1::5"), ip("2001:db8::"), 32, 32));
        assert!(!in_network(ip("2001:db9::5"), ip("2001:db8::"), 32, 32));
        assert!(!in_network(ip("192.0.2.1"), ip("2001:db8::"), 0, 0));
    }
}
