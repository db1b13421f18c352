//! Hostile scenario: trickling clients and connection floods at the HTTP level
//! (issue 12, items 4 and 6), against a real `penguin serve` process.
//!
//! - A client that never finishes its request — nothing at all, a request line
//!   or a header whose bytes trickle in one a second — is cut off
//!   `header_read_timeout_ms` after it connected, on either listener: trickled
//!   bytes do not restart the clock. An HTTP/2 preface (not spoken here) is
//!   refused at once.
//! - A flood of idle connections past `max_connections` is refused at once (a
//!   503, then closed) and counted in `penguin_http_connections_refused_total`,
//!   never left waiting; the connections the flood got in on are cut off by the
//!   same timeout, which frees their slots.
//! - All along, the node answers `/health` within 1 s — on fresh connections
//!   while the public listener is flooded, on an established one while the
//!   control API itself is — and stays under 512 MiB RSS. Both figures are
//!   printed.
//! - A keep-alive connection that waits for its next request gives its slot
//!   back after the shorter of `header_read_timeout_ms` and `idle_timeout_ms`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use penguin_api::serve::CLOSE_GRACE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::api::ApiServer;
use crate::support::health_probe::{PROBE_ANSWERS, Probe};
use crate::support::node_process::NodeProcess;
use crate::support::{TestEnv, wait_for};

/// Each listener's connection cap in these scenarios.
const CAP: usize = 64;
/// Connections each flood opens.
const FLOOD: usize = 1_000;
/// A `penguin serve` node whose two listeners take `CAP` connections each and
/// `header_read` to receive a request head.
async fn start_node(env: &TestEnv, header_read: Duration) -> NodeProcess {
    let mut config = env.config.clone();
    let header_read_ms = header_read.as_millis() as u64;
    config.api.max_connections = CAP;
    config.api.header_read_timeout_ms = header_read_ms;
    config.public.max_connections = CAP;
    config.public.header_read_timeout_ms = header_read_ms;
    NodeProcess::start(&config).await
}

fn address(url: &str) -> SocketAddr {
    let host = url.strip_prefix("http://").expect("an http:// URL");
    host.parse().expect("a socket address")
}

/// A client that opens a new connection for every request.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client")
}

/// How a slow client starts, and whether it then trickles a byte a second.
#[derive(Debug, Clone, Copy)]
enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// A request line that never ends (the path grows).
    RequestLine,
    /// A whole request line, then a header that never ends.
    Header,
}

impl Slow {
    const ALL: [Slow; 3] = [Slow::Silent, Slow::RequestLine, Slow::Header];

    fn opening(self) -> &'static [u8] {
        match self {
            Slow::Silent => b"",
            Slow::RequestLine => b"GET /t/o/",
            Slow::Header => b"GET /t/o/x HTTP/1.1\r\nHost: penguin.test\r\nX-Slow: ",
        }
    }
}

/// Plays `slow` against `addr` until the server closes the connection;
/// returns how long after connecting that was. Panics after 30 s.
async fn trickle(addr: SocketAddr, slow: Slow) -> Duration {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let connected = Instant::now();
    if stream.write_all(slow.opening()).await.is_err() {
        return connected.elapsed();
    }
    let mut buf = [0u8; 1024];
    let second = Duration::from_secs(1);
    let mut pace = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
    while connected.elapsed() < Duration::from_secs(30) {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return connected.elapsed(),
                Ok(_) => {} // an error answer; the close follows
            },
            // The attack's own pace: one byte a second.
            _ = pace.tick() => {
                let byte: &[u8] = if matches!(slow, Slow::Silent) { b"" } else { b"a" };
                if stream.write_all(byte).await.is_err() {
                    return connected.elapsed();
                }
            }
        }
    }
    panic!("{slow:?} against {addr}: still open after 30 s");
}

