//! The OpenAPI 3 document of the API, built by `utoipa` from the handlers'
//! `#[utoipa::path]` annotations as `crate::router` registers them (one
//! `utoipa_axum` `OpenApiRouter`, so a route cannot be served without being
//! documented). Served at `GET /openapi.json`, rendered at `GET /docs`
//! (`routes/docs.rs`).
//!
//! - [`base`]: what no handler says — title, version, the `bearer` security
//!   scheme, the tags, which listener serves what (the document's `servers`
//!   are the control API; each public link's path item names the public
//!   listener in its own `servers`) — and [`CommonErrors`], the 500 and 503 answers any route
//!   may give (the request-timeout middleware and the database sit under all).
//! - Answer sets handlers list in `responses(...)`: [`AnyCaller`],
//!   [`AdminOnly`], [`TenantOnly`] (401/403) and [`JsonBodyErrors`]
//!   (400/413/415/422), all with the [`ErrorBody`] shape.
//! - [`Route`] and [`routes_of`]: the (method, path) pairs a document lists, so
//!   tests compare them with what the router answers.
//! - [`string_enum`]: the schema of an engine enum the API shows as a string
//!   (the engine crate stays free of `utoipa`).

use std::collections::BTreeMap;

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::{Server, ServerBuilder, ServerVariableBuilder};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi as _};

use crate::error::{ErrorBody, ErrorDetail};

/// The name of the bearer security scheme handlers refer to
/// (`security(("bearer" = []))`).
pub const BEARER: &str = "bearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Penguin Engine control API",
        description = "Multi-tenant cold-outreach sending engine. JSON over HTTP; \
            `Authorization: Bearer <token>` with the admin token (from the config) or a \
            tenant token (returned once when the tenant is created). A foreign id \
            answers 404. Every error is `{\"error\": {\"code\", \"message\"}}`.\n\n\
            Two listeners: the control API (`[api] listen`, default 127.0.0.1:8025) \
            serves `/v1/*`, `/metrics`, `/health/*`, `/openapi.json` and `/docs`; the \
            public listener (`[public] listen`, default 127.0.0.1:8026, where \
            `tracking.base_url` leads) serves only the signed links `/t/*` and `/u/*`. \
            Each answers 404 `not_found` for the other's paths."
    ),
    modifiers(&SecurityAddon),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "ops", description = "Health probes, metrics and this document; no token; \
            served on the control API's listener (`[api] listen`) only"),
        (name = "tenants", description = "Tenants and their API tokens (admin)"),
        (name = "nodes", description = "Engine nodes: membership and owned tenants (admin)"),
        (name = "ips", description = "SMTP IPs, their limits, health and state"),
        (name = "domains", description = "Sending domains: DNS records to publish, verification, \
            DKIM keys (sealed at rest, never returned) and their rotation"),
        (name = "warmup-schedules", description = "Warm-up ramps shared by every tenant"),
        (name = "campaigns", description = "Campaigns of the calling tenant and their lifecycle"),
        (name = "leads", description = "Lead import"),
        (name = "events", description = "Delivery events: of a campaign, and the tenant's whole stream"),
        (name = "stats", description = "Counts per day of a campaign, an IP or the calling tenant"),
        (name = "suppressions", description = "The calling tenant's suppression list, and the operator's global one"),
        (name = "complaints", description = "What comes back: feedback loops (spam complaints) and bounces after delivery (DSNs)"),
        (name = "replies", description = "Leads' replies: a reply stops the lead's sequence"),
        (name = "privacy", description = "Erasure of an address on request (a tenant's, or \
            every tenant's) and the audit log of changes (admin)"),
        (name = "webhooks", description = "Signed HTTP callbacks of the calling tenant's events, \
            with retries; their deliveries and attempts"),
        (name = "unsubscribe", description = "Signed public unsubscribe links (RFC 8058); \
            served on the public listener (`[public] listen`) only"),
        (name = "tracking", description = "Signed public open pixel and click redirects; \
            served on the public listener (`[public] listen`) only"),
    )
)]
struct ApiDoc;

/// The document before any route is added: info, security scheme, tags.
pub fn base() -> OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// Completes a document whose routes are registered: [`CommonErrors`], the
/// servers (the control API for the document, the public listener for each
/// of `public_paths`), and operation ids made unique (`utoipa` names an
/// operation after its handler, and several modules have a `list` or
/// `create`) by prefixing the tag: `ips_list`, `warmup_schedules_create`.
pub fn finish(mut doc: OpenApi, public_paths: &[&str]) -> OpenApi {
    CommonErrors.modify(&mut doc);
    doc.servers = Some(vec![listener_server(
        "api",
        "http://127.0.0.1:8025",
        "The control API: `[api] listen`",
    )]);
    for (path, item) in doc.paths.paths.iter_mut() {
        if public_paths.contains(&path.as_str()) {
            item.servers = Some(vec![listener_server(
                "public",
                "http://127.0.0.1:8026",
                "The public listener: `[public] listen`, where `tracking.base_url` leads",
            )]);
        }
    }
    for item in doc.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            let tag = operation.tags.as_ref().and_then(|tags| tags.first());
            if let (Some(tag), Some(id)) = (tag, &operation.operation_id) {
                let prefix = tag.replace('-', "_");
                operation.operation_id = Some(format!("{prefix}_{id}"));
            }
        }
    }
    doc
}

