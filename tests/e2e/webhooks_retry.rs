//! Webhook retries against a real HTTP receiver on 127.0.0.1:
//! - answers 500, 500, then 200: the event arrives, its delivery is
//!   `delivered` after three attempts, each logged with its status;
//! - a receiver that does not answer (the request hangs past `timeout_ms`),
//!   then answers 200: the delivery is `delivered` after two attempts, the
//!   first logged as timed out;
//! - a receiver that always fails: the delivery turns `dead` once retrying
//!   would pass `max_age_secs`, and is never tried again by itself; the retry
//!   route sends it again, and once the receiver answers it is `delivered`.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::ApiClient;
use crate::support::rig::Rig;
use crate::support::wait_for;
use crate::support::webhook_receiver::{Receiver, Reply, create_webhook};

async fn rig(max_age_secs: u64) -> Rig {
    Rig::start(|config| {
        config.webhooks.allow_hosts = vec!["127.0.0.1".into()];
        config.webhooks.poll_ms = 100;
        config.webhooks.timeout_ms = 700;
        config.webhooks.backoff_base_ms = 100;
        config.webhooks.backoff_max_ms = 400;
        config.webhooks.max_age_secs = max_age_secs;
    })
    .await
}

/// A tenant (no campaign needed) with a webhook to `receiver`; returns the
/// client, the tenant token and the webhook.
async fn tenant_with_webhook(rig: &Rig, receiver: &Receiver) -> (ApiClient, String, Uuid) {
    let api = ApiClient::new(&rig.node().api_url());
    let (_, token) = api.create_tenant("hooks").await;
    let (hook, _) = create_webhook(&api, &token, &receiver.url(), &["sent"]).await;
    (api, token, hook)
}

/// The webhook's only delivery, once `done` says it is settled.
async fn settled(
    api: &ApiClient,
    token: &str,
    hook: Uuid,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, Duration::from_secs(30), || async {
        let answer = api
            .get(&format!("/v1/webhooks/{hook}/deliveries"), Some(token))
            .await;
        let deliveries = answer.expect(200)["deliveries"].as_array()?.clone();
        deliveries.first().filter(|d| done(d)).cloned()
    })
    .await
}

async fn send_test(api: &ApiClient, token: &str, hook: Uuid) -> i64 {
    api.post(
        &format!("/v1/webhooks/{hook}/test"),
        Some(token),
        &json!({}),
    )
    .await
    .expect(202)["event_id"]
        .as_i64()
        .expect("an event id")
}

fn log_statuses(delivery: &Value) -> Vec<Value> {
    delivery["attempt_log"]
        .as_array()
        .expect("an attempt log")
        .iter()
        .map(|a| a["status_code"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_500_are_retried_until_one_succeeds() {
    let rig = rig(3_600).await;
    let receiver = Receiver::start().await;
    receiver.script(&[Reply::Status(500), Reply::Status(500)]);
    let (api, token, hook) = tenant_with_webhook(&rig, &receiver).await;
    let event = send_test(&api, &token, hook).await;
    let delivery = settled(&api, &token, hook, "the delivery delivered", |d| {
        d["status"] == "delivered"
    })
    .await;
    assert_eq!(delivery["attempts"], 3, "{delivery}");
    assert_eq!(
        log_statuses(&delivery),
        [json!(500), json!(500), json!(200)]
    );
    assert_eq!(delivery["last_status"], 200);
    assert!(delivery["last_error"].is_null(), "{delivery}");
    assert_eq!(receiver.count(), 3);
    assert!(receiver.delivered_ids().contains(&event));
    // The same event id in every attempt: a receiver can drop the copies.
    for request in receiver.received() {
        assert_eq!(request.events()[0]["id"], event);
    }
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timeout_is_retried() {
    let rig = rig(3_600).await;
    let receiver = Receiver::start().await;
    receiver.script(&[Reply::Hang]);
    let (api, token, hook) = tenant_with_webhook(&rig, &receiver).await;
    let event = send_test(&api, &token, hook).await;
    let delivery = settled(&api, &token, hook, "the delivery delivered", |d| {
        d["status"] == "delivered"
    })
    .await;
    assert_eq!(delivery["attempts"], 2, "{delivery}");
    let log = delivery["attempt_log"].as_array().unwrap();
    assert!(log[0]["status_code"].is_null(), "{delivery}");
    let error = log[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out"), "{delivery}");
    assert!(log[0]["duration_ms"].as_i64().unwrap() >= 700, "{delivery}");
    assert_eq!(log[1]["status_code"], 200);
    assert!(receiver.delivered_ids().contains(&event));
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_failing_past_max_age_is_dead_until_retried() {
    let rig = rig(2).await;
    let receiver = Receiver::start().await;
    receiver.answer(Reply::Status(503));
    let (api, token, hook) = tenant_with_webhook(&rig, &receiver).await;
    let event = send_test(&api, &token, hook).await;
    let dead = settled(&api, &token, hook, "the delivery dead", |d| {
        d["status"] == "dead"
    })
    .await;
    let attempts = dead["attempts"].as_i64().unwrap();
    assert!(attempts >= 2, "retried before dying: {dead}");
    assert_eq!(dead["last_status"], 503);
    assert!(
        dead["last_error"].as_str().unwrap().contains("HTTP 503"),
        "{dead}"
    );
    assert!(dead["next_attempt_at"].is_null(), "{dead}");
    // Every attempt logged was a request the receiver got.
    assert_eq!(receiver.count() as i64, attempts);

    receiver.answer(Reply::Status(204));
    let delivery = dead["id"].as_str().unwrap();
    let retried = api
        .post(
            &format!("/v1/webhooks/{hook}/deliveries/{delivery}/retry"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(retried.expect(202)["status"], "pending");
    let delivered = settled(&api, &token, hook, "the retried delivery delivered", |d| {
        d["status"] == "delivered"
    })
    .await;
    assert_eq!(delivered["attempts"].as_i64().unwrap(), attempts + 1);
    assert_eq!(delivered["last_status"], 204);
    assert!(receiver.delivered_ids().contains(&event));
    rig.shutdown().await;
}
