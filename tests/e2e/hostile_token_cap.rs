//! Hostile input, token minting: a tenant holds at most
//! `api.max_tokens_per_tenant` live (unrevoked) tokens. Issuing past the cap
//! answers 409 `too_many_tokens` and creates nothing — also when many issues
//! race (they are counted one after another under a per-tenant lock, as the
//! tenant itself and as the admin). Revoking one makes room for exactly one;
//! other tenants are not affected.

use serde_json::json;

use crate::support::api::{ApiServer, count, snapshot};
use crate::support::{TestEnv, admin_token};

const CAP: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_issues_stop_at_the_cap_and_revoking_makes_room() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |config| {
        config.api.max_tokens_per_tenant = CAP as u32;
    })
    .await;
    let api = &server.api;
    let (tenant, first) = api.create_tenant("acme").await; // 1 live token
    let (other, _) = api.create_tenant("globex").await;
    let path = format!("/v1/tenants/{tenant}/tokens");

    // 24 issues at once, half by the tenant, half by the admin.
    let issues = (0..24).map(|i| {
        let token = if i % 2 == 0 {
            first.as_str()
        } else {
            admin_token()
        };
        let path = &path;
        async move { api.post(path, Some(token), &json!({})).await }
    });
    let answers = futures::future::join_all(issues).await;
    let issued = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(issued, CAP - 1, "exactly up to the cap");
    for refused in answers.iter().filter(|a| a.status != 201) {
        refused.assert_error(409, "too_many_tokens");
        assert!(refused.message().contains("revoke"), "{:#}", refused.body);
    }
    let live = format!(
        "SELECT count(*) FROM api_tokens WHERE tenant_id = '{tenant}' AND revoked_at IS NULL"
    );
    assert_eq!(count(&env, &live).await, CAP as i64);

    // At the cap, a refusal changes nothing.
    let before = snapshot(&env).await;
    api.post(&path, Some(&first), &json!({}))
        .await
        .assert_error(409, "too_many_tokens");
    assert_eq!(snapshot(&env).await, before);

    // Revoking one makes room for one.
    let some_id = answers
        .iter()
        .find(|a| a.status == 201)
        .map(|a| a.id())
        .expect("an issued token");
    api.delete(&format!("{path}/{some_id}"), Some(&first))
        .await
        .expect(200);
    api.post(&path, Some(&first), &json!({})).await.expect(201);
    api.post(&path, Some(admin_token()), &json!({}))
        .await
        .assert_error(409, "too_many_tokens");
    assert_eq!(count(&env, &live).await, CAP as i64);

    // Another tenant has its own cap.
    api.post(
        &format!("/v1/tenants/{other}/tokens"),
        Some(admin_token()),
        &json!({}),
    )
    .await
    .expect(201);
}
