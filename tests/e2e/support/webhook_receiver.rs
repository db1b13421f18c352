//! A real HTTP receiver for webhook scenarios, on 127.0.0.1: it records every
//! request (headers and body, at arrival) and answers as the test says — 200,
//! any status, or never (the request hangs until the client gives up) — with
//! a scripted prefix of answers before the standing one.
//!
//! [`verify`] checks a `Penguin-Signature` the way a receiver would, from the
//! secret the API returned at create.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How the receiver answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// Never answers (the connection stays open until the client drops it).
    Hang,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub reply: Reply,
}

impl Received {
    /// The `events` array of the body.
    pub fn events(&self) -> Vec<Value> {
        let body: Value = serde_json::from_slice(&self.body).expect("a JSON body");
        body["events"].as_array().cloned().expect("an events array")
    }
}

#[derive(Default)]
struct Inner {
    standing: Mutex<Option<Reply>>,
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    hanging: AtomicUsize,
}

pub struct Receiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let reply = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or(*inner.standing.lock().unwrap())
        .unwrap_or(Reply::Status(200));
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    inner.received.lock().unwrap().push(Received {
        signature: header("penguin-signature"),
        content_type: header("content-type"),
        body,
        reply,
    });
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).expect("a status code"),
        Reply::Hang => {
            inner.hanging.fetch_add(1, Ordering::SeqCst);
            let _guard = HangGuard(inner.clone());
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

/// Counts a hanging request as gone when the client drops it.
struct HangGuard(Arc<Inner>);

impl Drop for HangGuard {
    fn drop(&mut self) {
        self.0.hanging.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Receiver {
    /// Listens on 127.0.0.1 (a free port), answering 200.
    pub async fn start() -> Receiver {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, inner, task }
    }

    /// The webhook URL to register.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The standing answer (after the script).
    pub fn answer(&self, reply: Reply) {
        *self.inner.standing.lock().unwrap() = Some(reply);
    }

    /// Answers the next requests with `replies`, in order, then the standing answer.
    pub fn script(&self, replies: &[Reply]) {
        self.inner
            .script
            .lock()
            .unwrap()
            .extend(replies.iter().copied());
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// Requests so far.
    pub fn count(&self) -> usize {
        self.inner.received.lock().unwrap().len()
    }

    /// Requests waiting for an answer that will not come.
    pub fn hanging(&self) -> usize {
        self.inner.hanging.load(Ordering::SeqCst)
    }

    /// The event ids of every request answered 2xx.
    pub fn delivered_ids(&self) -> BTreeSet<i64> {
        self.received()
            .iter()
            .filter(|r| matches!(r.reply, Reply::Status(200..=299)))
            .flat_map(|r| r.events())
            .map(|e| e["id"].as_i64().expect("an event id"))
            .collect()
    }

    /// The event ids of every request, answered or not.
    pub fn seen_ids(&self) -> BTreeSet<i64> {
        self.received()
            .iter()
            .flat_map(|r| r.events())
            .map(|e| e["id"].as_i64().expect("an event id"))
            .collect()
    }
}

/// Checks `header` (`t=<unix>,v1=<hex>`) against `body` and `secret` as a
/// receiver would: HMAC-SHA256 over `"<t>." + body`.
pub fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == v1
}

/// `POST /v1/webhooks` for `token`, expecting 201; returns `(id, secret)`.
pub async fn create_webhook(
    api: &super::api::ApiClient,
    token: &str,
    url: &str,
    events: &[&str],
) -> (uuid::Uuid, String) {
    let answer = api
        .post(
            "/v1/webhooks",
            Some(token),
            &serde_json::json!({ "url": url, "events": events }),
        )
        .await;
    let body = answer.expect(201);
    let secret = body["secret"].as_str().expect("a secret").to_string();
    (answer.id(), secret)
}

/// The ids of `tenant`'s delivery events of `kinds` (engine names).
pub async fn event_ids(env: &super::TestEnv, tenant: uuid::Uuid, kinds: &[&str]) -> BTreeSet<i64> {
    let kinds: Vec<String> = kinds.iter().map(|k| format!("'{k}'")).collect();
    env.psql(&format!(
        "SELECT id FROM delivery_events WHERE tenant_id = '{tenant}' AND kind IN ({})",
        kinds.join(", ")
    ))
    .await
    .iter()
    .map(|row| row.get(0))
    .collect()
}