/// The value of metric `name` with `labels` in a Prometheus text page.
fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_clients_are_cut_off_after_the_header_read_timeout() {
    let env = TestEnv::start().await;
    let header_read = Duration::from_secs(3);
    let node = start_node(&env, header_read).await;
    let probe = Probe::start(fresh_connections(), node.api_url(), node.pid());

    let mut attacks = Vec::new();
    for (listener, url) in [("public", node.public_url()), ("api", node.api_url())] {
        for slow in Slow::ALL {
            for _ in 0..10 {
                let addr = address(url);
                let attack =
                    tokio::spawn(async move { (listener, slow, trickle(addr, slow).await) });
                attacks.push(attack);
            }
        }
    }
    let mut slowest = Duration::ZERO;
    for attack in join_all(attacks).await {
        let (listener, slow, cut_after) = attack.expect("the attack ran");
        assert!(
            cut_after >= header_read - Duration::from_millis(100)
                && cut_after <= header_read + CLOSE_GRACE + Duration::from_secs(1),
            "{slow:?} on the {listener} listener was cut off after {cut_after:?}, \
             not about {header_read:?}"
        );
        slowest = slowest.max(cut_after);
    }
    println!(
        "60 slow clients (silent, request line, header; both listeners): all cut off by {slowest:?}"
    );
    probe
        .stop()
        .await
        .assert_healthy("while 60 slow clients held on");

    // HTTP/2 with prior knowledge is not spoken here: refused at once.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut h2 = TcpStream::connect(address(node.public_url()))
        .await
        .expect("connect");
    h2.write_all(preface).await.expect("send the preface");
    let fate = fate(&mut h2, Duration::from_secs(1)).await;
    assert_ne!(fate, Fate::Held, "an HTTP/2 preface is refused at once");

    let page = reqwest::get(format!("{}/metrics", node.api_url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("a page");
    for listener in ["public", "api"] {
        let timed_out = metric(
            &page,
            "penguin_http_connections_timed_out_total",
            &[("listener", listener)],
        );
        assert!(
            timed_out >= 30.0,
            "{listener}: {timed_out} timeouts counted"
        );
    }
}

/// How the server treated one connection of a flood within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Closed with the 503 answer.
    Refused503,
    /// Closed without an answer.
    Closed,
    /// Still open.
    Held,
}

async fn fate(stream: &mut TcpStream, window: Duration) -> Fate {
    let mut received = Vec::new();
    match tokio::time::timeout(window, stream.read_to_end(&mut received)).await {
        Err(_) => Fate::Held,
        Ok(_) if received.starts_with(b"HTTP/1.1 503") => Fate::Refused503,
        Ok(_) => Fate::Closed,
    }
}

/// How the server ended a connection: with the 503 answer or without one.
async fn closing(stream: &mut TcpStream) -> Fate {
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received).await;
    if received.starts_with(b"HTTP/1.1 503") {
        Fate::Refused503
    } else {
        Fate::Closed
    }
}

