//! The control API in-process for the `api_*` scenarios, and a raw HTTP client
//! that returns every answer (status and JSON body) instead of failing on 4xx, so
//! tests can check error answers exactly.
//!
//! [`ApiServer::start`] serves the API as a node does (`penguin_api::serve`:
//! the control API and the public links on two free loopback ports, with the
//! periodic SMTP check behind `/health/email`) against a [`TestEnv`]'s
//! Postgres and Redis; no global metrics recorder is installed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use penguin_api::email_health::{EmailChecker, EmailHealth};
use penguin_config::Config;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use uuid::Uuid;

pub use crate::support::routes::ROUTES;
use crate::support::{TestEnv, admin_token};

/// A running API; stops when dropped.
pub struct ApiServer {
    /// The control API (`api.listen`).
    pub api: ApiClient,
    /// The server's in-process limits, to look at their tables.
    pub limits: Arc<penguin_api::rate_limit::Limits>,
    /// The public links (`public.listen`; the same address when shared).
    pub public: ApiClient,
    _stop: oneshot::Sender<()>,
    _email_checker: EmailChecker,
}

impl ApiServer {
    /// Serves the API on `env`'s databases with `env.config`, adjusted by `tweak`.
    pub async fn start(env: &TestEnv, tweak: impl FnOnce(&mut Config)) -> ApiServer {
        let mut config = env.config.clone();
        tweak(&mut config);
        Self::start_on(config, env.pg.clone(), env.redis.clone()).await
    }

    /// Serves the API on the given pools (e.g. pools of servers that are down).
    pub async fn start_on(
        config: Config,
        pg: deadpool_postgres::Pool,
        redis: penguin_engine::queue::RedisPool,
    ) -> ApiServer {
        let metrics = Arc::new(penguin_api::recorder::node_recorder());
        let limits = Arc::new(penguin_api::rate_limit::Limits::new(&config.api));
        let listeners = penguin_api::Listeners::bind(&config)
            .await
            .expect("bind the listeners");
        let api = format!("http://{}", listeners.api_addr().expect("api address"));
        let public = format!(
            "http://{}",
            listeners.public_addr().expect("public address")
        );
        let (email_health, email_checker) = EmailHealth::start(
            config.delivery.routes.clone(),
            Duration::from_millis(config.api.email_health_interval_ms),
        );
        let domains = penguin_api::domain_kit::DomainKit::from_config(&config).expect("domain kit");
        let state = penguin_api::AppState {
            config: Arc::new(config),
            pg,
            redis,
            metrics,
            limits: limits.clone(),
            email_health,
            domains,
            clock: Arc::new(penguin_engine::clock::SystemClock),
            readiness: {
                // An API without an engine: nothing to wait for.
                let readiness = penguin_engine::readiness::Readiness::default();
                readiness.advance(penguin_engine::readiness::Phase::Ready);
                readiness
            },
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(penguin_api::serve(listeners, state, async move {
            let _ = stopped.await;
        }));
        ApiServer {
            limits,
            api: ApiClient::new(&api),
            public: ApiClient::new(&public),
            _stop: stop,
            _email_checker: email_checker,
        }
    }
}

/// One answer of the API.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    /// The JSON body (`Value::String` with the raw text when not JSON).
    pub body: Value,
}

impl Answer {
    /// `error.code` of an error answer (empty when absent).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    /// Panics unless this is an error answer with this status and code, in the
    /// documented shape.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "answer: {:#}",
            self.body
        );
        assert!(
            !self.message().is_empty(),
            "error without message: {}",
            self.body
        );
    }

    /// Panics unless the status is `status`; returns the body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "answer: {:#}", self.body);
        &self.body
    }

    pub fn id(&self) -> Uuid {
        self.body["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("answer without id: {}", self.body))
    }
}

