//! Serving the API: the two listeners of DESIGN.md §10 ([`Listeners`]) and the
//! connection loop that runs each one ([`serve`]): hyper's HTTP/1 server with
//! hyper-util's `TokioTimer`, in place of a bare `axum::serve`, which sets no
//! timeout and no cap. Called by `penguin::node::Node` and by the tests'
//! in-process API.
//!
//! HTTP/1.1 only, as before (axum is built without its `http2` feature): an
//! HTTP/2 preface is refused by the parser at once. Adding HTTP/2 would add
//! its own attack surface (stream floods, resets) for no client that needs it.
//!
//! Guarantees, per listener, from its section's [`HttpLimits`]:
//! - **A cap on connections.** A connection takes one of `max_connections`
//!   slots at accept. With none left it is refused on the spot — a 503 written
//!   without waiting (best effort), then closed — and counted in
//!   [`CONNECTIONS_REFUSED_TOTAL`]; an accepted connection never waits
//!   for a slot, and the accept loop never waits for anything but the socket.
//! - **A header-read timeout.** A request line and its headers must arrive
//!   within `header_read_timeout` of the moment the server starts waiting for
//!   them (hyper's timer; it also runs while a keep-alive connection waits for
//!   its next request). A new connection must also have begun a request
//!   within the same time.
//! - **An idle timeout.** A connection with no request in flight for
//!   `idle_timeout` is closed gracefully (when it is shorter than the
//!   header-read timeout, which closes idle keep-alive connections too).
//! - **Graceful shutdown.** Once `shutdown` resolves, both listeners stop
//!   accepting; each connection is asked to close once its in-flight requests
//!   are answered (the request timeout bounds them); [`serve`] returns when
//!   every connection has ended.
//! - **Closing is bounded.** A connection asked to close (timed out, or the
//!   server stopping) that is still open [`CLOSE_GRACE`] after that, or after
//!   its last request ended, is dropped (hyper finishes a request head it has
//!   begun to read before it closes; this does not wait for it).
//! - Every request carries the peer's address as axum's
//!   `ConnectInfo<SocketAddr>`.

use std::future::Future;
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ::metrics::{Recorder, counter, gauge};
use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use penguin_config::{Config, HttpLimits};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::metrics::{CONNECTIONS_OPEN, CONNECTIONS_REFUSED_TOTAL, CONNECTIONS_TIMED_OUT_TOTAL};
use crate::{AppState, Routes, router};

/// The bound listeners of a node: `api.listen`, and `public.listen` unless
/// `public.share_api_listener` makes them one.
pub struct Listeners {
    api: TcpListener,
    public: Option<TcpListener>,
}

impl Listeners {
    /// Binds `api.listen`, then `public.listen` (unless shared); an error names
    /// the key whose address could not be bound.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let api = TcpListener::bind(&config.api.listen)
            .await
            .with_context(|| format!("binding api.listen {}", config.api.listen))?;
        if config.public.shares(&config.api.listen) {
            return Ok(Listeners { api, public: None });
        }
        let public = TcpListener::bind(&config.public.listen)
            .await
            .with_context(|| format!("binding public.listen {}", config.public.listen))?;
        Ok(Listeners {
            api,
            public: Some(public),
        })
    }

    /// Where the control API answers.
    pub fn api_addr(&self) -> io::Result<SocketAddr> {
        self.api.local_addr()
    }

    /// Where the public links answer (the API's address when shared).
    pub fn public_addr(&self) -> io::Result<SocketAddr> {
        self.public.as_ref().unwrap_or(&self.api).local_addr()
    }
}

/// Serves `state`'s routes on `listeners` — the operator routes on one, the
/// public links on the other, or every route on a shared one — until
/// `shutdown` resolves and every connection has ended.
pub async fn serve(
    listeners: Listeners,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let recorder: Arc<dyn Recorder + Send + Sync> = state.metrics.clone();
    crate::metrics::recorded(recorder, serve_listeners(listeners, state, shutdown)).await;
}

