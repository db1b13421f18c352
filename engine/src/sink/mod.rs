//! The loopback SMTP sink: a small, fast SMTP server that accepts everything (or
//! what its rules say), records who sent what, and keeps message bodies only
//! when asked ([`SinkHandle::keep_bodies`], for tests that read the messages).
//!
//! Used by the engine's tests, `penguin demo`, `penguin bench` and
//! `penguin sink`. Start it with [`Sink::start`]; the returned [`SinkHandle`]
//! reads what arrived ([`SinkHandle::stats`], [`SinkHandle::messages`]), changes
//! the scripted replies and shuts it down. An optional HTTP JSON API exposes the
//! same to other processes (see [`http`]).
//!
//! - [`rules`]: scripted replies (bounce, defer N times, delay, drop).
//! - [`state`]: records and counters.
//! - `session`: the SMTP protocol, one task per connection.
//!
//! STARTTLS (for tests of the client's TLS): start with [`Sink::start_with_tls`];
//! the sink then offers STARTTLS and records per message whether it arrived over
//! TLS ([`ReceivedMessage::tls`], [`SinkStats::tls_messages`]). Without it,
//! STARTTLS is neither offered nor understood.
//!
//! Guarantees: a message is recorded before its 250 is sent; per message only the
//! source IP, Message-ID, envelope, size and connection id are kept (100k
//! messages ≈ tens of MB); many concurrent, pipelining clients are fine;
//! [`SinkHandle::shutdown`] (or dropping the handle) stops accepting and closes
//! every open connection.

pub mod http;
pub mod rules;
mod session;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

pub use http::MessagesPage;
pub use rules::{Rule, RuleError, RuleStage};
pub use state::{ReceivedMessage, SinkStats};

use state::SinkState;

/// How to start a sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// SMTP listen address; port 0 picks a free port (see [`SinkHandle::smtp_addr`]).
    pub listen: SocketAddr,
    /// Initial scripted replies.
    pub rules: Vec<Rule>,
    /// Serve the JSON API here as well (port 0 allowed).
    pub http_listen: Option<SocketAddr>,
}

impl SinkConfig {
    /// SMTP on `listen`, no rules, no HTTP.
    pub fn new(listen: SocketAddr) -> Self {
        SinkConfig {
            listen,
            rules: Vec::new(),
            http_listen: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot listen for SMTP on {addr}: {source}")]
    SmtpBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for HTTP on {addr}: {source}")]
    HttpBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    InvalidRule(#[from] RuleError),
}

/// The sink server; see the module doc.
#[derive(Debug)]
pub struct Sink;

impl Sink {
    /// Binds the listeners and starts serving in background tasks.
    pub async fn start(config: SinkConfig) -> Result<SinkHandle, SinkError> {
        Self::start_inner(config, None).await
    }

    /// [`Sink::start`], also offering STARTTLS with `tls` (e.g. from
    /// [`crate::smtp::tls::server_config`] and a self-signed certificate).
    pub async fn start_with_tls(
        config: SinkConfig,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<SinkHandle, SinkError> {
        Self::start_inner(config, Some(TlsAcceptor::from(tls))).await
    }

    async fn start_inner(
        config: SinkConfig,
        tls: Option<TlsAcceptor>,
    ) -> Result<SinkHandle, SinkError> {
        let rules = rules::RuleSet::new(config.rules)?;
        let state = Arc::new(SinkState::new(rules));
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SinkError::SmtpBind {
                    addr: config.listen,
                    source,
                })?;
        let smtp_addr = listener
            .local_addr()
            .map_err(|source| SinkError::SmtpBind {
                addr: config.listen,
                source,
            })?;
        let (stop, stopped) = watch::channel(false);

        let mut tasks = Vec::new();
        let mut http_addr = None;
        if let Some(addr) = config.http_listen {
            let http_listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SinkError::HttpBind { addr, source })?;
            http_addr = Some(
                http_listener
                    .local_addr()
                    .map_err(|source| SinkError::HttpBind { addr, source })?,
            );
            let app = http::router(Arc::clone(&state));
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move { stop_requested(&mut stopped).await };
                if let Err(err) = axum::serve(http_listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::warn!(error = %err, "sink HTTP server failed");
                }
            }));
        }
        tasks.push(tokio::spawn(accept_loop(
            listener,
            Arc::clone(&state),
            stopped,
            tls,
        )));
        tracing::info!(%smtp_addr, ?http_addr, "SMTP sink listening");

        Ok(SinkHandle {
            state,
            smtp_addr,
            http_addr,
            stop,
            tasks,
        })
    }
}

/// Accepts connections until told to stop, then aborts every session.
async fn accept_loop(
    listener: TcpListener,
    state: Arc<SinkState>,
    mut stopped: watch::Receiver<bool>,
    tls: Option<TlsAcceptor>,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            () = stop_requested(&mut stopped) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    sessions.spawn(session::serve(stream, peer, Arc::clone(&state), tls.clone()));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly
                    // instead of spinning.
                    tracing::warn!(error = %err, "sink accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    sessions.shutdown().await;
}

/// Resolves once the handle asks to stop (or is gone). Returns `()` so no
/// watch guard is held across an await.
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Access to a running sink. Dropping it stops the sink (without waiting).
#[derive(Debug)]
pub struct SinkHandle {
    state: Arc<SinkState>,
    smtp_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SinkHandle {
    /// The address SMTP clients connect to (the real port when 0 was asked).
    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp_addr
    }

    /// The HTTP API address, when it was enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn stats(&self) -> SinkStats {
        self.state.stats()
    }

    /// From now on, keep the bytes of every accepted message (off by default:
    /// a benchmark's bodies would fill memory), readable with [`Self::body`].
    pub fn keep_bodies(&self, keep: bool) {
        self.state.set_keep_bodies(keep);
    }

    /// The message `seq` ([`ReceivedMessage::seq`]) as received (dot-unstuffed),
    /// if it arrived while bodies were kept.
    pub fn body(&self, seq: u64) -> Option<Vec<u8>> {
        self.state.body(seq)
    }

    /// Every recorded message, in order of acceptance.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.state.messages()
    }

    /// Up to `limit` records with `seq > after`.
    pub fn messages_after(&self, after: u64, limit: usize) -> Vec<ReceivedMessage> {
        self.state.messages_after(after, limit)
    }

    /// Message-IDs that arrived more than once (duplicates), sorted.
    pub fn message_ids_seen_more_than_once(&self) -> Vec<String> {
        self.state.duplicate_ids()
    }

    /// Forgets records and counters (rules stay, their use counts restart).
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Replaces the scripted replies.
    pub fn set_rules(&self, rules: Vec<Rule>) -> Result<(), SinkError> {
        Ok(self.state.set_rules(rules)?)
    }

    /// Waits until at least `count` messages are recorded (since the last
    /// reset), or `timeout` passes. Returns whether the count was reached.
    pub async fn wait_for_messages(&self, count: u64, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.state.accepted.notified();
                tokio::pin!(notified);
                // Register before checking, so a message in between is not missed.
                notified.as_mut().enable();
                if self.state.accepted_count() >= count {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Stops accepting, closes every connection and waits for the tasks to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
