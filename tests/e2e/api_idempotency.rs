//! API scenario: `POST /v1/campaigns/{id}/start` with an `Idempotency-Key`.
//! 100 concurrent starts with one key start the campaign once; repeating the key
//! after a pause replays the first answer and changes nothing; a malformed key is
//! 422 and changes nothing.

use futures::future::join_all;
use serde_json::Value;
use uuid::Uuid;

use crate::support::TestEnv;
use crate::support::api::{ApiServer, count, leads, snapshot};

/// A start with `key` (raw header bytes); returns status, replay header and body.
async fn start(base: &str, token: &str, campaign: Uuid, key: &[u8]) -> (u16, bool, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/campaigns/{campaign}/start"))
        .bearer_auth(token)
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes(key).expect("a header value"),
        )
        .send()
        .await
        .expect("the API answers");
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    let body = response.json().await.expect("a JSON body");
    (status, replayed, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_starts_a_campaign_once_and_replays_after_a_pause() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    api.add_leads(&token, campaign, leads(25)).await.expect(200);

    // Malformed keys: 422, nothing changes.
    let before = snapshot(&env).await;
    let too_long = "k".repeat(256);
    for bad in [&b"two words"[..], too_long.as_bytes(), b"caf\xc3\xa9"] {
        let (status, _, body) = start(&api.base, &token, campaign, bad).await;
        assert_eq!(status, 422, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
    }
    assert_eq!(snapshot(&env).await, before);
    let jobs = format!("SELECT count(*) FROM send_jobs WHERE campaign_id = '{campaign}'");
    assert_eq!(count(&env, &jobs).await, 0);

    // 100 concurrent starts, one key: all answer `running`, one set of jobs.
    let answers =
        join_all((0..100).map(|_| start(&api.base, &token, campaign, b"launch-2026-12-02"))).await;
    for (status, _, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["status"], "running");
        assert_eq!(body["id"], campaign.to_string());
    }
    let replays = answers.iter().filter(|(_, replayed, _)| *replayed).count();
    assert_eq!(replays, 99, "all but the first start are replays");
    assert_eq!(count(&env, &jobs).await, 25);
    let key = format!(
        "SELECT count(*) FROM campaigns WHERE id = '{campaign}' AND start_key = 'launch-2026-12-02'"
    );
    assert_eq!(count(&env, &key).await, 1);

    // After a pause, a retried start with the same key answers as the first did
    // and leaves the campaign paused; a start with another key is refused.
    assert_eq!(api.action_ok(&token, campaign, "pause").await, "paused");
    let before = snapshot(&env).await;
    let (status, replayed, body) = start(&api.base, &token, campaign, b"launch-2026-12-02").await;
    assert_eq!((status, replayed), (200, true), "{body}");
    assert_eq!(body["status"], "running");
    let (status, _, body) = start(&api.base, &token, campaign, b"another-key").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(snapshot(&env).await, before);
    let paused =
        format!("SELECT count(*) FROM campaigns WHERE id = '{campaign}' AND status = 'paused'");
    assert_eq!(count(&env, &paused).await, 1);
    assert_eq!(count(&env, &jobs).await, 25);

    // Another tenant's token never sees the campaign, key or not.
    let (_, other) = api.create_tenant("globex").await;
    let (status, _, _) = start(&api.base, &other, campaign, b"launch-2026-12-02").await;
    assert_eq!(status, 404);
}
