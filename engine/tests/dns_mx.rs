//! MX resolution against a real DNS server: an in-process hickory-server
//! authoritative for `test.` on a loopback UDP+TCP port, and the real
//! [`HickoryResolver`] pointed at it. No internet; waits poll until a deadline.
//! The server counts the queries it was asked, so the cache is judged by what
//! reached the server, never by how fast the machine is.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::rr::rdata::MX;
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use penguin_config::{DnsConfig, Route};
use penguin_engine::dns::{DnsError, HickoryResolver, MxResolver, destinations};
use penguin_engine::route::{Destination, RouteTable};
use tokio::net::{TcpListener, UdpSocket};

const ZONE: &str = r#"
$ORIGIN test.
$TTL 60
@          IN SOA ns.test. hostmaster.test. 1 3600 600 86400 5
multi      IN MX 20 mx3.multi.test.
multi      IN MX 10 mx1.multi.test.
multi      IN MX 10 mx2.multi.test.
mx1.multi  IN A 192.0.2.1
nomx       IN A 192.0.2.10
nomx       IN AAAA 2001:db8::10
null       IN MX 0 .
bare       IN TXT "exists, but has no mail host"
cached   2 IN MX 10 old.cached.test.
"#;

/// The authoritative server; it stops when dropped (its tasks are aborted).
struct TestDns {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    asked: Asked,
    _server: Server<Counting>,
}

/// Every query the server was asked: name (lower case, fully qualified), type,
/// and when it arrived.
type Asked = Arc<Mutex<Vec<(String, RecordType, Instant)>>>;

/// The zone's catalog, writing down each query before answering it.
struct Counting {
    catalog: Catalog,
    asked: Asked,
}

#[async_trait::async_trait]
impl RequestHandler for Counting {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        if let Ok(info) = request.request_info() {
            let query = (
                info.query.name().to_string(),
                info.query.query_type(),
                Instant::now(),
            );
            self.asked.lock().unwrap().push(query);
        }
        self.catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

impl TestDns {
    async fn start() -> Self {
        let origin = Name::from_ascii("test.").unwrap();
        let (origin, records) = Parser::new(ZONE, None, Some(origin)).parse().unwrap();
        let zone: Arc<InMemoryZoneHandler> = Arc::new(
            InMemoryZoneHandler::new(origin.clone(), records, ZoneType::Primary, AxfrPolicy::Deny)
                .unwrap(),
        );
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::new(&origin),
            vec![zone.clone() as Arc<dyn ZoneHandler>],
        );
        let (udp, tcp) = bind_udp_and_tcp().await;
        let addr = udp.local_addr().unwrap();
        let asked = Asked::default();
        let mut server = Server::new(Counting {
            catalog,
            asked: asked.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        TestDns {
            addr,
            zone,
            asked,
            _server: server,
        }
    }

    /// When the server was asked for the MX records of `name` (fully qualified).
    fn mx_queries(&self, name: &str) -> Vec<Instant> {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|(asked, kind, _)| asked == name && *kind == RecordType::MX)
            .map(|(_, _, at)| *at)
            .collect()
    }

    fn resolver(&self, negative_ttl_secs: u64) -> HickoryResolver {
        let config = DnsConfig {
            nameservers: vec![self.addr.to_string()],
            timeout_ms: 2_000,
            negative_ttl_secs,
            cache_size: 1_000,
        };
        HickoryResolver::from_config(&config).unwrap()
    }

