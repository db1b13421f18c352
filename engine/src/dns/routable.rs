//! Which addresses the engine may connect to for a recipient's MX: only globally
//! routable unicast ones.
//!
//! A recipient domain is tenant input, and its DNS is whoever owns the domain: an
//! MX (or A fallback) pointing at 127.0.0.1, 10.0.0.5 or 169.254.169.254 would
//! make the engine open SMTP connections into the operator's own network (SSRF).
//! [`non_global`] is the pure check the delivery path applies to every resolved
//! address before connecting (`crate::dns::addresses`); hosts named by a
//! configured `[[delivery.routes]]` are exempt there, not here.
//!
//! Guarantees: refused are loopback, unspecified, "this network", RFC 1918
//! private, CGNAT (RFC 6598), link-local (with the cloud metadata address named
//! apart), IETF protocol assignments, documentation and benchmarking ranges,
//! multicast, reserved and broadcast; in IPv6 everything outside global unicast
//! `2000::/3` (`::1`, `::`, `fc00::/7`, `fe80::/10`, `ff00::/8`, …) plus the
//! documentation, benchmarking, ORCHID and Teredo blocks inside it. Addresses that
//! embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
//! NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the embedded address.
//! The [`NonGlobal`] kinds form a small fixed set (fit for a metric label).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not globally routable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NonGlobal {
    Unspecified,
    /// 0.0.0.0/8: "this network".
    ThisNetwork,
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16).
    Private,
    /// 100.64.0.0/10, RFC 6598 carrier-grade NAT.
    SharedAddressSpace,
    /// 169.254.169.254 (and fd00:ec2::254): the cloud instance metadata service.
    CloudMetadata,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 192.0.0.0/24, 2001::/23: IETF protocol assignments (incl. Teredo, ORCHID).
    ProtocolAssignment,
    /// 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18.0.0/15, 2001:2::/48.
    Benchmarking,
    /// 192.88.99.0/24, the deprecated 6to4 relay anycast.
    Relay6to4,
    /// fc00::/7.
    UniqueLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 240.0.0.0/4 and IPv6 outside the global unicast range.
    Reserved,
}

impl NonGlobal {
    /// A short fixed name (log field, metric label, job reason).
    pub fn as_str(self) -> &'static str {
        match self {
            NonGlobal::Unspecified => "unspecified",
            NonGlobal::ThisNetwork => "this-network",
            NonGlobal::Loopback => "loopback",
            NonGlobal::Private => "private",
            NonGlobal::SharedAddressSpace => "shared-address-space",
            NonGlobal::CloudMetadata => "cloud-metadata",
            NonGlobal::LinkLocal => "link-local",
            NonGlobal::ProtocolAssignment => "protocol-assignment",
            NonGlobal::Documentation => "documentation",
            NonGlobal::Benchmarking => "benchmarking",
            NonGlobal::Relay6to4 => "6to4-relay",
            NonGlobal::UniqueLocal => "unique-local",
            NonGlobal::Multicast => "multicast",
            NonGlobal::Broadcast => "broadcast",
            NonGlobal::Reserved => "reserved",
        }
    }
}

impl fmt::Display for NonGlobal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `None` when `ip` is a globally routable unicast address; otherwise why not.
pub fn non_global(ip: IpAddr) -> Option<NonGlobal> {
    match ip {
        IpAddr::V4(v4) => non_global_v4(v4),
        IpAddr::V6(v6) => non_global_v6(v6),
    }
}

fn non_global_v4(ip: Ipv4Addr) -> Option<NonGlobal> {
    let [a, b, c, _] = ip.octets();
    let kind = if ip.is_unspecified() {
        NonGlobal::Unspecified
    } else if a == 0 {
        NonGlobal::ThisNetwork
    } else if a == 127 {
        NonGlobal::Loopback
    } else if a == 10 || (a == 172 && (16..32).contains(&b)) || (a == 192 && b == 168) {
        NonGlobal::Private
    } else if a == 100 && (64..128).contains(&b) {
        NonGlobal::SharedAddressSpace
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) {
        NonGlobal::CloudMetadata
    } else if a == 169 && b == 254 {
        NonGlobal::LinkLocal
    } else if a == 192 && b == 0 && c == 0 {
        NonGlobal::ProtocolAssignment
    } else if (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        NonGlobal::Documentation
    } else if a == 198 && (b == 18 || b == 19) {
        NonGlobal::Benchmarking
    } else if a == 192 && b == 88 && c == 99 {
        NonGlobal::Relay6to4
    } else if ip.is_broadcast() {
        NonGlobal::Broadcast
    } else if (224..240).contains(&a) {
        NonGlobal::Multicast
    } else if a >= 240 {
        NonGlobal::Reserved
    } else {
        return None;
    };
    Some(kind)
}

