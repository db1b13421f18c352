//! API scenario: the hostile-input matrix (issue 5, DESIGN.md §7.5–7.6). Every
//! route of [`ROUTES`] has a row; a route added to the router without one
//! fails [`every_route_has_a_row`] (and `api_openapi` fails while it is missing
//! from `ROUTES`).
//!
//! Each `/v1` route ([`cases`]) gets: no `Authorization`, a malformed one
//! (`Bearer` alone or blank, `Basic …`), unknown, forged, altered, revoked and
//! 100 KB tokens (401); the wrong kind of token (403); another tenant's token
//! on a tenant's resource (404, answered exactly as for a resource nobody has,
//! so existence does not leak); for a POST, malformed JSON, an empty body,
//! JSON of the wrong type, an unknown field, another content type and a body
//! over `api.max_body_bytes` (400/422/415/413); CR/LF, NUL and 100 KB strings
//! in every string field (60 KB in path and query parameters: longer URIs are
//! refused by the `http` crate itself); the route's own extras (CSV,
//! `Idempotency-Key`, paging limits); and last its happy path (2xx, so the
//! fixtures are right). Rows live in `api_hostile/rows.rs`, the attacks every
//! route gets in `api_hostile/cases.rs`. The public routes ([`public`]) get forged,
//! altered, cross-kind, foreign and hostile tokens, on the public listener. Every refused request is
//! checked for its status and `error.code`, for that status being one the
//! route documents in `/openapi.json`, and for leaving every table unchanged
//! ([`snapshot`]).

mod cases;
mod public;
mod rows;
mod rows_feedback;

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::{ApiClient, ApiServer, ROUTES, TableState, leads, snapshot};
use crate::support::{TestEnv, admin_token};

/// The longest hostile string: far over every field's limit, well under
/// `api.max_body_bytes` here, so the field's own check answers.
pub const LONG: usize = 100 * 1024;
/// The longest hostile string in a path or query: the `http` crate refuses
/// URIs of 64 KB or more on both sides (client and server), before any route.
pub const LONG_IN_URI: usize = 60 * 1024;
/// The body limits of the matrix's server (small, so oversized bodies are cheap).
pub const MAX_BODY: usize = 256 * 1024;

/// A hostile string, built around a valid value so that only the hostile part
/// can be why it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    CrLf,
    Nul,
    Long,
}

impl Hostile {
    pub const ALL: [Hostile; 3] = [Hostile::CrLf, Hostile::Nul, Hostile::Long];

    pub fn around(self, valid: &str) -> String {
        match self {
            Hostile::CrLf => format!("{valid}\r\nX-Injected: 1"),
            Hostile::Nul => format!("{valid}\0"),
            Hostile::Long => format!("{valid}{}", "x".repeat(LONG)),
        }
    }

    /// [`Self::around`] for a path or query value: long is [`LONG_IN_URI`].
    pub fn around_in_uri(self, valid: &str) -> String {
        match self {
            Hostile::Long => format!("{valid}{}", "x".repeat(LONG_IN_URI)),
            other => other.around(valid),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Hostile::CrLf => "CR/LF",
            Hostile::Nul => "NUL",
            Hostile::Long => "long",
        }
    }
}

/// At most 300 characters of an answer's body, for failure messages (bodies
/// may echo a hostile value).
fn shown(body: &Value) -> String {
    let text = body.to_string();
    match text.char_indices().nth(300) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// What a request must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// This error status and code; nothing written.
    Refused(u16, &'static str),
    /// 200 with the value refused in the answer's `rejected` list (per-row
    /// checks of lead import and suppressions); nothing written.
    RowRejected,
    /// This status, and nothing written (reads, replays, the pixel).
    Untouched(u16),
    /// 2xx: taken as given, harmless where it goes (e.g. CR/LF in a body
    /// template, which is multi-line text); may write.
    Stored,
    /// This status, and the write that is the route's purpose (a happy path).
    Writes(u16),
}

/// `Refused(422, "invalid_request")` for each hostile string.
pub const INVALID: [Expect; 3] = [Expect::Refused(422, "invalid_request"); 3];
/// `Refused(404, "not_found")` for each hostile string.
pub const NOT_FOUND: [Expect; 3] = [Expect::Refused(404, "not_found"); 3];

/// One request, without its `Authorization`.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
}

