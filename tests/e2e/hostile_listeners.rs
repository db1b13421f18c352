//! Hostile scenario: the public listener and the operators' listener are two
//! doors (issue 12, DESIGN.md §10 "Two listeners"). On `[public] listen` —
//! the one facing the internet — no operator route exists: `/v1/*` (even with
//! the admin token), `/metrics`, `/health/*`, `/openapi.json` and `/docs` answer
//! the JSON 404 `not_found`, exactly as an unknown path does; the signed links
//! `/t/*` and `/u/*` answer there and nowhere else (the JSON 404 on
//! `[api] listen`). One address for both is refused at start, naming
//! `public.listen`, unless the operator sets `public.share_api_listener = true`;
//! then one listener serves every route.

use reqwest::Method;

use crate::support::api::{Answer, ApiClient, ApiServer, ROUTES};
use crate::support::node_process::NodeProcess;
use crate::support::{TestEnv, admin_token};

/// `route` with its parameters filled (ids nobody has, a forged link).
fn path_of(route: &str) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    route
        .replace("{id}", &id)
        .replace("{token_id}", &id)
        .replace("{name}", "conservative")
        .replace("{email}", "nobody%40example.com")
        .replace("{token}", "forged")
}

fn is_signed_link(route: &str) -> bool {
    route.starts_with("/t/") || route.starts_with("/u/")
}

/// Sends `method route` as the admin.
async fn send(client: &ApiClient, method: &str, route: &str) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    client
        .raw(method, &path_of(route), Some(admin_token()), None, None)
        .await
}

/// The JSON 404 of a path the listener does not serve.
#[track_caller]
fn assert_absent(answer: &Answer, what: &str) {
    assert_eq!(
        (answer.status, answer.code(), answer.message()),
        (404, "not_found", "no such route"),
        "{what}: {:#}",
        answer.body
    );
    assert_eq!(answer.content_type, "application/json", "{what}");
}

#[tokio::test]
async fn each_listener_serves_its_own_routes_only() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    assert_ne!(server.api.base, server.public.base, "two listeners");

    let mut absent = 0;
    for (method, route) in ROUTES {
        let (home, other, other_name) = if is_signed_link(route) {
            (&server.public, &server.api, "the control API")
        } else {
            (&server.api, &server.public, "the public listener")
        };
        let answer = send(other, method, route).await;
        assert_absent(&answer, &format!("{method} {route} on {other_name}"));
        absent += 1;
        // At home the route's own handler answers (not the fallback).
        let answer = send(home, method, route).await;
        assert!(
            !(answer.status == 404 && answer.message() == "no such route") && answer.status != 405,
            "{method} {route} is not served on its own listener: {} {:#}",
            answer.status,
            answer.body
        );
    }
    println!("{absent} routes answered the JSON 404 on the other listener");

    // What an operator reaches first, by name, on the public door.
    for path in [
        "/metrics",
        "/health",
        "/health/email",
        "/openapi.json",
        "/docs",
        "/v1/nodes",
    ] {
        let answer = server.public.get(path, Some(admin_token())).await;
        assert_absent(&answer, &format!("GET {path} on the public listener"));
    }
    // The public door still answers a link.
    let pixel = server.public.get("/t/o/forged", None).await;
    assert_eq!(
        (pixel.status, pixel.content_type.as_str()),
        (200, "image/gif")
    );
}

#[tokio::test]
async fn one_address_for_both_needs_the_explicit_flag() {
    let env = TestEnv::start().await;

    // The same address, without the flag: refused at start, naming the key.
    let mut config = env.config.clone();
    config.api.listen = "127.0.0.1:18025".into();
    config.public.listen = "127.0.0.1:18025".into();
    let err = config.validate().expect_err("the same address is refused");
    assert!(err.to_string().contains("public.listen"), "{err}");
    let printed = NodeProcess::refused(&config).await;
    assert!(printed.contains("public.listen"), "{printed}");
    assert!(printed.contains("share_api_listener"), "{printed}");

    // An unspecified address takes every interface's port: the same refusal.
    config.public.listen = "0.0.0.0:18025".into();
    let err = config.validate().expect_err("0.0.0.0 overlaps 127.0.0.1");
    assert!(err.to_string().contains("public.listen"), "{err}");

    // With the flag: one listener serves both kinds of routes.
    let server = ApiServer::start(&env, |config| {
        config.public.listen = config.api.listen.clone();
        config.public.share_api_listener = true;
    })
    .await;
    assert_eq!(server.api.base, server.public.base, "one listener");
    let health = server.api.get("/health", None).await;
    assert_eq!(health.status, 200);
    let pixel = server.api.get("/t/o/forged", None).await;
    assert_eq!(
        (pixel.status, pixel.content_type.as_str()),
        (200, "image/gif")
    );
}