/// [`serve`], inside the node's metrics recorder.
async fn serve_listeners(
    listeners: Listeners,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let recorder: Arc<dyn Recorder + Send + Sync> = state.metrics.clone();
    let config = state.config.clone();
    let (stop, stopped) = watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let Some(public) = listeners.public else {
        let shared = Listener {
            name: "shared",
            routes: router(state, Routes::All),
            limits: config.api.http_limits(),
            recorder,
        };
        tokio::join!(signal, shared.run(listeners.api, stopped));
        return;
    };
    let api = Listener {
        name: "api",
        routes: router(state.clone(), Routes::Operator),
        limits: config.api.http_limits(),
        recorder: recorder.clone(),
    };
    let public_links = Listener {
        name: "public",
        routes: router(state, Routes::Public),
        limits: config.public.http_limits(),
        recorder,
    };
    tokio::join!(
        signal,
        api.run(listeners.api, stopped.clone()),
        public_links.run(public, stopped),
    );
}

/// How long a connection asked to close, with nothing in flight, may take to
/// go before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a refused connection is sent before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nconnection: close\r\ncontent-length: 72\r\n\r\n\
{\"error\":{\"code\":\"unavailable\",\"message\":\"too many connections; retry\"}}";

/// One listener's routes and limits.
struct Listener {
    /// The `listener` label of its metrics: `api`, `public` or `shared`.
    name: &'static str,
    routes: Router,
    limits: HttpLimits,
    /// The node's metrics registry, for the connections it spawns.
    recorder: Arc<dyn Recorder + Send + Sync>,
}

impl Listener {
    /// The accept loop: until `stop`, then waits for every connection to end.
    async fn run(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(listener = self.name, %address, "HTTP listening");
        }
        let max = self.limits.max_connections;
        let slots = Arc::new(Semaphore::new(max));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        let this = Arc::new(self);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        accept_failed(this.name, error).await;
                        continue;
                    }
                },
                _ = stopped(&mut stop) => break,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                counter!(CONNECTIONS_REFUSED_TOTAL, "listener" => this.name).increment(1);
                refuse(stream);
                continue;
            };
            let (this, builder, stop) = (this.clone(), builder.clone(), stop.clone());
            let recorder = this.recorder.clone();
            tokio::spawn(crate::metrics::recorded(recorder, async move {
                gauge!(CONNECTIONS_OPEN, "listener" => this.name).increment(1.0);
                this.connection(&builder, stream, peer, stop).await;
                gauge!(CONNECTIONS_OPEN, "listener" => this.name).decrement(1.0);
                drop(slot);
            }));
        }
        drop(listener);
        let open = max - slots.available_permits();
        tracing::info!(
            listener = this.name,
            open,
            "stopped accepting; closing connections"
        );
        // Every slot back means every connection has ended.
        let all = u32::try_from(max).expect("max_connections is validated to fit");
        let _ = slots.acquire_many(all).await;
        tracing::info!(listener = this.name, "HTTP stopped");
    }

    /// Serves one connection until it ends, closing it gracefully when it
    /// idles past its limit or the server stops.
    async fn connection(
        &self,
        builder: &http1::Builder,
        stream: TcpStream,
        peer: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) {
        let activity = Arc::new(Activity::new());
        let service = {
            let (routes, activity) = (self.routes.clone(), activity.clone());
            TowerToHyperService::new(tower::service_fn(move |request: Request<Incoming>| {
                let (routes, busy) = (routes.clone(), activity.begin());
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                async move {
                    let response = routes.oneshot(request).await;
                    drop(busy);
                    response
                }
            }))
        };
        let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
        // Since when this side has been closing it, and why if for taking
        // too long.
        let mut closing_since: Option<Instant> = None;
        let mut timed_out = None;
        let result = loop {
            let deadline = match closing_since {
                None => activity.deadline(&self.limits),
                Some(since) => activity.gone_by(since, CLOSE_GRACE),
            };
            tokio::select! {
                result = conn.as_mut() => break result,
                // A request ended: the deadline moved.
                _ = activity.ended.notified() => {}
                _ = stopped(&mut stop), if closing_since.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing_since = Some(Instant::now());
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    match closing_since {
                        None if activity.deadline(&self.limits) <= now => {
                            timed_out = Some(if activity.started() { "idle" } else { "no_request" });
                            conn.as_mut().graceful_shutdown();
                            closing_since = Some(now);
                        }
                        Some(since) if activity.gone_by(since, CLOSE_GRACE) <= now => {
                            // E.g. a peer in the middle of a request head:
                            // nothing is in flight, drop it.
                            tracing::debug!(listener = self.name, %peer, "did not close in time; dropped");
                            break Ok(());
                        }
                        _ => {}
                    }
                }
            }
        };
        // hyper's own header-read timeout, which may also end a connection
        // this side was closing (a partial head is not idle).
        let header_read = result.as_ref().is_err_and(hyper::Error::is_timeout);
        if header_read {
            timed_out = Some("header_read");
        }
        if let Some(reason) = timed_out {
            counter!(CONNECTIONS_TIMED_OUT_TOTAL, "listener" => self.name, "reason" => reason)
                .increment(1);
        }
        // At debug: peers end connections in all sorts of ways.
        match result {
            Err(error) => {
                tracing::debug!(listener = self.name, %peer, %error, ?timed_out, "connection ended");
            }
            Ok(()) => tracing::debug!(listener = self.name, %peer, ?timed_out, "connection closed"),
        }
    }
}

