//! One signed POST of a batch of webhook events, for the dispatcher
//! (`webhooks.rs`), which runs each in a task of its own.
//!
//! Guarantees:
//! - The address is checked at every send, not only at create: an IP literal
//!   before connecting, a host name inside the HTTP client's resolver
//!   ([`VettingResolver`]), so the connection goes only to addresses that
//!   passed [`webhook::vet`] (no second lookup a DNS change could slip
//!   between); hosts in `[webhooks] allow_hosts` are exempt.
//! - No redirect is followed (a 3xx is a failed attempt), the whole exchange
//!   (connect, request, answer) is cut at `timeout_ms`, and at most
//!   `max_response_bytes` of an answer are read, only when it failed.
//! - The signing secret is opened from its sealed form for the request and
//!   dropped (zeroized) after it; it never reaches a log or an error.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use penguin_config::WebhooksConfig;
use penguin_engine::dns::MxResolver;
use penguin_engine::secrets::Sealer;
use penguin_engine::store::webhook_outbox::{Answer, Batch};
use penguin_engine::webhook::{self, Event, SIGNATURE_HEADER};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use uuid::Uuid;

/// Sends batches; cheap to share.
pub struct Sender {
    client: reqwest::Client,
    config: WebhooksConfig,
    sealer: Option<Arc<Sealer>>,
}