#[derive(Clone)]
pub struct ApiClient {
    pub base: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str) -> ApiClient {
        // Redirects are answers too (the click link's 302), never followed.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        ApiClient {
            base: base.to_string(),
            http,
        }
    }

    /// Any request: `token` as a bearer token, `body` sent with `content_type`.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut headers = Vec::new();
        if let Some(token) = token {
            headers.push(("authorization", format!("Bearer {token}").into_bytes()));
        }
        if let Some(content_type) = content_type {
            headers.push(("content-type", content_type.as_bytes().to_vec()));
        }
        self.raw_headers(method, path, &headers, body).await
    }

    /// A request with exactly these headers (values as raw bytes, so tests can
    /// send what a well-behaved client would not) and `body`.
    pub async fn raw_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, Vec<u8>)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        for (name, value) in headers {
            let value = reqwest::header::HeaderValue::from_bytes(value)
                .unwrap_or_else(|e| panic!("header {name}: {e}"));
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("the API answers: {}", e.without_url()));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// A request with this exact `Authorization` header value and no body.
    pub async fn raw_authorization(&self, method: Method, path: &str, value: &str) -> Answer {
        let headers = [("authorization", value.as_bytes().to_vec())];
        self.raw_headers(method, path, &headers, None).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.raw(Method::GET, path, token, None, None).await
    }

    /// POSTs `body` as `application/json`.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.post_text(path, token, &body.to_string()).await
    }

    /// POSTs raw text as `application/json` (malformed JSON on purpose).
    pub async fn post_text(&self, path: &str, token: Option<&str>, text: &str) -> Answer {
        let body = Some(text.as_bytes().to_vec());
        self.raw(Method::POST, path, token, Some("application/json"), body)
            .await
    }

    /// `POST /v1/tenants` as admin; returns `(id, token)`.
    pub async fn create_tenant(&self, name: &str) -> (Uuid, String) {
        let answer = self
            .post("/v1/tenants", Some(admin_token()), &json!({ "name": name }))
            .await;
        answer.expect(201);
        let token = answer.body["token"].as_str().expect("token").to_string();
        (answer.id(), token)
    }

    /// `POST /v1/tenants/{tenant}/ips` as admin with `body`.
    pub async fn add_ip_with(&self, tenant: Uuid, body: &Value) -> Answer {
        self.post(
            &format!("/v1/tenants/{tenant}/ips"),
            Some(admin_token()),
            body,
        )
        .await
    }

    /// Adds an already-warm IP; returns its id.
    pub async fn add_ip(&self, tenant: Uuid, address: &str) -> Uuid {
        let body = json!({ "address": address, "helo_name": "mta.example.test" });
        let answer = self.add_ip_with(tenant, &body).await;
        answer.expect(201);
        answer.id()
    }

    /// `POST /v1/campaigns` with `body`.
    pub async fn create_campaign_with(&self, token: &str, body: &Value) -> Answer {
        self.post("/v1/campaigns", Some(token), body).await
    }

    /// Creates a valid campaign on `ips`; returns its id.
    pub async fn create_campaign(&self, token: &str, ips: &[Uuid]) -> Uuid {
        let answer = self.create_campaign_with(token, &campaign_body(ips)).await;
        answer.expect(201);
        answer.id()
    }

    /// `GET /v1/campaigns/{id}`.
    pub async fn campaign(&self, token: &str, id: Uuid) -> Answer {
        self.get(&format!("/v1/campaigns/{id}"), Some(token)).await
    }

    /// `POST /v1/campaigns/{id}/leads` with `{leads}`.
    pub async fn add_leads(&self, token: &str, id: Uuid, leads: Value) -> Answer {
        self.post(
            &format!("/v1/campaigns/{id}/leads"),
            Some(token),
            &json!({ "leads": leads }),
        )
        .await
    }

    /// PATCHes `body` as `application/json`.
    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        let body = Some(body.to_string().into_bytes());
        self.raw(Method::PATCH, path, token, Some("application/json"), body)
            .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Answer {
        self.raw(Method::DELETE, path, token, None, None).await
    }

    /// `GET /v1/suppressions{query}` (`query` empty or starting with `?`).
    pub async fn suppressions(&self, token: &str, query: &str) -> Answer {
        self.get(&format!("/v1/suppressions{query}"), Some(token))
            .await
    }

    /// `POST /v1/suppressions` with `body`.
    pub async fn add_suppressions_with(&self, token: &str, body: &Value) -> Answer {
        self.post("/v1/suppressions", Some(token), body).await
    }

    /// `POST /v1/suppressions` `{emails, reason}`, expecting 200; returns the body.
    pub async fn add_suppressions(&self, token: &str, emails: &[&str], reason: &str) -> Value {
        let body = json!({ "emails": emails, "reason": reason });
        let answer = self.add_suppressions_with(token, &body).await;
        answer.expect(200).clone()
    }

    /// `DELETE /v1/suppressions/{email}`, the address percent-encoded.
    pub async fn remove_suppression(&self, token: Option<&str>, email: &str) -> Answer {
        let path = format!("/v1/suppressions/{}", path_encode(email));
        self.delete(&path, token).await
    }

    /// Every suppression of the token's tenant, walking the pages `limit` at a
    /// time; panics unless every page is well-formed and at most `limit` long.
    pub async fn all_suppressions(&self, token: &str, limit: usize) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut query = format!("?limit={limit}");
        loop {
            let answer = self.suppressions(token, &query).await;
            let page = answer.expect(200);
            let items = page["suppressions"].as_array().expect("suppressions");
            assert!(items.len() <= limit, "page over limit: {page:#}");
            rows.extend(items.iter().cloned());
            match page["next_after"].as_str() {
                Some(after) => query = format!("?limit={limit}&after={}", path_encode(after)),
                None => return rows,
            }
        }
    }

    /// `GET /v1/campaigns/{id}/events{query}` (`query` empty or starting with `?`).
    pub async fn events(&self, token: &str, campaign: Uuid, query: &str) -> Answer {
        self.get(
            &format!("/v1/campaigns/{campaign}/events{query}"),
            Some(token),
        )
        .await
    }

    /// Every event of a campaign, walking the pages `limit` at a time; panics
    /// unless every page is well-formed and at most `limit` long.
    pub async fn all_events(&self, token: &str, campaign: Uuid, limit: usize) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut query = format!("?limit={limit}");
        loop {
            let answer = self.events(token, campaign, &query).await;
            let page = answer.expect(200);
            let items = page["events"].as_array().expect("events");
            assert!(items.len() <= limit, "page over limit: {page:#}");
            rows.extend(items.iter().cloned());
            match page["next_after"].as_i64() {
                Some(after) => query = format!("?limit={limit}&after={after}"),
                None => return rows,
            }
        }
    }

    /// `POST /v1/campaigns/{id}/{action}` (start, pause, resume, cancel).
    pub async fn action(&self, token: &str, id: Uuid, action: &str) -> Answer {
        self.post(
            &format!("/v1/campaigns/{id}/{action}"),
            Some(token),
            &json!({}),
        )
        .await
    }

    /// Like [`Self::action`], expecting 200; returns the status it answered.
    pub async fn action_ok(&self, token: &str, id: Uuid, action: &str) -> String {
        let answer = self.action(token, id, action).await;
        answer.expect(200);
        assert_eq!(answer.body["id"], json!(id.to_string()));
        answer.body["status"].as_str().expect("status").to_string()
    }
}

