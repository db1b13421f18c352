//! Domain checks against a real DNS server: an in-process hickory-server,
//! authoritative for `test.` and `in-addr.arpa.` on a loopback UDP+TCP port,
//! and the real [`HickoryResolver`] pointed at it. A domain that published its
//! records verifies end to end (DKIM key split over two character-strings, SPF
//! through `a` and `include`, DMARC, forward-confirmed PTR); a changed DKIM
//! record then makes it fail; a server that refuses makes it pending.
//! Records and negative answers have TTL 0, so each change is seen by the
//! very next lookup: nothing waits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, PTR, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use penguin_config::DnsConfig;
use penguin_engine::dns::HickoryResolver;
use penguin_engine::domain_check::{self, Check, Expected, NO_RECORD, dmarc_value, status};
use tokio::net::{TcpListener, UdpSocket};

/// A 2048-bit RSA public key's length of base64: longer than one 255-byte
/// character-string, so the record must be split as real DKIM records are.
fn key(fill: char) -> String {
    format!(
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA{}IDAQAB",
        fill.to_string().repeat(344)
    )
}

fn dkim_value(key: &str) -> String {
    format!("v=DKIM1; k=rsa; p={key}")
}

const MTA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const ESP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);

/// The server and its two zones; it stops when dropped.
struct TestDns {
    addr: SocketAddr,
    forward: Arc<InMemoryZoneHandler>,
    reverse: Arc<InMemoryZoneHandler>,
    _server: Server<Catalog>,
}

impl TestDns {
    async fn start() -> Self {
        let mut catalog = Catalog::new();
        let forward = zone(&mut catalog, "test.");
        let reverse = zone(&mut catalog, "in-addr.arpa.");
        let (udp, tcp) = bind_udp_and_tcp().await;
        let addr = udp.local_addr().unwrap();
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        TestDns {
            addr,
            forward,
            reverse,
            _server: server,
        }
    }

    fn resolver(&self) -> HickoryResolver {
        HickoryResolver::from_config(&DnsConfig {
            nameservers: vec![self.addr.to_string()],
            timeout_ms: 2_000,
            negative_ttl_secs: 1,
            cache_size: 1_000,
        })
        .unwrap()
    }

    /// A TXT record of one or more character-strings.
    async fn add_txt(&self, owner: &str, strings: &[&str]) {
        let strings = strings.iter().map(|s| (*s).to_owned()).collect();
        let rdata = RData::TXT(TXT::new(strings));
        upsert(&self.forward, owner, rdata).await;
    }

    async fn add_a(&self, owner: &str, ip: Ipv4Addr) {
        upsert(&self.forward, owner, RData::A(A(ip))).await;
    }

    async fn add_ptr(&self, ip: Ipv4Addr, target: &str) {
        let owner = Name::from(IpAddr::V4(ip)).to_ascii();
        let rdata = RData::PTR(PTR(Name::from_ascii(target).unwrap()));
        upsert(&self.reverse, &owner, rdata).await;
    }

    /// Removes every record of `owner` (which becomes NXDOMAIN).
    async fn remove(&self, owner: &str) {
        let owner = LowerName::new(&Name::from_ascii(owner).unwrap());
        self.forward
            .records_mut()
            .await
            .retain(|key, _| key.name != owner);
    }
}

fn zone(catalog: &mut Catalog, origin: &str) -> Arc<InMemoryZoneHandler> {
    let soa = "$TTL 0\n@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 0\n";
    let origin = Name::from_ascii(origin).unwrap();
    let (origin, records) = Parser::new(soa, None, Some(origin)).parse().unwrap();
    let zone = Arc::new(
        InMemoryZoneHandler::new(origin.clone(), records, ZoneType::Primary, AxfrPolicy::Deny)
            .unwrap(),
    );
    catalog.upsert(
        LowerName::new(&origin),
        vec![zone.clone() as Arc<dyn ZoneHandler>],
    );
    zone
}