impl Req {
    pub fn new(method: &str, path: String) -> Req {
        Req {
            method: Method::from_bytes(method.as_bytes()).expect("a method"),
            path,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Sets the body and its `Content-Type`.
    pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Req {
        self.headers.retain(|(name, _)| *name != "content-type");
        self.headers
            .push(("content-type", content_type.as_bytes().to_vec()));
        self.body = Some(body);
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &[u8]) -> Req {
        self.headers.push((name, value.to_vec()));
        self
    }
}

/// The world every row is written against: two tenants and what tenant A owns.
/// The id of the live node the fixture announces.
pub const NODE: &str = "node-hostile";

pub struct Fixture {
    pub tenant_a: Uuid,
    pub token_a: String,
    pub tenant_b: Uuid,
    pub token_b: String,
    /// A token of A, revoked.
    pub revoked: String,
    /// A token of A that the happy path of the revoke route revokes.
    pub spare_token: Uuid,
    pub ip_a: Uuid,
    /// An IP of A that no campaign lists (the happy path of retiring one).
    pub spare_ip: Uuid,
    /// A's draft campaign with two leads (the lifecycle's happy paths).
    pub campaign: Uuid,
    /// A's job, marked sent from `ip_a` (complaints, the public links).
    pub job: Uuid,
    pub message_id: String,
    /// A suppressed address of A (the happy path of removing one).
    pub suppressed: &'static str,
    /// The tracking secret the server signs links with.
    pub secret: String,
    /// A's sending domain (`acme.example`).
    pub domain: Uuid,
    /// A's webhook, and a delivery of it (a queued test event).
    pub webhook: Uuid,
    pub delivery: Uuid,
}

impl Fixture {
    async fn build(env: &TestEnv, api: &ApiClient) -> Fixture {
        // A live node's membership record, for the drain route's happy path.
        let node = penguin_engine::membership::NodeRecord::starting(NODE);
        penguin_engine::membership::Membership::new(env.redis.clone())
            .beat(&node, 600_000)
            .await
            .expect("a node record");
        let (tenant_a, token_a) = api.create_tenant("acme").await;
        let (tenant_b, token_b) = api.create_tenant("globex").await;
        let tokens = format!("/v1/tenants/{tenant_a}/tokens");
        let revoked = api.post(&tokens, Some(admin_token()), &json!({})).await;
        revoked.expect(201);
        let path = format!("{tokens}/{}", revoked.id());
        api.delete(&path, Some(admin_token())).await.expect(200);
        let spare = api.post(&tokens, Some(admin_token()), &json!({})).await;
        spare.expect(201);
        let ip_a = api.add_ip(tenant_a, "127.0.0.2").await;
        api.add_ip(tenant_b, "127.0.0.3").await;
        let spare_ip = api.add_ip(tenant_a, "127.0.0.4").await;
        let campaign = api.create_campaign(&token_a, &[ip_a]).await;
        api.add_leads(&token_a, campaign, leads(2))
            .await
            .expect(200);
        let sent = api.create_campaign(&token_a, &[ip_a]).await;
        let lead = json!([{ "email": "sent@example.com" }]);
        api.add_leads(&token_a, sent, lead).await.expect(200);
        api.action_ok(&token_a, sent, "start").await;
        let message_id = "hostile-fixture@sender.example.com".to_string();
        let rows = env
            .psql(&format!(
                "UPDATE send_jobs SET status = 'sent', attempts = 1, ip_id = '{ip_a}', \
                 message_id = '{message_id}' WHERE campaign_id = '{sent}' RETURNING id"
            ))
            .await;
        assert_eq!(rows.len(), 1, "one job of the sent campaign");
        let suppressed = "gone@example.com";
        api.add_suppressions(&token_a, &[suppressed], "manual")
            .await;
        let domain = api
            .post(
                "/v1/domains",
                Some(&token_a),
                &json!({ "domain": "acme.example" }),
            )
            .await;
        domain.expect(201);
        let webhook = api
            .post(
                "/v1/webhooks",
                Some(&token_a),
                &json!({ "url": "http://127.0.0.1:9/hook", "events": ["sent"] }),
            )
            .await;
        webhook.expect(201);
        let test = format!("/v1/webhooks/{}/test", webhook.id());
        let delivery = api.post(&test, Some(&token_a), &json!({})).await;
        delivery.expect(202);
        Fixture {
            tenant_a,
            token_a,
            tenant_b,
            token_b,
            revoked: revoked.body["token"].as_str().expect("token").to_string(),
            spare_token: spare.id(),
            ip_a,
            spare_ip,
            campaign,
            job: rows[0].get(0),
            message_id,
            suppressed,
            secret: env.config.tracking.secret.clone(),
            domain: domain.id(),
            webhook: webhook.id(),
            delivery: delivery.id(),
        }
    }

    /// Made-up ids, for checking the matrix's shape without a server.
    fn fake() -> Fixture {
        Fixture {
            tenant_a: Uuid::now_v7(),
            token_a: "pt_a".into(),
            tenant_b: Uuid::now_v7(),
            token_b: "pt_b".into(),
            revoked: "pt_r".into(),
            spare_token: Uuid::now_v7(),
            ip_a: Uuid::now_v7(),
            spare_ip: Uuid::now_v7(),
            campaign: Uuid::now_v7(),
            job: Uuid::now_v7(),
            message_id: "m@x.test".into(),
            suppressed: "gone@example.com",
            secret: "secret".into(),
            domain: Uuid::now_v7(),
            webhook: Uuid::now_v7(),
            delivery: Uuid::now_v7(),
        }
    }
}

/// Sends requests, checks answers, and keeps the database's state between
/// them to prove refused requests wrote nothing.
pub struct Matrix<'a> {
    pub env: &'a TestEnv,
    pub api: &'a ApiClient,
    /// The public listener, where the signed links (`/t/*`, `/u/*`) are sent.
    pub public: &'a ApiClient,
    /// `/openapi.json`, to check every answer is one its route documents.
    doc: Value,
    state: Vec<TableState>,
    /// Probes per route (`METHOD path`).
    pub probes: BTreeMap<String, usize>,
}

impl<'a> Matrix<'a> {
    pub async fn new(env: &'a TestEnv, server: &'a ApiServer) -> Matrix<'a> {
        let doc = serde_json::to_value(penguin_api::openapi()).expect("the document");
        let state = snapshot(env).await;
        Matrix {
            env,
            api: &server.api,
            public: &server.public,
            doc,
            state,
            probes: BTreeMap::new(),
        }
    }