/// A valid campaign body on `ips`.
pub fn campaign_body(ips: &[Uuid]) -> Value {
    json!({
        "name": "Spring outreach",
        "from": "Hello@Sender.example.com",
        "from_name": "Ann from Sender",
        "subject": "Hi {{ first_name }}",
        "text": "Hello {{ first_name }},\nhow are you?\n",
        "html": "<p>Hello {{ first_name }}</p>",
        "ip_ids": ips,
    })
}

/// The `(row, reason)` pairs of a lead import's `rejected`.
pub fn rejected(answer: &Value) -> Vec<(u64, String)> {
    answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `n` valid leads `lead<i>@example.com` with a `first_name`.
pub fn leads(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({ "email": format!("lead{i}@example.com"), "fields": { "first_name": format!("Lead{i}") } }))
            .collect(),
    )
}

/// `text` percent-encoded for a path segment or query value (every byte but
/// ASCII letters, digits and `-._~`).
pub fn path_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every suppression row of every tenant as `tenant:email:reason`, sorted, to
/// prove a request changed (or did not change) exactly what it should.
pub async fn suppression_rows(env: &TestEnv) -> Vec<String> {
    env.psql("SELECT tenant_id::text || ':' || email || ':' || reason FROM suppressions ORDER BY 1")
        .await
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The number of rows `sql` (a `SELECT count(*) …`) counts.
pub async fn count(env: &TestEnv, sql: &str) -> i64 {
    env.psql(sql).await[0].get(0)
}

/// A running campaign of a new tenant `acme` (one IP, two leads) with one job
/// `sending`, as if an IP actor were in the middle of its SMTP transaction: a
/// pause waits for it. Returns the tenant's token and the campaign.
pub async fn campaign_mid_smtp(api: &ApiClient, env: &TestEnv) -> (String, Uuid) {
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    api.add_leads(&token, campaign, leads(2)).await.expect(200);
    api.action_ok(&token, campaign, "start").await;
    env.psql(&format!(
        "UPDATE send_jobs SET status = 'sending' WHERE id = (
             SELECT id FROM send_jobs WHERE campaign_id = '{campaign}' LIMIT 1)"
    ))
    .await;
    (token, campaign)
}

