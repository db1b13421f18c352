//! API scenario: the API describes itself. `GET /openapi.json` is a valid
//! OpenAPI 3 document (it parses as `utoipa`'s `OpenApi`, every `$ref` resolves,
//! operation ids are unique) and it is the document of the router's own
//! registrations (`penguin_api::openapi()`); it lists exactly the routes of
//! DESIGN.md §8 that the code has, and every listed route is served (none
//! answers the "no such route" or "method not allowed" fallback), while the
//! §8 routes not built yet do. Each route is served on the listener the
//! document names for it (the public links on `[public] listen`, the rest on
//! `[api] listen`) and on that one only. `GET /docs` is an HTML page that loads
//! nothing from elsewhere.

use std::collections::HashSet;

use penguin_api::openapi::{Route, routes_of};
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::support::api::{Answer, ApiClient, ApiServer, ROUTES};
use crate::support::{TestEnv, admin_token};

#[tokio::test]
async fn openapi_json_is_a_valid_document_of_every_route() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;

    let answer = api.get("/openapi.json", None).await;
    let doc = answer.expect(200).clone();
    assert_eq!(answer.content_type, "application/json");
    let version = doc["openapi"].as_str().expect("an openapi field");
    assert!(version.starts_with("3."), "openapi {version:?}");
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("parses as an OpenAPI 3 document");
    assert_eq!(
        serde_json::to_value(penguin_api::openapi()).expect("serializes"),
        doc,
        "the served document is the one of the router's registrations"
    );

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in &refs {
        let pointer = reference
            .strip_prefix("#/components/")
            .unwrap_or_else(|| panic!("{reference} points outside the components"));
        assert!(
            doc["components"].pointer(&format!("/{pointer}")).is_some(),
            "{reference} does not resolve"
        );
    }
    assert!(
        doc.pointer("/components/securitySchemes/bearer").is_some(),
        "the bearer scheme"
    );

    let mut expected: Vec<Route> = ROUTES
        .iter()
        .map(|&(method, path)| Route {
            method,
            path: path.to_string(),
        })
        .collect();
    expected.sort();
    assert_eq!(routes_of(&parsed), expected, "documented routes");

    let mut operation_ids = HashSet::new();
    for (method, path) in ROUTES {
        let operation = &doc["paths"][path][method.to_lowercase()];
        let id = operation["operationId"].as_str().expect("an operation id");
        assert!(operation_ids.insert(id), "operation id {id} twice");
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        assert_eq!(
            secured,
            path.starts_with("/v1/"),
            "{method} {path} security"
        );
        if secured {
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path}: 401"
            );
        }
        let error = &operation["responses"]["500"]["content"]["application/json"]["schema"];
        assert_eq!(
            error["$ref"], "#/components/schemas/ErrorBody",
            "{method} {path}"
        );
    }
    assert_eq!(operation_ids.len(), ROUTES.len());
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;

    // The fallbacks, to tell them apart below.
    let unknown = api.get("/v1/no-such-thing", Some(admin_token())).await;
    unknown.assert_error(404, "not_found");
    assert!(is_fallback(&unknown));
    let wrong_method = api
        .raw(Method::PATCH, "/v1/ips", Some(admin_token()), None, None)
        .await;
    assert!(is_fallback(&wrong_method));

    // Each route on the listener the document names for it; on the other one,
    // the fallback.
    let doc = serde_json::to_value(penguin_api::openapi()).expect("the document");
    for route in routes_of(&penguin_api::openapi()) {
        let servers = &doc["paths"][&route.path]["servers"];
        let public = servers[0]["url"] == "{public}";
        let (here, elsewhere) = match public {
            true => (&server.public, api),
            false => (api, &server.public),
        };
        let absent = request(elsewhere, route.method, &route.path).await;
        assert!(
            is_fallback(&absent),
            "{} {} is served on the wrong listener too: {}",
            route.method,
            route.path,
            absent.status
        );
        let answer = request(here, route.method, &route.path).await;
        assert!(
            !is_fallback(&answer),
            "{} {}: {} {:#}",
            route.method,
            route.path,
            answer.status,
            answer.body
        );
    }
}

/// Requests `template` as the admin, without a body, its parameters filled
/// with ids nobody has, a built-in schedule, an address nobody suppressed and
/// a forged link: every answer is the handler's, and nothing changes.
async fn request(api: &ApiClient, method: &str, template: &str) -> Answer {
    let path = template
        .replace("{id}", &Uuid::now_v7().to_string())
        .replace("{token_id}", &Uuid::now_v7().to_string())
        .replace("{name}", "conservative")
        .replace("{email}", "nobody%40example.com")
        .replace("{token}", "forged");
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    api.raw(method, &path, Some(admin_token()), None, None)
        .await
}

#[tokio::test]
async fn docs_page_is_self_contained_html() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;

    let answer = server.api.get("/docs", None).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.content_type.starts_with("text/html"),
        "{}",
        answer.content_type
    );
    let page = answer.body.as_str().expect("an HTML page");
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("openapi.json"), "it renders the document");
    for remote in ["http://", "https://", "src=", "<link", "@import"] {
        assert!(
            !page.contains(remote),
            "the page loads from elsewhere: {remote}"
        );
    }
}

/// The router's answer for a path or method it does not serve.
fn is_fallback(answer: &Answer) -> bool {
    answer.status == 405 || (answer.status == 404 && answer.message() == "no such route")
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => refs.push(reference.clone()),
                    _ => collect_refs(value, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}
