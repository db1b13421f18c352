//! API scenario: webhooks' bad inputs get a clear 4xx and change nothing.
//! - A URL whose host is not public (loopback, private, link-local, cloud
//!   metadata, IPv6 loopback, a name resolving to 127.0.0.1) is 422 naming
//!   `allow_hosts`, unless the host is listed there exactly; a URL that is not
//!   http(s), carries credentials or a fragment is 422.
//! - An unknown event kind is 422 naming it; no kind at all is 422.
//! - The `max_per_tenant`+1-th webhook is 409 `too_many_webhooks`.
//! - Another tenant's webhook (or delivery) answers 404 on every route, and
//!   the admin token is 403.
//! - Deleting a webhook deletes its deliveries; a second delete is 404.

use serde_json::json;

use crate::support::TestEnv;
use crate::support::admin_token;
use crate::support::api::{ApiServer, count};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhooks_are_refused_and_change_nothing() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |config| {
        config.webhooks.allow_hosts = vec!["127.0.0.1".into()];
        config.webhooks.max_per_tenant = 2;
    })
    .await;
    let api = &server.api;
    let (_, token) = api.create_tenant("hooks-a").await;
    let (_, other) = api.create_tenant("hooks-b").await;
    let webhooks = "SELECT count(*) FROM webhooks";

    for url in [
        "http://127.0.0.2/hook",
        "http://10.0.0.1/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://localhost/hook",
    ] {
        let answer = api
            .post(
                "/v1/webhooks",
                Some(&token),
                &json!({ "url": url, "events": ["sent"] }),
            )
            .await;
        answer.assert_error(422, "invalid_request");
        assert!(
            answer.message().contains("allow_hosts") || answer.message().contains("resolve"),
            "{url}: {}",
            answer.message()
        );
    }
    for url in [
        "ftp://127.0.0.1/hook",
        "127.0.0.1/hook",
        "http://user:pw@127.0.0.1/hook",
        "http://127.0.0.1/hook#x",
        "http://127.0.0.1/ho ok",
    ] {
        let answer = api
            .post(
                "/v1/webhooks",
                Some(&token),
                &json!({ "url": url, "events": ["sent"] }),
            )
            .await;
        answer.assert_error(422, "invalid_request");
        assert!(
            answer.message().starts_with("url"),
            "{url}: {}",
            answer.message()
        );
    }
    let unknown = api
        .post(
            "/v1/webhooks",
            Some(&token),
            &json!({ "url": "http://127.0.0.1/hook", "events": ["sent", "opened_twice"] }),
        )
        .await;
    unknown.assert_error(422, "invalid_request");
    assert!(
        unknown.message().contains("\"opened_twice\""),
        "{}",
        unknown.message()
    );
    let none = api
        .post(
            "/v1/webhooks",
            Some(&token),
            &json!({ "url": "http://127.0.0.1/hook", "events": [] }),
        )
        .await;
    none.assert_error(422, "invalid_request");
    let long = api
        .post(
            "/v1/webhooks",
            Some(&token),
            &json!({ "url": "http://127.0.0.1/hook", "events": ["sent"], "description": "x".repeat(501) }),
        )
        .await;
    long.assert_error(422, "invalid_request");
    assert_eq!(
        count(&env, webhooks).await,
        0,
        "a refused webhook was stored"
    );

    // The admin has no webhooks of its own.
    api.post(
        "/v1/webhooks",
        Some(admin_token()),
        &json!({ "url": "http://127.0.0.1/hook", "events": ["sent"] }),
    )
    .await
    .assert_error(403, "forbidden");

    // The limit.
    let mut ids = Vec::new();
    for n in 0..2 {
        let answer = api
            .post(
                "/v1/webhooks",
                Some(&token),
                &json!({ "url": format!("http://127.0.0.1:{}/hook", 9000 + n),
                         "events": ["sent", "sent", "campaign_completed"], "description": "mine" }),
            )
            .await;
        let body = answer.expect(201);
        assert_eq!(body["events"], json!(["sent", "campaign_completed"]));
        assert!(body["secret"].as_str().unwrap().starts_with("whsec_"));
        ids.push(answer.id());
    }
    let third = api
        .post(
            "/v1/webhooks",
            Some(&token),
            &json!({ "url": "http://127.0.0.1/hook", "events": ["sent"] }),
        )
        .await;
    third.assert_error(409, "too_many_webhooks");
    assert_eq!(count(&env, webhooks).await, 2);

    // Another tenant's webhook is nobody's.
    let hook = ids[0];
    let queued = api
        .post(
            &format!("/v1/webhooks/{hook}/test"),
            Some(&token),
            &json!({}),
        )
        .await;
    let delivery = queued.expect(202)["id"].as_str().unwrap().to_string();
    let listed = api.get("/v1/webhooks", Some(&other)).await;
    assert_eq!(listed.expect(200)["webhooks"], json!([]));
    for answer in [
        api.delete(&format!("/v1/webhooks/{hook}"), Some(&other))
            .await,
        api.post(
            &format!("/v1/webhooks/{hook}/test"),
            Some(&other),
            &json!({}),
        )
        .await,
        api.get(&format!("/v1/webhooks/{hook}/deliveries"), Some(&other))
            .await,
        api.post(
            &format!("/v1/webhooks/{hook}/deliveries/{delivery}/retry"),
            Some(&other),
            &json!({}),
        )
        .await,
        api.post(
            &format!("/v1/webhooks/{}/deliveries/{delivery}/retry", ids[1]),
            Some(&token),
            &json!({}),
        )
        .await,
    ] {
        answer.assert_error(404, "not_found");
    }
    assert_eq!(
        count(&env, "SELECT count(*) FROM webhook_deliveries").await,
        1
    );
    let listed = api.get("/v1/webhooks", Some(&token)).await;
    let listed = listed.expect(200)["webhooks"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|w| w.get("secret").is_none()),
        "{listed:?}"
    );

    api.delete(&format!("/v1/webhooks/{hook}"), Some(&token))
        .await
        .expect(204);
    assert_eq!(
        count(&env, "SELECT count(*) FROM webhook_deliveries").await,
        0
    );
    api.delete(&format!("/v1/webhooks/{hook}"), Some(&token))
        .await
        .assert_error(404, "not_found");
    assert_eq!(count(&env, webhooks).await, 1);
}
