//! The public rows of the hostile matrix: routes without a token. The
//! operational ones (`/health*`, `/metrics`, `/openapi.json`, `/docs`) answer
//! 200 whatever token or query comes along, and write nothing. The signed links
//! refuse forged, altered, cross-kind (a pixel token on the unsubscribe link),
//! foreign-tenant, unknown-job and hostile (CR/LF, NUL, 100 KB) tokens — 404,
//! or for the pixel the GIF anyway — and write nothing; a valid link does its
//! one write once (a replay writes nothing), and `GET /u/{token}` never writes.

use penguin_engine::tracking::{self, LinkKind};

use super::cases::nobody;
use super::{Expect, Fixture, Hostile, Matrix, Req};
use crate::support::api::path_encode;

/// The URL the click link of the fixture points to.
const TARGET: &str = "https://shop.example.com/offer?id=5&ref=mail";

/// One public route: its requests in order, each with what it must get.
pub struct PublicCase {
    pub method: &'static str,
    pub route: &'static str,
    /// The `Content-Type` every answer carries, when fixed (the pixel).
    content_type: Option<&'static str>,
    rows: Vec<(String, Req, Expect)>,
}

impl PublicCase {
    pub async fn run(&self, m: &mut Matrix<'_>) {
        for (attack, req, expect) in &self.rows {
            let answer = m
                .probe((self.method, self.route), attack, req, None, *expect)
                .await;
            if let Some(content_type) = self.content_type {
                assert_eq!(
                    answer.content_type, content_type,
                    "{} [{attack}]",
                    self.route
                );
            }
        }
    }
}

/// An operational route: the happy path, then tokens and queries it ignores.
fn ops(route: &'static str) -> PublicCase {
    let get = || Req::new("GET", route.to_string());
    let ok = Expect::Untouched(200);
    let query = format!(
        "{route}?x={}&y={}",
        path_encode(&Hostile::CrLf.around("1")),
        path_encode(&Hostile::Nul.around("1"))
    );
    PublicCase {
        method: "GET",
        route,
        content_type: None,
        rows: vec![
            ("happy path".into(), get(), ok),
            (
                "a forged bearer token".into(),
                get().with_header("authorization", b"Bearer pt_forged"),
                ok,
            ),
            (
                "a 100 KB bearer token".into(),
                get().with_header(
                    "authorization",
                    &super::cases::bearer(&Hostile::Long.around("pt_")),
                ),
                ok,
            ),
            (
                "CR/LF and NUL in the query".into(),
                Req::new("GET", query),
                ok,
            ),
        ],
    }
}

/// `token` with its last character changed.
fn altered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("a token is ASCII")
}

/// A signed link route: `valid` (a token that works), `wrong_kind` (an
/// authentic token of another kind), and how a token for `(tenant, job)` is
/// signed with a secret. Bad tokens get `refused`; the happy path `happy`,
/// writing when `writes`; a replay `happy` again, writing nothing.
struct Link {
    method: &'static str,
    route: &'static str,
    valid: String,
    wrong_kind: String,
    sign: fn(&str, uuid::Uuid, uuid::Uuid) -> String,
    refused: Expect,
    /// What a validly signed token for a job it does not name gets.
    unknown: Expect,
    happy: u16,
    writes: bool,
}

fn link(fx: &Fixture, link: Link) -> PublicCase {
    let path = |token: &str| link.route.replace("{token}", &path_encode(token));
    let req = |token: &str| Req::new(link.method, path(token));
    let mut rows = vec![
        ("not a token".to_string(), req("garbage"), link.refused),
        (
            "a forged token".into(),
            req(&(link.sign)("not-the-secret", fx.tenant_a, fx.job)),
            link.refused,
        ),
        (
            "an altered token".into(),
            req(&altered(&link.valid)),
            link.refused,
        ),
        (
            "a token of another kind".into(),
            req(&link.wrong_kind),
            link.refused,
        ),
        (
            "another tenant's job".into(),
            req(&(link.sign)(&fx.secret, fx.tenant_b, fx.job)),
            link.unknown,
        ),
        (
            "a job nobody has".into(),
            req(&(link.sign)(&fx.secret, fx.tenant_a, nobody())),
            link.unknown,
        ),
    ];
    for hostile in Hostile::ALL {
        let label = format!("{} in the token", hostile.label());
        rows.push((
            label,
            req(&hostile.around_in_uri(&link.valid)),
            link.refused,
        ));
    }
    let happy = if link.writes {
        Expect::Writes(link.happy)
    } else {
        Expect::Untouched(link.happy)
    };
    rows.push(("happy path".into(), req(&link.valid), happy));
    rows.push((
        "the happy path again".into(),
        req(&link.valid),
        Expect::Untouched(link.happy),
    ));
    PublicCase {
        method: link.method,
        route: link.route,
        content_type: (link.route == "/t/o/{token}").then_some("image/gif"),
        rows,
    }
}

fn unsubscribe_token(secret: &str, tenant: uuid::Uuid, job: uuid::Uuid) -> String {
    tracking::sign(secret, LinkKind::Unsubscribe, tenant, job)
}

fn open_token(secret: &str, tenant: uuid::Uuid, job: uuid::Uuid) -> String {
    tracking::sign(secret, LinkKind::Open, tenant, job)
}

fn click_token(secret: &str, tenant: uuid::Uuid, job: uuid::Uuid) -> String {
    tracking::sign_click(secret, tenant, job, TARGET).expect("a trackable URL")
}

/// Every public route's row.
pub fn public_cases(fx: &Fixture) -> Vec<PublicCase> {
    let mut cases: Vec<PublicCase> = [
        "/health",
        "/health/live",
        "/health/ready",
        "/health/db",
        "/health/queue",
        "/health/email",
        "/metrics",
        "/openapi.json",
        "/docs",
    ]
    .into_iter()
    .map(ops)
    .collect();
    let not_found = Expect::Refused(404, "not_found");
    let unsubscribe = |method, writes| Link {
        method,
        route: "/u/{token}",
        valid: unsubscribe_token(&fx.secret, fx.tenant_a, fx.job),
        wrong_kind: open_token(&fx.secret, fx.tenant_a, fx.job),
        sign: unsubscribe_token,
        refused: not_found,
        unknown: not_found,
        happy: 200,
        writes,
    };
    // GET shows a page and never writes (link scanners follow GETs).
    cases.push(link(fx, unsubscribe("GET", false)));
    cases.push(link(fx, unsubscribe("POST", true)));
    let pixel = Expect::Untouched(200);
    cases.push(link(
        fx,
        Link {
            method: "GET",
            route: "/t/o/{token}",
            valid: open_token(&fx.secret, fx.tenant_a, fx.job),
            wrong_kind: unsubscribe_token(&fx.secret, fx.tenant_a, fx.job),
            sign: open_token,
            refused: pixel,
            unknown: pixel,
            happy: 200,
            writes: true,
        },
    ));
    // An authentic click token redirects to its own URL whatever the job (never
    // an open redirect), recording nothing for a job it does not name.
    cases.push(link(
        fx,
        Link {
            method: "GET",
            route: "/t/c/{token}",
            valid: click_token(&fx.secret, fx.tenant_a, fx.job),
            wrong_kind: unsubscribe_token(&fx.secret, fx.tenant_a, fx.job),
            sign: click_token,
            refused: not_found,
            unknown: Expect::Untouched(302),
            happy: 302,
            writes: true,
        },
    ));
    cases
}
