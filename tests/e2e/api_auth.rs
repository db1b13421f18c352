//! API scenario: who may do what (DESIGN.md §7.5). No token or an unknown token
//! is 401 everywhere; a tenant token on admin routes and the admin token on tenant
//! routes are 403; a tenant reaching for another tenant's campaign or IP gets 404
//! and changes nothing.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::support::api::{ApiServer, campaign_body, count, leads, snapshot};
use crate::support::{TestEnv, admin_token};

/// Every protected route with a body that would be valid for its owner.
fn protected_routes(tenant: Uuid, campaign: Uuid, ip: Uuid) -> Vec<(Method, String)> {
    let mut routes = vec![
        (Method::POST, "/v1/tenants".to_string()),
        (Method::POST, format!("/v1/tenants/{tenant}/ips")),
        (Method::GET, "/v1/ips".to_string()),
        (Method::GET, format!("/v1/ips/{ip}")),
        (Method::POST, format!("/v1/ips/{ip}/pause")),
        (Method::POST, format!("/v1/ips/{ip}/resume")),
        (Method::GET, "/v1/warmup-schedules".to_string()),
        (Method::GET, "/v1/warmup-schedules/conservative".to_string()),
        (Method::POST, "/v1/warmup-schedules".to_string()),
        (Method::POST, "/v1/complaints".to_string()),
        (Method::POST, "/v1/campaigns".to_string()),
        (Method::GET, format!("/v1/campaigns/{campaign}")),
        (Method::POST, format!("/v1/campaigns/{campaign}/leads")),
    ];
    for action in ["start", "pause", "resume", "cancel"] {
        routes.push((Method::POST, format!("/v1/campaigns/{campaign}/{action}")));
    }
    routes
}

#[tokio::test]
async fn missing_or_unknown_tokens_are_401() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    let before = snapshot(&env).await;

    let forged = format!("pt_{}", &token[3..].chars().rev().collect::<String>());
    for (method, path) in protected_routes(tenant, campaign, ip) {
        let body = Some(b"{}".to_vec());
        let json = Some("application/json");
        let none = api
            .raw(method.clone(), &path, None, json, body.clone())
            .await;
        none.assert_error(401, "unauthorized");
        for bad in ["nope", forged.as_str(), &admin_token()[1..]] {
            api.raw(method.clone(), &path, Some(bad), json, body.clone())
                .await
                .assert_error(401, "unauthorized");
        }
        // Not a bearer token at all.
        let basic = api
            .raw_authorization(method.clone(), &path, &format!("Basic {token}"))
            .await;
        basic.assert_error(401, "unauthorized");
    }
    assert_eq!(
        snapshot(&env).await,
        before,
        "refused requests changed nothing"
    );
}

#[tokio::test]
async fn tokens_reach_only_their_own_routes_and_rows() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant_a, token_a) = api.create_tenant("a").await;
    let (tenant_b, token_b) = api.create_tenant("b").await;
    let ip_a = api.add_ip(tenant_a, "127.0.0.2").await;
    let ip_b = api.add_ip(tenant_b, "127.0.0.3").await;
    let campaign_a = api.create_campaign(&token_a, &[ip_a]).await;
    api.add_leads(&token_a, campaign_a, leads(2))
        .await
        .expect(200);
    let before = snapshot(&env).await;

    // Tenant tokens on admin routes: 403.
    for token in [&token_a, &token_b] {
        api.post("/v1/tenants", Some(token), &json!({ "name": "x" }))
            .await
            .assert_error(403, "forbidden");
        let ip = json!({ "address": "127.0.0.9", "helo_name": "mta.x.test" });
        api.post(&format!("/v1/tenants/{tenant_a}/ips"), Some(token), &ip)
            .await
            .assert_error(403, "forbidden");
    }
    // The admin token on tenant routes: 403 (the admin has no tenant).
    api.post(
        "/v1/campaigns",
        Some(admin_token()),
        &campaign_body(&[ip_a]),
    )
    .await
    .assert_error(403, "forbidden");
    api.campaign(admin_token(), campaign_a)
        .await
        .assert_error(403, "forbidden");
    api.add_leads(admin_token(), campaign_a, leads(1))
        .await
        .assert_error(403, "forbidden");
    for action in ["start", "pause", "resume", "cancel"] {
        api.action(admin_token(), campaign_a, action)
            .await
            .assert_error(403, "forbidden");
    }

    // Tenant B on tenant A's rows: 404, as if they did not exist.
    api.campaign(&token_b, campaign_a)
        .await
        .assert_error(404, "not_found");
    api.add_leads(&token_b, campaign_a, leads(3))
        .await
        .assert_error(404, "not_found");
    for action in ["start", "pause", "resume", "cancel"] {
        api.action(&token_b, campaign_a, action)
            .await
            .assert_error(404, "not_found");
    }
    api.get(&format!("/v1/ips/{ip_a}"), Some(&token_b))
        .await
        .assert_error(404, "not_found");
    // A's IP in B's campaign: refused, naming the id.
    let answer = api
        .create_campaign_with(&token_b, &campaign_body(&[ip_b, ip_a]))
        .await;
    answer.assert_error(422, "invalid_request");
    assert!(
        answer.message().contains(&ip_a.to_string()),
        "{}",
        answer.message()
    );
    // Ids that are not UUIDs cannot exist.
    api.get("/v1/campaigns/not-a-uuid", Some(&token_a))
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        snapshot(&env).await,
        before,
        "refused requests changed nothing"
    );
    let leads_a = format!("SELECT count(*) FROM leads WHERE campaign_id = '{campaign_a}'");
    assert_eq!(count(&env, &leads_a).await, 2);

    // Listings: the admin sees every IP, a tenant only its own.
    let all = api.get("/v1/ips", Some(admin_token())).await;
    assert_eq!(all.expect(200)["ips"].as_array().unwrap().len(), 2);
    for (token, own) in [(&token_a, ip_a), (&token_b, ip_b)] {
        let mine = api.get("/v1/ips", Some(token)).await;
        let ips = mine.expect(200)["ips"].as_array().unwrap().clone();
        assert_eq!(ips.len(), 1);
        assert_eq!(ips[0]["id"], json!(own.to_string()));
        let one = api.get(&format!("/v1/ips/{own}"), Some(token)).await;
        assert_eq!(one.expect(200)["id"], json!(own.to_string()));
        let admin = api
            .get(&format!("/v1/ips/{own}"), Some(admin_token()))
            .await;
        assert_eq!(admin.expect(200)["id"], json!(own.to_string()));
    }
    // The owner still reaches its campaign.
    api.campaign(&token_a, campaign_a).await.expect(200);
}