/// A server whose URL is the variable `{name}` (a listener's base URL, which
/// only the configuration knows), by default `default`.
fn listener_server(name: &str, default: &str, description: &str) -> Server {
    let variable = ServerVariableBuilder::new()
        .default_value(default)
        .description(Some(format!("Base URL of the `[{name}] listen` address")))
        .build();
    ServerBuilder::new()
        .url(format!("{{{name}}}"))
        .description(Some(description))
        .parameter(name, variable)
        .build()
}

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "The admin token (config `api.admin_token`) or a tenant token (`pt_…`)",
            ))
            .build();
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// Adds to every operation the answers any route may give, unless it documents
/// them itself: 500 `internal` and 503 `timeout` / `unavailable`.
pub struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut OpenApi) {
        for item in doc.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                add_error(operation, "500", "Internal error (`internal`)");
                add_error(
                    operation,
                    "503",
                    "Timed out (`timeout`, after `api.request_timeout_ms`) or a backing \
                     service is down (`unavailable`)",
                );
            }
        }
    }
}

fn add_error(operation: &mut Operation, status: &str, description: &str) {
    if operation.responses.responses.contains_key(status) {
        return;
    }
    operation
        .responses
        .responses
        .insert(status.to_string(), error_response(description).into());
}

/// An error answer: `description`, body [`ErrorBody`].
fn error_response(description: &str) -> Response {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build()
}

fn errors<const N: usize>(answers: [(&str, &str); N]) -> BTreeMap<String, RefOr<Response>> {
    answers
        .into_iter()
        .map(|(status, description)| (status.to_string(), error_response(description).into()))
        .collect()
}

const UNAUTHORIZED: &str = "No bearer token, or one nobody issued (`unauthorized`)";
const RATE_LIMITED: &str = "Over a budget, with `Retry-After`: the token's requests, or this \
     address's failed authentications (`rate_limited`); on lead imports also the tenant's \
     concurrent imports (`too_many_imports`)";

/// A route for the admin or a tenant: 401, 429.
pub struct AnyCaller;

impl IntoResponses for AnyCaller {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors([("401", UNAUTHORIZED), ("429", RATE_LIMITED)])
    }
}

/// A route for the admin token only: 401, 429, and 403 for a tenant token.
pub struct AdminOnly;

impl IntoResponses for AdminOnly {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors([
            ("401", UNAUTHORIZED),
            ("429", RATE_LIMITED),
            (
                "403",
                "A tenant token: this route needs the admin token (`forbidden`)",
            ),
        ])
    }
}

/// A route for tenant tokens only: 401, 429, and 403 for the admin (who has
/// no tenant).
pub struct TenantOnly;

impl IntoResponses for TenantOnly {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors([
            ("401", UNAUTHORIZED),
            ("429", RATE_LIMITED),
            (
                "403",
                "The admin token: this route needs a tenant token (`forbidden`)",
            ),
        ])
    }
}

/// A route reading a JSON body: 400, 413, 415, 422.
pub struct JsonBodyErrors;

impl IntoResponses for JsonBodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors([
            ("400", "The body is not JSON (`malformed_json`)"),
            (
                "413",
                "The body is over `api.max_body_bytes` (`payload_too_large`)",
            ),
            (
                "415",
                "The body is not `application/json` (`unsupported_media_type`)",
            ),
            (
                "422",
                "A missing, unknown or invalid field (`invalid_request`); the message names it",
            ),
        ])
    }
}

fn operations_mut(
    item: &mut utoipa::openapi::path::PathItem,
) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// One documented operation: an upper-case method and an OpenAPI path
/// (`/v1/ips/{id}`, the same template axum matches).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub method: &'static str,
    pub path: String,
}

/// Every (method, path) a document lists, sorted.
pub fn routes_of(doc: &OpenApi) -> Vec<Route> {
    let mut routes = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("OPTIONS", &item.options),
            ("HEAD", &item.head),
            ("PATCH", &item.patch),
            ("TRACE", &item.trace),
        ];
        for (method, operation) in methods {
            if operation.is_some() {
                routes.push(Route {
                    method,
                    path: path.clone(),
                });
            }
        }
    }
    routes.sort();
    routes
}

/// A string schema that takes exactly `values`.
pub fn string_enum(values: impl IntoIterator<Item = &'static str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;

    use super::*;

    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    out.push(reference.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_whole() {
        let doc = crate::openapi();
        let json = serde_json::to_value(&doc).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3."));

        let routes = routes_of(&doc);
        for (method, path) in [
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
            ("GET", "/health"),
        ] {
            let route = Route {
                method,
                path: path.to_string(),
            };
            assert!(routes.contains(&route), "{route:?}");
        }

        let mut all = Vec::new();
        refs(&json, &mut all);
        for reference in all {
            let pointer = reference.strip_prefix('#').unwrap();
            assert!(json.pointer(pointer).is_some(), "{reference}");
        }

        let mut ids = HashSet::new();
        for (path, item) in json["paths"].as_object().unwrap() {
            // The signed links name the public listener; the rest inherit the
            // document's server, the control API.
            let server = item["servers"][0]["url"].as_str();
            let public = path.starts_with("/t/") || path.starts_with("/u/");
            assert_eq!(server, public.then_some("{public}"), "{path}");
            for (key, operation) in item.as_object().unwrap() {
                if key == "servers" {
                    continue;
                }
                let id = operation["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_string()), "operation id {id} twice");
                assert!(operation["responses"]["503"].is_object(), "{id}: 503");
            }
        }
        assert_eq!(json["servers"][0]["url"], "{api}");
        assert_eq!(ids.len(), routes.len());
    }

    #[test]
    fn string_enums_list_their_values() {
        let json = serde_json::to_value(string_enum(["a", "b"])).unwrap();
        assert_eq!(json["type"], "string");
        assert_eq!(json["enum"], serde_json::json!(["a", "b"]));
    }
}