    async fn add_mx(&self, owner: &str, ttl: u32, preference: u16, exchange: &str) {
        let record = Record::from_rdata(
            Name::from_ascii(owner).unwrap(),
            ttl,
            RData::MX(MX::new(preference, Name::from_ascii(exchange).unwrap())),
        );
        assert!(self.zone.upsert(record, 2).await, "zone update");
    }
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

fn hosts(list: &[penguin_engine::dns::MxHost]) -> Vec<&str> {
    list.iter().map(|h| h.host.as_str()).collect()
}

/// Polls `resolve` until `done` holds for its answer or 10 s pass.
async fn wait_for_answer<T: std::fmt::Debug>(
    mut resolve: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = resolve().await;
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "still {answer:?} at the deadline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mx_order_fallback_and_permanent_failures() {
    let dns = TestDns::start().await;
    let resolver = dns.resolver(60);

    // Preference order; both preference-10 hosts present, in either order.
    let multi = resolver.resolve("Multi.Test").await.unwrap();
    let prefs: Vec<u16> = multi.iter().map(|h| h.preference).collect();
    assert_eq!(prefs, [10, 10, 20]);
    let best: HashSet<&str> = hosts(&multi)[..2].iter().copied().collect();
    assert_eq!(best, HashSet::from(["mx1.multi.test", "mx2.multi.test"]));
    assert_eq!(multi[2].host, "mx3.multi.test");

    // No MX but an address: the domain is its own (implicit) MX.
    let implicit = resolver.resolve("nomx.test.").await.unwrap();
    assert_eq!(hosts(&implicit), ["nomx.test"]);
    let addresses = resolver.resolve_addresses("nomx.test").await.unwrap();
    assert_eq!(
        addresses,
        [
            "192.0.2.10".parse::<IpAddr>().unwrap(),
            "2001:db8::10".parse().unwrap()
        ]
    );
    let mx1 = resolver.resolve_addresses("mx1.multi.test").await.unwrap();
    assert_eq!(mx1, ["192.0.2.1".parse::<IpAddr>().unwrap()]);

    let null = resolver.resolve("null.test").await.unwrap_err();
    assert_eq!(
        null,
        DnsError::NullMx {
            domain: "null.test".into()
        }
    );
    let gone = resolver.resolve("gone.test").await.unwrap_err();
    assert_eq!(
        gone,
        DnsError::NoSuchDomain {
            name: "gone.test".into()
        }
    );
    let bare = resolver.resolve("bare.test").await.unwrap_err();
    assert_eq!(
        bare,
        DnsError::NoMailHost {
            domain: "bare.test".into()
        }
    );
    assert!(null.is_permanent() && gone.is_permanent() && bare.is_permanent());
    assert!(matches!(
        resolver.resolve_addresses("mx2.multi.test").await,
        Err(DnsError::NoSuchDomain { .. })
    ));

    // The server refuses names outside its zone: temporary, never a bounce.
    let refused = resolver.resolve("elsewhere.example").await.unwrap_err();
    assert!(matches!(refused, DnsError::Temporary { .. }), "{refused:?}");
    assert!(!refused.is_permanent());
}

#[tokio::test]
async fn routed_domain_skips_dns() {
    let dns = TestDns::start().await;
    let resolver = dns.resolver(60);
    let routes = RouteTable::new(&[Route {
        domain: "gone.test".into(),
        host: "127.0.0.1".into(),
        port: 2525,
    }]);
    // gone.test is NXDOMAIN, but its route answers without asking DNS.
    let routed = destinations(&routes, &resolver, "gone.test").await.unwrap();
    assert_eq!(
        routed,
        [Destination {
            host: "127.0.0.1".into(),
            port: 2525
        }]
    );
    let unrouted = destinations(&routes, &resolver, "multi.test")
        .await
        .unwrap();
    assert_eq!(unrouted.len(), 3);
    assert!(unrouted.iter().all(|d| d.port == 25));
    assert!(matches!(
        destinations(&routes, &resolver, "null.test").await,
        Err(DnsError::NullMx { .. })
    ));
}

/// Answers are served from the cache until their TTL ran out, counted at the
/// server: a 2 s MX set is asked for once however often it is resolved within
/// its TTL, and once more after; an NXDOMAIN is asked again after
/// `negative_ttl_secs` (1 s), not after the SOA's 5 s negative TTL.
#[tokio::test]
async fn answers_are_cached_until_their_ttl() {
    let dns = TestDns::start().await;
    let resolver = dns.resolver(1);

    // Positive: the MX set has a 2 s TTL.
    let first = resolver.resolve("cached.test").await.unwrap();
    assert_eq!(hosts(&first), ["old.cached.test"]);
    assert_eq!(
        dns.mx_queries("cached.test.").len(),
        1,
        "the first resolve asks"
    );
    dns.add_mx("cached.test.", 2, 5, "new.cached.test.").await;
    for _ in 0..10 {
        let again = resolver.resolve("cached.test").await.unwrap();
        assert_eq!(hosts(&again), ["old.cached.test"], "served from the cache");
    }
    assert_eq!(
        dns.mx_queries("cached.test.").len(),
        1,
        "resolves within the TTL never reach the server"
    );
    let fresh = wait_for_answer(
        async || resolver.resolve("cached.test").await.unwrap(),
        |hosts| hosts.len() == 2,
    )
    .await;
    assert_eq!(hosts(&fresh), ["new.cached.test", "old.cached.test"]);
    let asked = dns.mx_queries("cached.test.");
    assert_eq!(asked.len(), 2, "asked again once, when the TTL ran out");
    let kept = asked[1] - asked[0];
    assert!(
        kept >= Duration::from_millis(1_500),
        "cached for {kept:?} of a 2 s TTL"
    );

    // Negative: NXDOMAIN is cached for min(SOA negative TTL 5 s, negative_ttl_secs 1 s).
    assert!(matches!(
        resolver.resolve("later.test").await,
        Err(DnsError::NoSuchDomain { .. })
    ));
    assert_eq!(dns.mx_queries("later.test.").len(), 1);
    dns.add_mx("later.test.", 60, 10, "mx.later.test.").await;
    for _ in 0..10 {
        let again = resolver.resolve("later.test").await;
        assert!(
            matches!(again, Err(DnsError::NoSuchDomain { .. })),
            "the negative answer is served from the cache: {again:?}"
        );
    }
    assert_eq!(
        dns.mx_queries("later.test.").len(),
        1,
        "a cached NXDOMAIN never reaches the server"
    );
    let found = wait_for_answer(
        async || resolver.resolve("later.test").await,
        |answer| answer.is_ok(),
    )
    .await;
    assert_eq!(hosts(&found.unwrap()), ["mx.later.test"]);
    let asked = dns.mx_queries("later.test.");
    assert_eq!(
        asked.len(),
        2,
        "asked again once, when the negative TTL ran out"
    );
    let kept = asked[1] - asked[0];
    assert!(
        kept >= Duration::from_millis(500) && kept < Duration::from_secs(3),
        "the NXDOMAIN was cached for {kept:?}: negative_ttl_secs (1 s) must cap the SOA's 5 s"
    );
}

/// A nameserver that never answers fails the lookup as temporary once the
/// configured 200 ms timeout ran out: not before it, and not seconds later.
#[tokio::test]
async fn silent_nameserver_is_a_temporary_failure() {
    // A UDP socket nobody reads, and no TCP listener on its port.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = DnsConfig {
        nameservers: vec![silent.local_addr().unwrap().to_string()],
        timeout_ms: 200,
        negative_ttl_secs: 60,
        cache_size: 10,
    };
    let resolver = HickoryResolver::from_config(&config).unwrap();
    let started = Instant::now();
    let err = resolver.resolve("multi.test").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, DnsError::Temporary { .. }), "{err:?}");
    assert!(!err.is_permanent());
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(1),
        "a 200 ms timeout took {took:?}"
    );
}