/// Ends the campaign's SMTP transactions: its `sending` jobs become `sent`.
pub async fn finish_smtp(env: &TestEnv, campaign: Uuid) {
    env.psql(&format!(
        "UPDATE send_jobs SET status = 'sent' WHERE campaign_id = '{campaign}' AND status = 'sending'"
    ))
    .await;
}

/// One table as [`snapshot`] sees it: name, row count, and an md5 over every
/// row (all columns, in a fixed order).
pub type TableState = (String, i64, String);

/// Every table of the schema (the migrations' history aside), each with its row
/// count and a digest of its rows: a refused request that inserted, updated
/// or deleted anything anywhere — tenants, tokens, IPs, warm-up schedules,
/// campaigns, leads, jobs, suppressions, events, rollups, usage, warm-up
/// history — shows. Tables are read from the catalog, so one a new migration
/// adds is covered without touching this.
pub async fn snapshot(env: &TestEnv) -> Vec<TableState> {
    let tables: Vec<String> = env
        .psql(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' \
             AND tablename NOT LIKE 'refinery%' ORDER BY 1",
        )
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(tables.len() >= 14, "the schema's tables: {tables:?}");
    let digests: Vec<String> = tables
        .iter()
        .map(|table| {
            format!(
                "SELECT '{table}'::text, count(*), \
                 coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {table} t"
            )
        })
        .collect();
    env.psql(&format!("{} ORDER BY 1", digests.join(" UNION ALL ")))
        .await
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Subscribes to the control channel; returns the JSON events published after
/// this call, one per `next().await`.
pub async fn control_events(env: &TestEnv) -> impl futures::Stream<Item = Value> + Unpin {
    let client = redis::Client::open(env.config.redis.url.as_str()).expect("redis url");
    let mut pubsub = client.get_async_pubsub().await.expect("redis pubsub");
    pubsub
        .subscribe(penguin_engine::control::CHANNEL)
        .await
        .expect("subscribe");
    Box::pin(pubsub.into_on_message().map(|msg| {
        let text: String = msg.get_payload().expect("text payload");
        serde_json::from_str(&text).expect("JSON event")
    }))
}