    /// Sends `req` with `authorization` (a raw header value, or none) and
    /// checks the answer against `expect`; returns the answer.
    pub async fn probe(
        &mut self,
        (method, route): (&str, &str),
        attack: &str,
        req: &Req,
        authorization: Option<&[u8]>,
        expect: Expect,
    ) -> crate::support::api::Answer {
        let mut headers = req.headers.clone();
        if let Some(value) = authorization {
            headers.push(("authorization", value.to_vec()));
        }
        let signed_link = route.starts_with("/t/") || route.starts_with("/u/");
        let client = if signed_link { self.public } else { self.api };
        let answer = client
            .raw_headers(req.method.clone(), &req.path, &headers, req.body.clone())
            .await;
        let what = format!("{method} {route} [{attack}]");
        let unchanged = match expect {
            Expect::Refused(status, code) => {
                assert_eq!(
                    (answer.status, answer.code()),
                    (status, code),
                    "{what}: {}",
                    shown(&answer.body)
                );
                assert!(!answer.message().is_empty(), "{what}: no message");
                // An error never echoes a hostile value back whole.
                let echoed = answer.message().chars().count();
                assert!(echoed <= 400, "{what}: a message of {echoed} characters");
                true
            }
            Expect::RowRejected => {
                assert_eq!(answer.status, 200, "{what}: {}", shown(&answer.body));
                let rejected = answer.body["rejected"].as_array();
                assert!(
                    rejected.is_some_and(|r| !r.is_empty()),
                    "{what}: nothing rejected: {}",
                    shown(&answer.body)
                );
                for taken in ["accepted", "added"] {
                    let n = answer.body.get(taken).and_then(Value::as_u64);
                    assert!(n.is_none_or(|n| n == 0), "{what}: {}", shown(&answer.body));
                }
                true
            }
            Expect::Untouched(status) => {
                assert_eq!(answer.status, status, "{what}: {}", shown(&answer.body));
                true
            }
            Expect::Stored => {
                let ok = (200..300).contains(&answer.status);
                assert!(ok, "{what}: {} {}", answer.status, shown(&answer.body));
                false
            }
            Expect::Writes(status) => {
                assert_eq!(answer.status, status, "{what}: {}", shown(&answer.body));
                false
            }
        };
        let now = snapshot(self.env).await;
        if unchanged {
            assert_eq!(now, self.state, "{what} changed the database");
        }
        self.state = now;
        self.assert_documented(method, route, answer.status, &what);
        *self.probes.entry(format!("{method} {route}")).or_default() += 1;
        answer
    }

