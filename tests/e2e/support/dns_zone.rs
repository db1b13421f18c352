//! [`DnsZone`]: a real DNS server for end-to-end tests, in process.
//!
//! A hickory-server on a loopback UDP+TCP port (127.0.0.1, port 0), authoritative
//! for the test TLD [`TLD`] and for the reverse zones `in-addr.arpa.` and
//! `ip6.arpa.`; records are added and removed while it runs. Point a node at it
//! with `[delivery.dns] nameservers = [zone.addr().to_string()]` (or
//! [`DnsZone::dns_config`]).
//!
//! Guarantees:
//! - every record has TTL 0 and the zones' negative TTL is 0, so a resolver
//!   caches nothing: a change is seen by the next lookup (tests still poll with
//!   `wait_for`, never sleep);
//! - a TXT value longer than 255 bytes is split into 255-byte character-strings,
//!   as a DNS provider publishes a 2048-bit DKIM key; resolvers join them;
//! - a name outside the zones is REFUSED by the server (a temporary failure for
//!   the resolver), and adding one panics here, naming it;
//! - the server stops when the [`DnsZone`] is dropped.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, AAAA, PTR, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use penguin_config::DnsConfig;
use tokio::net::{TcpListener, UdpSocket};

/// The test TLD the zone is authoritative for: names are `<something>.test`.
pub const TLD: &str = "test";

/// The zone's SOA: negative answers are cached for 0 s.
const SOA: &str = "$TTL 0\n@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 0\n";

/// The running server and its zones (see the module doc).
pub struct DnsZone {
    addr: SocketAddr,
    zones: Vec<Arc<InMemoryZoneHandler>>,
    _server: Server<Catalog>,
}

impl DnsZone {
    /// Starts the server on 127.0.0.1, one free port for UDP and TCP.
    pub async fn start() -> DnsZone {
        let mut catalog = Catalog::new();
        let zones = [&format!("{TLD}."), "in-addr.arpa.", "ip6.arpa."]
            .into_iter()
            .map(|origin| zone(&mut catalog, origin))
            .collect();
        let (udp, tcp) = bind_udp_and_tcp().await;
        let addr = udp.local_addr().expect("DNS socket address");
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        DnsZone {
            addr,
            zones,
            _server: server,
        }
    }

    /// The server's address, for `[delivery.dns] nameservers`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `[delivery.dns]` asking only this server (short timeout, small cache).
    pub fn dns_config(&self) -> DnsConfig {
        DnsConfig {
            nameservers: vec![self.addr.to_string()],
            timeout_ms: 2_000,
            ..DnsConfig::default()
        }
    }

    /// Adds a TXT record (another record beside any already at `name`).
    pub async fn add_txt(&self, name: &str, value: &str) {
        let strings = value
            .as_bytes()
            .chunks(255)
            .map(|chunk| String::from_utf8(chunk.to_vec()).expect("TXT split inside a character"))
            .collect();
        self.upsert(name, RData::TXT(TXT::new(strings))).await;
    }

    /// Adds an A (IPv4) or AAAA (IPv6) record.
    pub async fn add_a(&self, name: &str, ip: IpAddr) {
        let rdata = match ip {
            IpAddr::V4(ip) => RData::A(A(ip)),
            IpAddr::V6(ip) => RData::AAAA(AAAA(ip)),
        };
        self.upsert(name, rdata).await;
    }

    /// Adds a PTR record for `ip` (at its `in-addr.arpa` / `ip6.arpa` name).
    pub async fn add_ptr(&self, ip: IpAddr, name: &str) {
        let reverse = Name::from(ip).to_ascii();
        self.upsert(&reverse, RData::PTR(PTR(fqdn(name)))).await;
    }

    /// Removes every record at `name` (an IP for its PTR records): the name then
    /// answers NXDOMAIN.
    pub async fn remove(&self, name: &str) {
        let owner = match name.parse::<IpAddr>() {
            Ok(ip) => Name::from(ip),
            Err(_) => fqdn(name),
        };
        let owner = LowerName::new(&owner);
        let zone = self.zone_of(&owner);
        zone.records_mut().await.retain(|key, _| key.name != owner);
    }

    async fn upsert(&self, name: &str, rdata: RData) {
        let owner = fqdn(name);
        let zone = self.zone_of(&LowerName::new(&owner));
        let record = Record::from_rdata(owner, 0, rdata);
        assert!(
            zone.upsert(record, 2).await,
            "the test zone refused a record for {name}"
        );
    }

    fn zone_of(&self, owner: &LowerName) -> &InMemoryZoneHandler {
        self.zones
            .iter()
            .find(|zone| zone.origin().zone_of(owner))
            .unwrap_or_else(|| panic!("{owner} is outside the test zone (*.{TLD}, reverse zones)"))
    }
}

/// `name` parsed, fully qualified.
fn fqdn(name: &str) -> Name {
    let mut parsed =
        Name::from_ascii(name).unwrap_or_else(|e| panic!("{name:?} is not a DNS name: {e}"));
    parsed.set_fqdn(true);
    parsed
}

fn zone(catalog: &mut Catalog, origin: &str) -> Arc<InMemoryZoneHandler> {
    let origin = Name::from_ascii(origin).expect("zone origin");
    let (origin, records) = Parser::new(SOA, None, Some(origin))
        .parse()
        .expect("zone SOA");
    let zone = Arc::new(
        InMemoryZoneHandler::new(origin.clone(), records, ZoneType::Primary, AxfrPolicy::Deny)
            .expect("in-memory zone"),
    );
    catalog.upsert(
        LowerName::new(&origin),
        vec![zone.clone() as Arc<dyn ZoneHandler>],
    );
    zone
}

/// A free port for both UDP and TCP (DNS falls back to TCP), retried on a clash.
async fn bind_udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("UDP bind");
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().expect("UDP address")).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}