async fn upsert(zone: &InMemoryZoneHandler, owner: &str, rdata: RData) {
    let record = Record::from_rdata(Name::from_ascii(owner).unwrap(), 0, rdata);
    assert!(zone.upsert(record, 2).await, "zone update");
}

/// A free port for both UDP and TCP (DNS falls back to TCP), retried on a clash.
async fn bind_udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn expected(domain: &str) -> Expected<'_> {
    Expected {
        domain,
        dkim: vec![("s1".into(), dkim_value(&key('A')))],
        ips: vec![IpAddr::V4(MTA), IpAddr::V4(ESP)],
    }
}

fn by_name<'c>(checks: &'c [Check], name: &str) -> &'c Check {
    checks.iter().find(|c| c.name == name).expect(name)
}

#[tokio::test]
async fn published_records_verify_and_a_changed_key_fails() {
    let dns = TestDns::start().await;
    let value = dkim_value(&key('A'));
    let (first, second) = value.split_at(200);
    dns.add_txt("s1._domainkey.acme.test.", &[first, second])
        .await;
    dns.add_txt("acme.test.", &["google-site-verification=abc"])
        .await;
    dns.add_txt(
        "acme.test.",
        &["v=spf1 a:mta.acme.test include:_spf.esp.test -all"],
    )
    .await;
    dns.add_txt("_spf.esp.test.", &["v=spf1 ip4:198.51.100.0/24 ~all"])
        .await;
    dns.add_txt("_dmarc.acme.test.", &[&dmarc_value("acme.test")])
        .await;
    dns.add_a("mta.acme.test.", MTA).await;
    dns.add_ptr(MTA, "mta.acme.test.").await;
    dns.add_ptr(ESP, "out.esp.test.").await;
    let resolver = dns.resolver();

    let checks = domain_check::verify(&resolver, &expected("acme.test")).await;
    assert_eq!(status(&checks), "verified", "{checks:#?}");
    assert_eq!(
        by_name(&checks, "dkim:s1").found,
        value,
        "the two strings joined"
    );
    assert_eq!(
        by_name(&checks, "spf").found,
        "v=spf1 a:mta.acme.test include:_spf.esp.test -all"
    );
    assert!(by_name(&checks, "dmarc").ok);
    assert!(by_name(&checks, "ptr:192.0.2.7").ok);
    let esp_ptr = by_name(&checks, "ptr:198.51.100.20");
    assert!(!esp_ptr.ok, "out.esp.test has no address");
    assert_eq!(
        esp_ptr.found,
        "out.esp.test does not resolve back to 198.51.100.20"
    );

    // The owner publishes another key in place of ours.
    dns.remove("s1._domainkey.acme.test.").await;
    let other = dkim_value(&key('B'));
    let (first, second) = other.split_at(255);
    dns.add_txt("s1._domainkey.acme.test.", &[first, second])
        .await;
    // TTL 0 everywhere: the very next lookup sees the change.
    let checks = domain_check::verify(&resolver, &expected("acme.test")).await;
    assert!(!by_name(&checks, "dkim:s1").ok, "{checks:#?}");
    assert_eq!(status(&checks), "failed");
    assert!(
        by_name(&checks, "dkim:s1")
            .found
            .ends_with("(p= is not the expected public key)"),
        "{checks:#?}"
    );

    // Then removes it: absent is pending, not failed.
    dns.remove("s1._domainkey.acme.test.").await;
    let checks = domain_check::verify(&resolver, &expected("acme.test")).await;
    assert_eq!(by_name(&checks, "dkim:s1").found, NO_RECORD, "{checks:#?}");
    assert_eq!(status(&checks), "pending");
}

#[tokio::test]
async fn a_refusing_server_is_a_temporary_failure() {
    let dns = TestDns::start().await;
    let resolver = dns.resolver();
    // The server is not authoritative for `example.`: it refuses.
    let checks = domain_check::verify(&resolver, &expected("acme.example")).await;
    for check in checks.iter().filter(|c| c.required) {
        assert!(
            check.found.starts_with("temporary DNS failure: "),
            "{check:?}"
        );
    }
    assert_eq!(status(&checks), "pending");
}
