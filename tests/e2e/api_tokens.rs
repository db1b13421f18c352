//! API scenario: a tenant's tokens and the per-token rate limit. A tenant holds
//! several tokens; issuing answers the token once, listing never shows it;
//! a revoked token is refused at once while the others keep working; another
//! tenant's token reaches none of it (404). Over its budget a token answers 429
//! with `Retry-After` and the request changes nothing; other tokens are unaffected.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::api::{ApiServer, snapshot};
use crate::support::{TestEnv, admin_token};

#[tokio::test]
async fn tokens_are_issued_listed_and_revoked_per_tenant() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, first) = api.create_tenant("acme").await;
    let (other, other_token) = api.create_tenant("globex").await;
    let path = format!("/v1/tenants/{tenant}/tokens");

    // The admin and the tenant itself issue more tokens; each works at once.
    let by_admin = api.post(&path, Some(admin_token()), &json!({})).await;
    let by_admin = by_admin.expect(201).clone();
    let second = by_admin["token"].as_str().expect("token").to_string();
    assert!(second.starts_with("pt_"));
    let by_tenant = api.post(&path, Some(&first), &json!({})).await;
    let third = by_tenant.expect(201)["token"].as_str().unwrap().to_string();
    for token in [&first, &second, &third] {
        api.get("/v1/suppressions", Some(token)).await.expect(200);
    }

    // Listed with dates, never the tokens.
    let listed = api.get(&path, Some(&first)).await;
    let tokens = listed.expect(200)["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 3);
    for token in &tokens {
        assert!(token.get("token").is_none(), "{token}");
        assert_eq!(token["revoked_at"], Value::Null);
    }
    assert!(!listed.body.to_string().contains(&second));

    // Another tenant reaches none of it, and changes nothing trying.
    let before = snapshot(&env).await;
    let second_id = by_admin["id"].as_str().unwrap().to_string();
    api.get(&path, Some(&other_token))
        .await
        .assert_error(404, "not_found");
    api.post(&path, Some(&other_token), &json!({}))
        .await
        .assert_error(404, "not_found");
    api.delete(&format!("{path}/{second_id}"), Some(&other_token))
        .await
        .assert_error(404, "not_found");
    // Its own path cannot name this tenant's token either.
    api.delete(
        &format!("/v1/tenants/{other}/tokens/{second_id}"),
        Some(&other_token),
    )
    .await
    .assert_error(404, "not_found");
    for bad in [
        format!("/v1/tenants/{}/tokens", uuid::Uuid::now_v7()),
        "/v1/tenants/not-a-uuid/tokens".to_string(),
    ] {
        api.get(&bad, Some(admin_token()))
            .await
            .assert_error(404, "not_found");
    }
    api.get(&path, None).await.assert_error(401, "unauthorized");
    assert_eq!(snapshot(&env).await, before);

    // Revoked: refused at once; revoking again keeps the first time.
    let revoked = api
        .delete(&format!("{path}/{second_id}"), Some(&first))
        .await;
    let revoked_at = revoked.expect(200)["revoked_at"].clone();
    assert!(revoked_at.is_string(), "{}", revoked.body);
    api.get("/v1/suppressions", Some(&second))
        .await
        .assert_error(401, "unauthorized");
    let again = api
        .delete(&format!("{path}/{second_id}"), Some(admin_token()))
        .await;
    assert_eq!(again.expect(200)["revoked_at"], revoked_at);
    api.delete(&format!("{path}/{}", uuid::Uuid::now_v7()), Some(&first))
        .await
        .assert_error(404, "not_found");
    for token in [&first, &third] {
        api.get("/v1/suppressions", Some(token)).await.expect(200);
    }
    let listed = api.get(&path, Some(admin_token())).await;
    let revoked_rows = listed.expect(200)["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["revoked_at"].is_string())
        .count();
    assert_eq!(revoked_rows, 1);
}

/// Status and `Retry-After` of one POST adding a suppression.
async fn add_suppression(base: &str, token: &str, email: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .request(Method::POST, format!("{base}/v1/suppressions"))
        .bearer_auth(token)
        .json(&json!({ "emails": [email], "reason": "manual" }))
        .send()
        .await
        .expect("the API answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry_after, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_token_over_its_budget_gets_429_and_changes_nothing() {
    let env = TestEnv::start().await;
    // Three requests at once, then one a minute: the fourth is refused for sure.
    let server = ApiServer::start(&env, |config| {
        config.api.rate_limit_per_minute = 1;
        config.api.rate_limit_burst = 3;
    })
    .await;
    let api = &server.api;
    let (_, token) = api.create_tenant("acme").await; // admin: 1 of 3
    let (_, other) = api.create_tenant("globex").await; // admin: 2 of 3

    for n in 0..3 {
        let (status, _, body) = add_suppression(&api.base, &token, &format!("a{n}@x.test")).await;
        assert_eq!(status, 200, "{body}");
    }
    let before = snapshot(&env).await;
    let suppressed = crate::support::api::suppression_rows(&env).await;
    let (status, retry_after, body) = add_suppression(&api.base, &token, "late@x.test").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(snapshot(&env).await, before);
    assert_eq!(
        crate::support::api::suppression_rows(&env).await,
        suppressed
    );

    // Other tokens keep their own budgets; the admin's is counted too.
    let (status, _, body) = add_suppression(&api.base, &other, "b@x.test").await;
    assert_eq!(status, 200, "{body}");
    api.post(
        "/v1/tenants",
        Some(admin_token()),
        &json!({ "name": "third" }),
    )
    .await
    .expect(201); // admin: 3 of 3
    api.post(
        "/v1/tenants",
        Some(admin_token()),
        &json!({ "name": "fourth" }),
    )
    .await
    .assert_error(429, "rate_limited");
    // Public routes carry no token and no budget.
    api.get("/health", None).await.expect(200);
}
