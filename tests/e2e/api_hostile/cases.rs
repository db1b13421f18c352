//! The `/v1` rows of the hostile matrix: one [`Case`] per route (its valid
//! request, who may call it, where its strings go and what each hostile string
//! must get), and [`Case::run`], the attacks every route gets. The rows
//! themselves are in `rows.rs`.

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Expect, Fixture, Hostile, MAX_BODY, Matrix, Req};
use crate::support::admin_token;
use crate::support::api::path_encode;

pub use super::rows::{admin_cases, tenant_cases};

/// Who a route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Admin,
    Tenant,
    /// The admin or a tenant (its own resources).
    Any,
}

/// The request body a route reads.
#[derive(Debug, Clone)]
pub enum Body {
    /// None (GET, DELETE).
    None,
    /// A JSON body, required.
    Json(Value),
    /// A JSON body that may be empty.
    OptionalJson(Value),
    /// A body of another content type (a DSN): sent as it is, no JSON attacks.
    Raw(&'static str, String),
}

/// Where a hostile string goes.
#[derive(Debug, Clone, Copy)]
pub enum Slot {
    /// A JSON field of the body, by JSON pointer.
    Field(&'static str),
    /// A path parameter (`{id}`).
    Path(&'static str),
    /// A query parameter.
    Query(&'static str),
}

/// A route-specific request: label, how to make it from the valid one, and
/// what it must get.
pub struct Extra {
    label: String,
    make: Box<dyn Fn(&Case) -> Req>,
    expect: Expect,
}

/// For a tenant's resource: the request another tenant's token must not tell
/// apart from the valid one (the same, naming a resource nobody has), and the
/// two names to mask when comparing the answers' messages.
struct Absent {
    make: Box<dyn Fn(&Case) -> Req>,
    present: String,
    absent: String,
}

/// One `/v1` route of the matrix.
pub struct Case {
    pub method: &'static str,
    /// The path template, as `ROUTES` lists it.
    pub route: &'static str,
    pub who: Who,
    /// The bearer token of the valid request.
    token: String,
    params: Vec<(&'static str, String)>,
    query: Vec<(&'static str, String)>,
    body: Body,
    absent: Option<Absent>,
    strings: Vec<(Slot, [Expect; 3])>,
    extras: Vec<Extra>,
    happy_body: Option<Value>,
    happy: u16,
}

impl Case {
    pub fn new(method: &'static str, route: &'static str, who: Who, token: &str) -> Case {
        Case {
            method,
            route,
            who,
            token: token.to_string(),
            params: Vec::new(),
            query: Vec::new(),
            body: Body::None,
            absent: None,
            strings: Vec::new(),
            extras: Vec::new(),
            happy_body: None,
            happy: 200,
        }
    }

    /// A path parameter's valid value (not yet encoded).
    pub fn param(mut self, name: &'static str, value: impl ToString) -> Case {
        self.params.push((name, value.to_string()));
        self
    }

    pub fn query(mut self, name: &'static str, value: &str) -> Case {
        self.query.push((name, value.to_string()));
        self
    }

    pub fn body(mut self, body: Body) -> Case {
        self.body = body;
        self
    }

    /// The resource is tenant A's, named by path parameter `name`: another
    /// tenant gets what it gets for `absent`, a value nobody has.
    pub fn owned_by_path(mut self, name: &'static str, absent: impl ToString) -> Case {
        let absent = absent.to_string();
        let present = self.param_value(name).to_string();
        let value = absent.clone();
        let make = move |case: &Case| case.request_with(Some((name, value.as_str())), None);
        self.absent = Some(Absent {
            make: Box::new(make),
            present,
            absent,
        });
        self
    }

    /// The resource is tenant A's, named in the body: `absent` is the body
    /// naming one nobody has; `present` and `absent_key` are masked.
    pub fn owned_by_body(mut self, absent: Value, present: &str, absent_key: &str) -> Case {
        let make = move |case: &Case| case.request_with(None, Some(&absent));
        self.absent = Some(Absent {
            make: Box::new(make),
            present: present.to_string(),
            absent: absent_key.to_string(),
        });
        self
    }

    /// What each hostile string in `slot` must get.
    pub fn strings(mut self, slot: Slot, expect: [Expect; 3]) -> Case {
        self.strings.push((slot, expect));
        self
    }

    pub fn extra(
        mut self,
        label: impl ToString,
        expect: Expect,
        make: impl Fn(&Case) -> Req + 'static,
    ) -> Case {
        self.extras.push(Extra {
            label: label.to_string(),
            make: Box::new(make),
            expect,
        });
        self
    }

    /// The happy path's body, when it differs from the valid one (which the
    /// `Stored` strings may have used up).
    pub fn happy_body(mut self, body: Value) -> Case {
        self.happy_body = Some(body);
        self
    }

    pub fn happy(mut self, status: u16) -> Case {
        self.happy = status;
        self
    }

    fn param_value(&self, name: &str) -> &str {
        let found = self.params.iter().find(|(n, _)| *n == name);
        &found
            .unwrap_or_else(|| panic!("{} has no {name}", self.route))
            .1
    }

    fn body_value(&self) -> Option<&Value> {
        match &self.body {
            Body::None | Body::Raw(..) => None,
            Body::Json(value) | Body::OptionalJson(value) => Some(value),
        }
    }

    /// The valid request, with one path parameter (raw) or the body replaced.
    pub fn request_with(&self, param: Option<(&str, &str)>, body: Option<&Value>) -> Req {
        self.request_raw(param, &self.query, body)
    }

    fn request_raw(
        &self,
        param: Option<(&str, &str)>,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Req {
        let mut path = self.route.to_string();
        for (name, value) in &self.params {
            let value = match param {
                Some((replaced, new)) if replaced == *name => new,
                _ => value.as_str(),
            };
            path = path.replace(name, &path_encode(value));
        }
        if !query.is_empty() {
            let pairs: Vec<String> = query
                .iter()
                .map(|(name, value)| format!("{name}={}", path_encode(value)))
                .collect();
            path = format!("{path}?{}", pairs.join("&"));
        }
        let req = Req::new(self.method, path);
        match (body.or(self.body_value()), &self.body) {
            (Some(body), _) => req.with_body("application/json", body.to_string().into_bytes()),
            (None, Body::Raw(content_type, text)) => {
                req.with_body(content_type, text.clone().into_bytes())
            }
            (None, _) => req,
        }
    }

    /// The valid request with the query replaced.
    pub fn with_query(&self, query: &[(&str, &str)]) -> Req {
        let query: Vec<(&str, String)> = query.iter().map(|(n, v)| (*n, v.to_string())).collect();
        self.request_raw(None, &query, None)
    }

    pub fn valid(&self) -> Req {
        self.request_with(None, None)
    }

    /// Every attack on this route, then its happy path.
    pub async fn run(&self, m: &mut Matrix<'_>, fx: &Fixture) {
        let id = (self.method, self.route);
        let token = bearer(&self.token);
        let valid = self.valid();
        let unauthorized = Expect::Refused(401, "unauthorized");
        for (attack, authorization) in bad_credentials(fx) {
            m.probe(id, attack, &valid, authorization.as_deref(), unauthorized)
                .await;
        }
        let wrong = match self.who {
            Who::Admin => Some(("a tenant token on an admin route", bearer(&fx.token_a))),
            Who::Tenant => Some(("the admin token on a tenant route", bearer(admin_token()))),
            Who::Any => None,
        };
        if let Some((attack, authorization)) = wrong {
            let forbidden = Expect::Refused(403, "forbidden");
            m.probe(
                id,
                attack,
                &valid,
                Some(authorization.as_slice()),
                forbidden,
            )
            .await;
        }
        if let Some(absent) = &self.absent {
            let other = bearer(&fx.token_b);
            let not_found = Expect::Refused(404, "not_found");
            let foreign = m
                .probe(
                    id,
                    "another tenant's resource",
                    &valid,
                    Some(other.as_slice()),
                    not_found,
                )
                .await;
            let nobody = m
                .probe(
                    id,
                    "a resource nobody has",
                    &(absent.make)(self),
                    Some(other.as_slice()),
                    not_found,
                )
                .await;
            let mask = |text: &str| {
                let text = text.replace(&absent.present, "…");
                text.replace(&absent.absent, "…")
            };
            assert_eq!(
                mask(foreign.message()),
                mask(nobody.message()),
                "{} {}: a foreign resource must look absent",
                self.method,
                self.route
            );
        }
        if let Some(body) = self.body_value() {
            for (attack, req, expect) in body_attacks(&valid, body, &self.body) {
                m.probe(id, attack, &req, Some(token.as_slice()), expect)
                    .await;
            }
        }
        for (slot, expects) in &self.strings {
            for (hostile, expect) in Hostile::ALL.into_iter().zip(expects) {
                let req = self.hostile(*slot, hostile);
                let attack = format!("{} in {slot:?}", hostile.label());
                m.probe(id, &attack, &req, Some(token.as_slice()), *expect)
                    .await;
            }
        }
        for extra in &self.extras {
            let req = (extra.make)(self);
            m.probe(id, &extra.label, &req, Some(token.as_slice()), extra.expect)
                .await;
        }
        let happy = self.request_with(None, self.happy_body.as_ref());
        let answer = m
            .probe(
                id,
                "happy path",
                &happy,
                Some(token.as_slice()),
                Expect::Stored,
            )
            .await;
        let what = format!("{} {} [happy path]", self.method, self.route);
        assert_eq!(
            answer.status,
            self.happy,
            "{what}: {}",
            super::shown(&answer.body)
        );
    }

    /// The valid request with `hostile` in `slot`.
    fn hostile(&self, slot: Slot, hostile: Hostile) -> Req {
        match slot {
            Slot::Field(pointer) => {
                let mut body = self.body_value().expect("a body").clone();
                let field = body
                    .pointer_mut(pointer)
                    .unwrap_or_else(|| panic!("{}: no {pointer} in the body", self.route));
                let valid = field.as_str().expect("a string field").to_string();
                *field = Value::String(hostile.around(&valid));
                self.request_with(None, Some(&body))
            }
            Slot::Path(name) => {
                let value = hostile.around_in_uri(self.param_value(name));
                self.request_with(Some((name, value.as_str())), None)
            }
            Slot::Query(name) => {
                let mut query = self.query.clone();
                let entry = query.iter_mut().find(|(n, _)| *n == name).expect("a query");
                entry.1 = hostile.around_in_uri(&entry.1);
                self.request_raw(None, &query, None)
            }
        }
    }
}

/// `Bearer <token>` as a header value.
pub fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

/// Credentials no route takes: (attack, `Authorization` value).
fn bad_credentials(fx: &Fixture) -> Vec<(&'static str, Option<Vec<u8>>)> {
    let reversed: String = fx.token_a[3..].chars().rev().collect();
    vec![
        ("no Authorization", None),
        ("Bearer alone", Some(b"Bearer".to_vec())),
        ("Bearer and blanks", Some(b"Bearer   ".to_vec())),
        (
            "Basic credentials",
            Some(format!("Basic {}", fx.token_a).into_bytes()),
        ),
        (
            "a token without scheme",
            Some(fx.token_a.clone().into_bytes()),
        ),
        ("an unknown token", Some(bearer("nope"))),
        (
            "a forged tenant token",
            Some(bearer(&format!("pt_{reversed}"))),
        ),
        (
            "the admin token, altered",
            Some(bearer(&admin_token()[1..])),
        ),
        ("a revoked token", Some(bearer(&fx.revoked))),
        ("a 100 KB token", Some(bearer(&Hostile::Long.around("pt_")))),
    ]
}

/// The attacks on a JSON body: (attack, request, expected).
fn body_attacks(valid: &Req, body: &Value, kind: &Body) -> Vec<(&'static str, Req, Expect)> {
    let text = body.to_string();
    let json = |bytes: Vec<u8>| valid.clone().with_body("application/json", bytes);
    let mut unknown = body.clone();
    unknown["hostile_extra"] = json!(true);
    let oversized = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_BODY + 1)).into_bytes();
    let mut attacks = vec![
        (
            "malformed JSON",
            json(text.as_bytes()[..text.len() - 1].to_vec()),
            Expect::Refused(400, "malformed_json"),
        ),
        (
            "JSON of the wrong type (an array)",
            json(Value::Array(vec![body.clone()]).to_string().into_bytes()),
            Expect::Refused(422, "invalid_request"),
        ),
        (
            "an empty array",
            json(b"[]".to_vec()),
            Expect::Refused(422, "invalid_request"),
        ),
        (
            "a JSON string",
            json(b"\"hostile\"".to_vec()),
            Expect::Refused(422, "invalid_request"),
        ),
        (
            "an unknown field",
            json(unknown.to_string().into_bytes()),
            Expect::Refused(422, "invalid_request"),
        ),
        (
            "another content type",
            valid
                .clone()
                .with_body("text/plain", text.clone().into_bytes()),
            Expect::Refused(415, "unsupported_media_type"),
        ),
        (
            "a body over api.max_body_bytes",
            json(oversized),
            Expect::Refused(413, "payload_too_large"),
        ),
    ];
    if matches!(kind, Body::Json(_)) {
        let empty = (
            "an empty body",
            json(Vec::new()),
            Expect::Refused(400, "malformed_json"),
        );
        attacks.push(empty);
    }
    attacks
}

/// A UUID nobody has.
pub fn nobody() -> Uuid {
    Uuid::now_v7()
}