fn non_global_v6(ip: Ipv6Addr) -> Option<NonGlobal> {
    if let Some(v4) = embedded_v4(ip) {
        return non_global_v4(v4);
    }
    let s = ip.segments();
    let kind = if ip.is_unspecified() {
        NonGlobal::Unspecified
    } else if ip.is_loopback() {
        NonGlobal::Loopback
    } else if s[0] & 0xff00 == 0xff00 {
        NonGlobal::Multicast
    } else if s[0] & 0xffc0 == 0xfe80 {
        NonGlobal::LinkLocal
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        NonGlobal::CloudMetadata
    } else if s[0] & 0xfe00 == 0xfc00 {
        NonGlobal::UniqueLocal
    } else if s[0] & 0xe000 != 0x2000 {
        // Outside 2000::/3 (e.g. 64:ff9b:1::/48 local NAT64, fec0::/10, ::/8).
        NonGlobal::Reserved
    } else if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000) {
        NonGlobal::Documentation
    } else if s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0 {
        NonGlobal::Benchmarking
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        NonGlobal::ProtocolAssignment
    } else {
        return None;
    };
    Some(kind)
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped (`::ffff:0:0/96`),
/// IPv4-compatible (`::/96`, except `::` and `::1`), NAT64 (`64:ff9b::/96`,
/// RFC 6052) or 6to4 (`2002::/16`, RFC 3056).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let high_zero = s[..5].iter().all(|&x| x == 0);
    if high_zero && s[5] == 0xffff {
        return Some(low);
    }
    if high_zero && s[5] == 0 && !ip.is_unspecified() && !ip.is_loopback() {
        return Some(low);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(addr: &str) -> Option<NonGlobal> {
        non_global(addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}")))
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "142.250.27.26",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "169.253.1.1",
            "192.0.1.1",
            "192.88.98.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.254",
            "2a00:1450:400c:c0b::1a",
            "2607:f8b0:4004:800::200e",
            "2001:4860:4860::8888",
            "64:ff9b::8.8.8.8",
            "::ffff:8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert_eq!(check(addr), None, "{addr} is global");
        }
    }

    #[test]
    fn ipv4_special_ranges_are_refused() {
        let cases = [
            ("0.0.0.0", NonGlobal::Unspecified),
            ("0.1.2.3", NonGlobal::ThisNetwork),
            ("127.0.0.1", NonGlobal::Loopback),
            ("127.255.255.254", NonGlobal::Loopback),
            ("10.0.0.1", NonGlobal::Private),
            ("10.255.255.255", NonGlobal::Private),
            ("172.16.0.1", NonGlobal::Private),
            ("172.31.255.255", NonGlobal::Private),
            ("192.168.1.1", NonGlobal::Private),
            ("100.64.0.1", NonGlobal::SharedAddressSpace),
            ("100.127.255.255", NonGlobal::SharedAddressSpace),
            ("169.254.169.254", NonGlobal::CloudMetadata),
            ("169.254.0.1", NonGlobal::LinkLocal),
            ("192.0.0.8", NonGlobal::ProtocolAssignment),
            ("192.0.2.1", NonGlobal::Documentation),
            ("198.51.100.7", NonGlobal::Documentation),
            ("203.0.113.9", NonGlobal::Documentation),
            ("198.18.0.1", NonGlobal::Benchmarking),
            ("198.19.255.255", NonGlobal::Benchmarking),
            ("192.88.99.1", NonGlobal::Relay6to4),
            ("224.0.0.1", NonGlobal::Multicast),
            ("239.255.255.250", NonGlobal::Multicast),
            ("240.0.0.1", NonGlobal::Reserved),
            ("255.255.255.255", NonGlobal::Broadcast),
        ];
        for (addr, kind) in cases {
            assert_eq!(check(addr), Some(kind), "{addr}");
        }
    }

    #[test]
    fn ipv6_special_ranges_are_refused() {
        let cases = [
            ("::", NonGlobal::Unspecified),
            ("::1", NonGlobal::Loopback),
            ("fc00::1", NonGlobal::UniqueLocal),
            ("fd12:3456:789a::1", NonGlobal::UniqueLocal),
            ("fd00:ec2::254", NonGlobal::CloudMetadata),
            ("fe80::1", NonGlobal::LinkLocal),
            ("febf::1", NonGlobal::LinkLocal),
            ("fec0::1", NonGlobal::Reserved),
            ("ff02::1", NonGlobal::Multicast),
            ("2001:db8::1", NonGlobal::Documentation),
            ("3fff::1", NonGlobal::Documentation),
            ("2001:2::1", NonGlobal::Benchmarking),
            ("2001::1", NonGlobal::ProtocolAssignment),
            ("2001:10::1", NonGlobal::ProtocolAssignment),
            ("64:ff9b:1::1", NonGlobal::Reserved),
            ("100::1", NonGlobal::Reserved),
            ("4000::1", NonGlobal::Reserved),
        ];
        for (addr, kind) in cases {
            assert_eq!(check(addr), Some(kind), "{addr}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged_by_the_embedded_address() {
        let cases = [
            ("::ffff:127.0.0.1", NonGlobal::Loopback),
            ("::ffff:10.1.2.3", NonGlobal::Private),
            ("::ffff:169.254.169.254", NonGlobal::CloudMetadata),
            ("::ffff:0.0.0.0", NonGlobal::Unspecified),
            ("::127.0.0.1", NonGlobal::Loopback),
            ("::192.168.0.1", NonGlobal::Private),
            ("64:ff9b::127.0.0.1", NonGlobal::Loopback),
            ("64:ff9b::10.0.0.1", NonGlobal::Private),
            ("64:ff9b::a9fe:a9fe", NonGlobal::CloudMetadata),
            ("2002:7f00:0001::1", NonGlobal::Loopback),
            ("2002:c0a8:0101::1", NonGlobal::Private),
        ];
        for (addr, kind) in cases {
            assert_eq!(check(addr), Some(kind), "{addr}");
        }
    }

    #[test]
    fn names_are_distinct() {
        let all = [
            NonGlobal::Unspecified,
            NonGlobal::ThisNetwork,
            NonGlobal::Loopback,
            NonGlobal::Private,
            NonGlobal::SharedAddressSpace,
            NonGlobal::CloudMetadata,
            NonGlobal::LinkLocal,
            NonGlobal::ProtocolAssignment,
            NonGlobal::Documentation,
            NonGlobal::Benchmarking,
            NonGlobal::Relay6to4,
            NonGlobal::UniqueLocal,
            NonGlobal::Multicast,
            NonGlobal::Broadcast,
            NonGlobal::Reserved,
        ];
        let names: std::collections::HashSet<&str> = all.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), all.len());
    }
}
