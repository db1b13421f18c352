//! Tests of the connection loop: the bookkeeping of deadlines, the refusal
//! answer, and over loopback sockets the cap (refused at once, never queued)
//! and graceful shutdown (in-flight requests finish, new connections are not
//! taken).

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::*;

fn limits() -> HttpLimits {
    HttpLimits {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
    }
}

#[test]
fn a_connection_is_due_by_the_header_timeout_then_by_the_idle_timeout() {
    let activity = Arc::new(Activity::new());
    let opened = activity.epoch;
    assert_eq!(
        activity.deadline(&limits()),
        opened + Duration::from_secs(2)
    );

    let busy = activity.begin();
    let asked = Instant::now();
    let due = activity.deadline(&limits());
    assert!(
        due >= asked + Duration::from_secs(30),
        "busy: a whole idle timeout on"
    );

    let before = Instant::now();
    drop(busy);
    let due = activity.deadline(&limits());
    // `idle_since` is kept in whole milliseconds.
    let earliest = before + Duration::from_secs(30) - Duration::from_millis(1);
    assert!(due >= earliest, "idle: from when the request ended");
    assert!(due <= Instant::now() + Duration::from_secs(30));
}

#[test]
fn the_busy_answer_is_one_well_formed_response() {
    let text = std::str::from_utf8(BUSY).expect("ASCII");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 503 "));
    assert!(head.contains(&format!("content-length: {}", body.len())));
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(json["error"]["code"], "unavailable");
}

/// A listener serving `GET /slow`, which answers once the test says so, on a
/// free loopback port with `max_connections`; returns its address, the
/// channel that says a request arrived (with the sender releasing it), the
/// stop switch and the running accept loop.
async fn slow_server(
    max_connections: usize,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (arrived, arrivals) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
    let routes = Router::new().route(
        "/slow",
        get(move || {
            let arrived = arrived.clone();
            async move {
                let (release, released) = oneshot::channel();
                let _ = arrived.send(release);
                let _ = released.await;
                "done"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = Listener {
        name: "test",
        routes,
        limits: HttpLimits {
            max_connections,
            ..limits()
        },
        recorder: Arc::new(crate::recorder::node_recorder()),
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(server.run(listener, stopped));
    (addr, arrivals, stop, task)
}

/// Opens a connection and sends `GET /slow`.
async fn ask_slow(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n";
    stream.write_all(request).await.expect("send");
    stream
}

/// Everything the server sends until it closes the connection.
async fn read_all(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received).await;
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn past_the_cap_a_connection_is_refused_at_once() {
    let (addr, mut arrivals, _stop, _task) = slow_server(1).await;
    let _held = ask_slow(addr).await;
    let release = arrivals.recv().await.expect("the first request arrives");

    // The one slot is taken: the next connection gets the 503 and is closed,
    // without waiting for the slot.
    let mut refused = ask_slow(addr).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), read_all(&mut refused))
        .await
        .expect("refused at once");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    let _ = release.send(());
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_in_flight_requests_finish() {
    let (addr, mut arrivals, stop, task) = slow_server(4).await;
    let mut in_flight = ask_slow(addr).await;
    let release = arrivals.recv().await.expect("the request arrives");

    stop.send(true).expect("the loop listens");
    // The listener goes away; the request in flight is still being served.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after the stop");
        tokio::task::yield_now().await;
    }
    assert!(!task.is_finished(), "returned with a request in flight");

    let _ = release.send(());
    let answer = read_all(&mut in_flight).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("every connection ended")
        .expect("the loop ran");
}
