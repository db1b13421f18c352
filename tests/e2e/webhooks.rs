//! Webhooks, the happy path with a real HTTP receiver on 127.0.0.1: a
//! campaign's `sent` events and its `campaign_completed` reach the webhook that
//! subscribed to them, each once, each POST signed with the secret returned at
//! create (recomputed here, as a receiver would), each event carrying its
//! stable id, tenant, campaign, job and recipient; a webhook subscribed to
//! other kinds gets nothing; `POST /v1/webhooks/{id}/test` sends a `test`
//! event; `GET /v1/webhooks/{id}/deliveries` shows every delivery `delivered`
//! after one attempt; the secret is stored sealed, never in the clear.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::api::ApiClient;
use crate::support::rig::Rig;
use crate::support::wait_for;
use crate::support::webhook_receiver::{Receiver, create_webhook, event_ids, verify};

const LEADS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_reach_the_webhook_signed_once_each() {
    let rig = Rig::start(|config| {
        config.webhooks.allow_hosts = vec!["127.0.0.1".into()];
        config.webhooks.poll_ms = 100;
    })
    .await;
    let receiver = Receiver::start().await;
    let other = Receiver::start().await;
    let leads: Vec<String> = (0..LEADS).map(|n| format!("hook{n}@hooks.test")).collect();
    let scenario = rig
        .campaign_with_leads(&leads.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let tenant = &scenario.tenants[0];
    let api = ApiClient::new(&rig.node().api_url());
    let (hook, secret) = create_webhook(
        &api,
        &tenant.token,
        &receiver.url(),
        &["sent", "campaign_completed"],
    )
    .await;
    create_webhook(
        &api,
        &tenant.token,
        &other.url(),
        &["bounced", "complained"],
    )
    .await;

    scenario.start().await.expect("campaign starts");
    rig.wait_until_done(&scenario, Duration::from_secs(60))
        .await;
    // Events are recorded in batches, after the jobs' outcomes.
    let sent = wait_for(
        "every sent event recorded",
        Duration::from_secs(30),
        || async {
            let sent = event_ids(&rig.env, tenant.id, &["sent"]).await;
            (sent.len() == LEADS).then_some(sent)
        },
    )
    .await;
    wait_for(
        "every sent event and the completion at the receiver",
        Duration::from_secs(30),
        || async {
            let kinds: Vec<String> = receiver
                .received()
                .iter()
                .flat_map(|r| r.events())
                .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
                .collect();
            (receiver.delivered_ids().is_superset(&sent)
                && kinds.iter().any(|k| k == "campaign_completed"))
            .then_some(())
        },
    )
    .await;

    let mut seen: Vec<i64> = Vec::new();
    for request in receiver.received() {
        let signature = request.signature.as_deref().expect("a Penguin-Signature");
        assert!(
            verify(&secret, signature, &request.body),
            "signature {signature} does not verify"
        );
        assert!(
            !verify("whsec_wrong", signature, &request.body),
            "any secret verifies"
        );
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        for event in request.events() {
            seen.push(event["id"].as_i64().expect("an id"));
            assert_eq!(event["tenant_id"], tenant.id.to_string());
            assert_eq!(event["campaign_id"], tenant.campaign.to_string());
            assert!(event["created_at"].is_string(), "{event}");
            match event["kind"].as_str() {
                Some("sent") => {
                    let recipient = event["recipient"].as_str().expect("a recipient");
                    assert!(leads.iter().any(|l| l == recipient), "{event}");
                    assert!(event["job_id"].is_string(), "{event}");
                    assert_eq!(event["smtp_code"], 250, "{event}");
                }
                Some("campaign_completed") => {
                    assert!(event["job_id"].is_null(), "{event}");
                    assert!(!sent.contains(&event["id"].as_i64().unwrap()), "{event}");
                }
                other => panic!("unsubscribed kind {other:?} delivered"),
            }
        }
    }
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(
        seen.len(),
        unique.len(),
        "an event delivered twice: {seen:?}"
    );
    assert_eq!(unique.len(), LEADS + 1);
    assert_eq!(other.count(), 0, "the webhook of other kinds got a request");

    // The test event.
    let queued = api
        .post(
            &format!("/v1/webhooks/{hook}/test"),
            Some(&tenant.token),
            &serde_json::json!({}),
        )
        .await;
    let test_event = queued.expect(202)["event_id"]
        .as_i64()
        .expect("an event id");
    wait_for("the test event", Duration::from_secs(30), || async {
        receiver.delivered_ids().contains(&test_event).then_some(())
    })
    .await;
    let last = receiver.received().pop().expect("a request");
    assert_eq!(last.events()[0]["kind"], "test");
    assert!(verify(
        &secret,
        last.signature.as_deref().unwrap(),
        &last.body
    ));

    // Every delivery delivered after one attempt, with its attempt logged. The
    // sender records an outcome after the receiver answered: wait until none
    // is left pending (a retry would show as a second attempt below).
    let deliveries = wait_for(
        "every delivery settled",
        Duration::from_secs(30),
        || async {
            let answer = api
                .get(
                    &format!("/v1/webhooks/{hook}/deliveries"),
                    Some(&tenant.token),
                )
                .await;
            let deliveries = answer.expect(200)["deliveries"].as_array().unwrap().clone();
            deliveries
                .iter()
                .all(|d| d["status"] != "pending")
                .then_some(deliveries)
        },
    )
    .await;
    assert_eq!(deliveries.len(), LEADS + 2, "{deliveries:?}");
    for delivery in &deliveries {
        assert_eq!(delivery["status"], "delivered", "{delivery}");
        assert_eq!(delivery["attempts"], 1, "{delivery}");
        assert!(delivery["next_attempt_at"].is_null(), "{delivery}");
        let log = delivery["attempt_log"].as_array().unwrap();
        assert_eq!(log.len(), 1, "{delivery}");
        assert_eq!(log[0]["status_code"], 200, "{delivery}");
    }

    // The list never shows the secret; the store holds it sealed only.
    let list = api.get("/v1/webhooks", Some(&tenant.token)).await;
    assert!(!list.expect(200).to_string().contains(&secret));
    let stored = rig
        .env
        .psql(&format!(
            "SELECT sealed_secret FROM webhooks WHERE id = '{hook}'"
        ))
        .await;
    let sealed: Vec<u8> = stored[0].get(0);
    assert!(
        !sealed.windows(16).any(|w| w == &secret.as_bytes()[6..22]),
        "the secret is stored in the clear"
    );
    rig.shutdown().await;
}