/// The HTTP client's resolver: the engine's DNS, with every address vetted.
struct VettingResolver {
    resolver: Arc<dyn MxResolver>,
    config: WebhooksConfig,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let allowed = self.config.allows(&host);
        let resolver = self.resolver.clone();
        Box::pin(async move {
            let found = resolver.resolve_addresses(&host).await.map_err(|e| {
                Box::new(Refused(format!("{host}: {e}"))) as Box<dyn Error + Send + Sync>
            })?;
            let vetted = webhook::vet(&found, allowed).map_err(|refused| {
                Box::new(Refused(refused.to_string())) as Box<dyn Error + Send + Sync>
            })?;
            let addrs: Vec<SocketAddr> = vetted.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl Sender {
    pub fn new(
        config: &WebhooksConfig,
        resolver: Arc<dyn MxResolver>,
        sealer: Option<Arc<Sealer>>,
    ) -> anyhow::Result<Sender> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .user_agent("penguin-webhooks/1")
            .dns_resolver(Arc::new(VettingResolver {
                resolver,
                config: config.clone(),
            }))
            .build()?;
        Ok(Sender {
            client,
            config: config.clone(),
            sealer,
        })
    }

    /// POSTs `batch` (of webhook `webhook` of `tenant`) and says what came back.
    pub async fn send(&self, tenant: Uuid, webhook: Uuid, batch: &Batch) -> Answer {
        let started = Instant::now();
        let events: Vec<Event> = batch.deliveries.iter().map(|c| c.event.clone()).collect();
        let result = self.post(tenant, webhook, batch, &events).await;
        let duration_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        match result {
            Ok(status) => Answer {
                status_code: Some(status),
                error: None,
                duration_ms,
            },
            Err((status_code, error)) => Answer {
                status_code,
                error: Some(error),
                duration_ms,
            },
        }
    }

    async fn post(
        &self,
        tenant: Uuid,
        webhook: Uuid,
        batch: &Batch,
        events: &[Event],
    ) -> Result<i32, (Option<i32>, String)> {
        let fail = |e: String| (None, e);
        let sealer = self.sealer.as_ref().ok_or_else(|| {
            fail(
                "this node has no [secrets] master_key: the signing secret cannot be opened".into(),
            )
        })?;
        let aad = webhook::secret_aad(tenant, webhook);
        let secret = sealer
            .open(&batch.sealed_secret, &batch.secret_version, aad.as_bytes())
            .map_err(|e| fail(format!("the signing secret cannot be opened: {e}")))?;
        let target = webhook::parse_url(&batch.url).map_err(fail)?;
        if let Some(ip) = target.ip {
            webhook::vet(&[ip], self.config.allows(&target.host))
                .map_err(|refused| fail(refused.to_string()))?;
        }
        let body = webhook::body(events);
        let t = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = webhook::signature(&secret, t, &body);
        drop(secret);
        let response = self
            .client
            .post(target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| fail(self.describe(&e)))?;
        let status = i32::from(response.status().as_u16());
        if response.status().is_success() {
            return Ok(status);
        }
        let excerpt = self.excerpt(response).await;
        Err((Some(status), format!("HTTP {status}{excerpt}")))
    }

    /// At most `max_response_bytes` of a failed answer, printable, `": …"`.
    async fn excerpt(&self, mut response: reqwest::Response) -> String {
        let limit = self.config.max_response_bytes as usize;
        let mut read: Vec<u8> = Vec::new();
        while read.len() < limit {
            match response.chunk().await {
                Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                _ => break,
            }
        }
        read.truncate(limit);
        let text: String = String::from_utf8_lossy(&read)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    }

    /// A request error with its causes, one line.
    fn describe(&self, err: &reqwest::Error) -> String {
        if err.is_timeout() {
            return format!("timed out after {} ms", self.config.timeout_ms);
        }
        let mut text = if err.is_connect() {
            "connect failed".to_string()
        } else {
            "request failed".to_string()
        };
        let mut source = err.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use penguin_engine::dns::FakeResolver;
    use penguin_engine::store::webhook_outbox::Claimed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-line HTTP server on 127.0.0.1 answering 200; counts connections.
    async fn server() -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        (port, connections)
    }

    fn batch(url: &str, sealer: &Sealer, tenant: Uuid, webhook: Uuid) -> Batch {
        let aad = webhook::secret_aad(tenant, webhook);
        Batch {
            url: url.to_string(),
            sealed_secret: sealer.seal(b"whsec_test", aad.as_bytes()),
            secret_version: sealer.version().to_string(),
            deliveries: vec![Claimed {
                delivery: Uuid::now_v7(),
                attempt: 1,
                event: Event {
                    id: 7,
                    kind: "sent".into(),
                    tenant_id: tenant,
                    campaign_id: None,
                    job_id: None,
                    recipient: None,
                    smtp_code: Some(250),
                    enhanced_code: None,
                    reply: None,
                    created_at: time::OffsetDateTime::now_utc(),
                },
            }],
        }
    }

    fn sender(allow: &[&str], resolver: FakeResolver, sealer: &Sealer) -> Sender {
        let config = WebhooksConfig {
            allow_hosts: allow.iter().map(|h| h.to_string()).collect(),
            timeout_ms: 2_000,
            ..WebhooksConfig::default()
        };
        Sender::new(&config, Arc::new(resolver), Some(Arc::new(sealer.clone()))).unwrap()
    }

    #[tokio::test]
    async fn a_host_now_resolving_to_a_private_address_is_refused_at_send() {
        let (port, connections) = server().await;
        let sealer = Sealer::from_keys([1; 32], &[]);
        let (tenant, webhook) = (Uuid::now_v7(), Uuid::now_v7());
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let resolver = || FakeResolver::new().with_addresses("hooks.example", &[loopback]);
        let url = format!("http://hooks.example:{port}/hook");

        let refused = sender(&[], resolver(), &sealer)
            .send(tenant, webhook, &batch(&url, &sealer, tenant, webhook))
            .await;
        let error = refused.error.expect("refused");
        assert!(error.contains("not a public address"), "{error}");
        assert_eq!(refused.status_code, None);
        let literal = format!("http://127.0.0.1:{port}/hook");
        let refused = sender(&[], resolver(), &sealer)
            .send(tenant, webhook, &batch(&literal, &sealer, tenant, webhook))
            .await;
        assert!(refused.error.expect("refused").contains("allow_hosts"));
        assert_eq!(connections.load(Ordering::SeqCst), 0, "connected anyway");

        let allowed = sender(&["hooks.example"], resolver(), &sealer)
            .send(tenant, webhook, &batch(&url, &sealer, tenant, webhook))
            .await;
        assert_eq!(allowed.error, None);
        assert_eq!(allowed.status_code, Some(200));
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_secret_sealed_for_another_webhook_does_not_open() {
        let sealer = Sealer::from_keys([1; 32], &[]);
        let tenant = Uuid::now_v7();
        let sealed_for = Uuid::now_v7();
        let moved = batch("http://127.0.0.1:9/hook", &sealer, tenant, sealed_for);
        let answer = sender(&["127.0.0.1"], FakeResolver::new(), &sealer)
            .send(tenant, Uuid::now_v7(), &moved)
            .await;
        let error = answer.error.expect("refused");
        assert!(error.contains("signing secret cannot be opened"), "{error}");
        assert!(!error.contains("whsec_"), "{error}");
    }
}