    fn assert_documented(&self, method: &str, route: &str, status: u16, what: &str) {
        let operation = &self.doc["paths"][route][method.to_lowercase()];
        assert!(
            operation["responses"][status.to_string()].is_object(),
            "{what}: answered {status}, which /openapi.json does not document for the route"
        );
    }

    /// Every probe counted, one line per route.
    pub fn report(&self, title: &str) {
        let total: usize = self.probes.values().sum();
        println!(
            "{title}: {total} requests over {} routes",
            self.probes.len()
        );
        for (route, n) in &self.probes {
            println!("  {n:4}  {route}");
        }
    }
}

/// The rows of every route, whatever the fixture: `/v1` then public.
fn all_rows(fx: &Fixture) -> Vec<(&'static str, &'static str)> {
    let mut rows: Vec<(&str, &str)> = cases::admin_cases(fx)
        .iter()
        .chain(cases::tenant_cases(fx).iter())
        .map(|case| (case.method, case.route))
        .collect();
    rows.extend(public::public_cases(fx).iter().map(|c| (c.method, c.route)));
    rows
}

/// Panics, naming the route, unless every route of [`ROUTES`] has exactly one
/// row and every row is a route of `ROUTES`.
fn assert_every_route_has_a_row() {
    let rows = all_rows(&Fixture::fake());
    for route in ROUTES {
        let n = rows.iter().filter(|row| **row == route).count();
        assert!(
            n == 1,
            "ROUTES lists {} {} but the hostile matrix has {n} rows for it: give it \
             exactly one in tests/e2e/api_hostile/cases.rs (or public.rs for a public route)",
            route.0,
            route.1
        );
    }
    for row in &rows {
        assert!(
            ROUTES.contains(row),
            "the hostile matrix has a row for {} {}, which ROUTES does not list",
            row.0,
            row.1
        );
    }
}

#[test]
fn every_route_has_a_row() {
    assert_every_route_has_a_row();
}

/// Starts the API (small body limits) and builds the fixture; first checks
/// the matrix covers every route.
async fn start(env: &TestEnv) -> (ApiServer, Fixture) {
    assert_every_route_has_a_row();
    let server = ApiServer::start(env, |config| {
        config.api.max_body_bytes = MAX_BODY;
        config.api.max_import_bytes = MAX_BODY;
        // `verify` asks DNS: a loopback port where nothing answers, so the
        // happy path fails its lookups at once instead of leaving the machine.
        config.delivery.dns.nameservers = vec!["127.0.0.1:9".into()];
        config.webhooks.allow_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let fixture = Fixture::build(env, &server.api).await;
    (server, fixture)
}

#[tokio::test]
async fn admin_routes_refuse_hostile_requests_and_change_nothing() {
    let env = TestEnv::start().await;
    let (server, fx) = start(&env).await;
    let mut matrix = Matrix::new(&env, &server).await;
    for case in cases::admin_cases(&fx) {
        case.run(&mut matrix, &fx).await;
    }
    matrix.report("admin and shared routes");
}

#[tokio::test]
async fn tenant_routes_refuse_hostile_requests_and_change_nothing() {
    let env = TestEnv::start().await;
    let (server, fx) = start(&env).await;
    let mut matrix = Matrix::new(&env, &server).await;
    for case in cases::tenant_cases(&fx) {
        case.run(&mut matrix, &fx).await;
    }
    matrix.report("tenant routes");
}

#[tokio::test]
async fn public_routes_refuse_forged_and_hostile_tokens_and_change_nothing() {
    let env = TestEnv::start().await;
    let (server, fx) = start(&env).await;
    let mut matrix = Matrix::new(&env, &server).await;
    for case in public::public_cases(&fx) {
        case.run(&mut matrix).await;
    }
    matrix.report("public routes");
}