/// Resolves once the server stops (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Writes [`BUSY`] if the socket takes it at once, then closes it. Never waits.
fn refuse(stream: TcpStream) {
    let Ok(mut socket) = stream.into_std() else {
        return;
    };
    // Non-blocking: a fresh socket's send buffer is empty, so this either
    // writes the whole answer or nothing.
    let _ = socket.write(BUSY);
    let _ = socket.shutdown(std::net::Shutdown::Write);
    // What the client already sent, read now, so closing sends FIN, not RST.
    let mut sink = [0u8; 2048];
    while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
}

/// An accept error: a peer that gave up is skipped; anything else (out of file
/// descriptors, most likely) is logged and waited out for 100 ms, so the loop
/// neither spins nor stops.
async fn accept_failed(listener: &'static str, error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(listener, %error, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Whether a connection has requests in flight, and since when it has not.
struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Requests begun on this connection.
    begun: AtomicU64,
    /// When the last request ended (or the connection opened), in ms since `epoch`.
    idle_since_ms: AtomicU64,
    /// Told when a request ends (a permit waits if nobody listens yet).
    ended: Notify,
}

/// A request in flight; dropping it ends the request.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.epoch.elapsed().as_millis() as u64;
        activity.idle_since_ms.store(now, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        activity.ended.notify_one();
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            ended: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn started(&self) -> bool {
        self.begun.load(Ordering::Acquire) > 0
    }

    /// When a connection asked to close at `since` is dropped if it has not
    /// gone: `grace` after `since` or after its last request ended, whichever
    /// is later; a request in flight defers it by a whole `grace`.
    fn gone_by(&self, since: Instant, grace: Duration) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Instant::now() + grace;
        }
        let idle_since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        since.max(self.epoch + idle_since) + grace
    }

    /// When the connection is due to be closed if nothing happens: a request
    /// in flight defers it by a whole `idle_timeout` (checked again then);
    /// before any request it is `header_read_timeout` after accept; after one,
    /// `idle_timeout` after the last ended.
    fn deadline(&self, limits: &HttpLimits) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Instant::now() + limits.idle_timeout;
        }
        let limit = if self.started() {
            limits.idle_timeout
        } else {
            limits.header_read_timeout
        };
        let idle_since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        self.epoch + idle_since + limit
    }
}

#[cfg(test)]
mod tests;