/// Opens [`FLOOD`] idle connections to `addr` and waits until the server has
/// closed `refusals` of them (at most `within`: the assertions then say how
/// many it had). Returns those still open, the number closed, and how many of
/// those had the 503.
async fn flood(
    addr: SocketAddr,
    refusals: usize,
    within: Duration,
) -> (Vec<TcpStream>, usize, usize) {
    let started = Instant::now();
    let mut streams = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        streams.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let opened = started.elapsed();
    let mut fates = vec![Fate::Held; FLOOD];
    let mut refused = 0;
    {
        let mut closings: FuturesUnordered<_> = streams
            .iter_mut()
            .enumerate()
            .map(|(i, stream)| async move { (i, closing(stream).await) })
            .collect();
        let deadline = tokio::time::Instant::now() + within;
        while refused < refusals {
            match tokio::time::timeout_at(deadline, closings.next()).await {
                Ok(Some((i, fate))) => {
                    fates[i] = fate;
                    refused += 1;
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    let with_503 = fates.iter().filter(|f| **f == Fate::Refused503).count();
    let held: Vec<TcpStream> = streams
        .into_iter()
        .zip(&fates)
        .filter(|(_, f)| **f == Fate::Held)
        .map(|(s, _)| s)
        .collect();
    println!(
        "flood of {FLOOD} idle connections to {addr} (opened in {opened:?}): {} held, \
         {refused} refused after {:?} ({with_503} with the 503)",
        held.len(),
        started.elapsed() - opened,
    );
    (held, refused, with_503)
}

/// The node's `penguin_http_connections_open{listener}` gauge, read with `client`.
async fn open_connections(client: &reqwest::Client, node: &NodeProcess, listener: &str) -> f64 {
    let page = client
        .get(format!("{}/metrics", node.api_url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("a page");
    metric(
        &page,
        "penguin_http_connections_open",
        &[("listener", listener)],
    )
}

/// Waits until the server has closed every one of `held`.
async fn assert_cut_off(held: Vec<TcpStream>, within: Duration) {
    let started = Instant::now();
    let fates = join_all(
        held.into_iter()
            .map(|mut s| async move { fate(&mut s, within).await }),
    )
    .await;
    let still = fates.iter().filter(|f| **f == Fate::Held).count();
    assert_eq!(
        still, 0,
        "{still} flood connections still open after {within:?}"
    );
    println!(
        "the flood's held connections were cut off within {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_cap_is_refused_at_once_while_health_answers() {
    let env = TestEnv::start().await;
    // Long enough that no connection the flood got in on times out while the
    // flood is opened and counted, even on a busy machine.
    let header_read = Duration::from_secs(6);
    let node = start_node(&env, header_read).await;

    // The public listener flooded: the control API takes new connections.
    let probe = Probe::start(fresh_connections(), node.api_url(), node.pid());
    // Refusals come at once; held connections stay open for the header-read
    // timeout: waiting for the refusals never reaches it.
    let within = header_read / 2;
    let (held, refused, with_503) = flood(address(node.public_url()), FLOOD - CAP, within).await;
    assert_eq!(refused, FLOOD - CAP, "the rest is refused at once");
    assert_eq!(held.len(), CAP, "the public listener holds its cap");
    let client = fresh_connections();
    wait_for(
        "the public listener to hold exactly its cap",
        Duration::from_secs(10),
        || async { (open_connections(&client, &node, "public").await == CAP as f64).then_some(()) },
    )
    .await;
    assert!(with_503 > 0, "no refused connection got the 503");
    probe
        .stop_after(PROBE_ANSWERS)
        .await
        .assert_healthy("while the public listener was flooded");
    assert_cut_off(held, header_read + Duration::from_secs(2)).await;

    // The control API itself flooded: a client already connected is served.
    let connected = reqwest::Client::new();
    let url = format!("{}/health", node.api_url());
    assert_eq!(
        connected.get(&url).send().await.expect("health").status(),
        200
    );
    let probe = Probe::start(connected.clone(), node.api_url(), node.pid());
    // The connected client holds one slot: one more of the flood is refused.
    let (held, refused, _) = flood(address(node.api_url()), FLOOD - CAP + 1, within).await;
    assert_eq!(refused, FLOOD - CAP + 1, "the rest is refused at once");
    assert_eq!(held.len(), CAP - 1, "the connected client holds a slot");
    // The probe stops before the gauge is read: HTTP/1.1 carries one request
    // at a time, so a second request in flight on `connected` would open a
    // second connection, which the full listener rightly refuses.
    probe
        .stop_after(PROBE_ANSWERS)
        .await
        .assert_healthy("while the control API was flooded (one connection kept)");
    wait_for(
        "the control API to hold exactly its cap, the connected client included",
        Duration::from_secs(10),
        || async { (open_connections(&connected, &node, "api").await == CAP as f64).then_some(()) },
    )
    .await;
    let page = connected
        .get(format!("{}/metrics", node.api_url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("a page");
    for listener in ["public", "api"] {
        let counted = metric(
            &page,
            "penguin_http_connections_refused_total",
            &[("listener", listener)],
        );
        assert!(
            counted >= (FLOOD - CAP) as f64,
            "{listener}: {counted} refusals counted"
        );
    }
    assert_cut_off(held, header_read + Duration::from_secs(2)).await;

    // Slots freed: a new connection is served again.
    wait_for(
        "/health on a new connection",
        Duration::from_secs(10),
        || async {
            let answer = fresh_connections().get(&url).send().await.ok()?;
            (answer.status() == 200).then_some(())
        },
    )
    .await;
}

/// Sends one `GET /health` on `stream` and reads until its answer is whole.
async fn one_request(stream: &mut TcpStream) {
    let request = b"GET /health HTTP/1.1\r\nHost: penguin.test\r\n\r\n";
    stream.write_all(request).await.expect("send");
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !received.ends_with(br#"{"status":"ok"}"#) {
        let n = stream.read(&mut buf).await.expect("an answer");
        assert!(n > 0, "closed before answering");
        received.extend_from_slice(&buf[..n]);
    }
}

/// How long after its last answer a keep-alive connection stays open with
/// this `header_read` and `idle` timeout.
async fn kept_alive_for(env: &TestEnv, header_read: Duration, idle: Duration) -> Duration {
    let server = ApiServer::start(env, |config| {
        config.api.header_read_timeout_ms = header_read.as_millis() as u64;
        config.api.idle_timeout_ms = idle.as_millis() as u64;
    })
    .await;
    let mut stream = TcpStream::connect(address(&server.api.base))
        .await
        .expect("connect");
    one_request(&mut stream).await;
    one_request(&mut stream).await;
    let answered = Instant::now();
    let closed = fate(&mut stream, Duration::from_secs(10)).await;
    assert_ne!(
        closed,
        Fate::Held,
        "a keep-alive connection is never closed"
    );
    answered.elapsed()
}

#[tokio::test]
async fn idle_keep_alive_connections_give_their_slot_back() {
    let env = TestEnv::start().await;
    let short = Duration::from_secs(1);
    let long = Duration::from_secs(30);
    let near = |took: Duration| took >= short - Duration::from_millis(100) && took < short * 2;

    // HTTP/1: the header-read clock runs while the connection waits for its
    // next request, so the shorter of the two timeouts closes it.
    for (header_read, idle) in [(short, long), (long, short)] {
        let took = kept_alive_for(&env, header_read, idle).await;
        println!(
            "header-read timeout {header_read:?}, idle timeout {idle:?}: an idle \
             keep-alive connection closed {took:?} after its last answer"
        );
        assert!(near(took), "closed {took:?} after the last answer");
    }
}
