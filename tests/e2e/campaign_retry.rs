//! Failed-job retry (issue 17 item 5), with the engine running on a clock the
//! test moves and `[delivery.retry] max_attempts = 2`: jobs the sink defers
//! twice end `failed`; `POST /v1/campaigns/{id}/retry {"status":"failed"}`
//! answers how many it requeued, reopens the completed campaign, and the jobs
//! go out again at once (the Feeder's safety-net scan is off: the retry wakes
//! the tenant) with a fresh attempt budget — a third deferral is a
//! retry, not a failure — and are sent when the sink lets them through. A
//! failed job whose address was suppressed meanwhile stays `failed` and never
//! reaches the sink; a second retry requeues nothing. Only `failed` may be
//! retried (422), and a cancelled campaign's jobs not at all (409).

use std::time::Duration;

use penguin_engine::sink::{Rule, RuleStage};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::support::api::ApiClient;
use crate::support::rig::Rig;
use crate::support::wait_for;

fn defer(pattern: &str, times: Option<u32>) -> Rule {
    Rule {
        recipient_pattern: pattern.into(),
        stage: RuleStage::Rcpt,
        reply: Some("451 4.3.0 try later".into()),
        times,
        delay_ms: None,
        drop_connection: false,
    }
}

/// `(status, attempts, run_at)` of the job of `email`.
async fn job(rig: &Rig, email: &str) -> (String, i32, OffsetDateTime) {
    let rows = rig
        .env
        .psql(&format!(
            "SELECT j.status, j.attempts, j.run_at FROM send_jobs j
             JOIN leads l ON l.tenant_id = j.tenant_id AND l.id = j.lead_id
             WHERE l.email = '{email}'"
        ))
        .await;
    (rows[0].get(0), rows[0].get(1), rows[0].get(2))
}

/// Waits until every job of `emails` is `status` after `attempts` attempts;
/// returns the latest `run_at` among them.
async fn wait_jobs(rig: &Rig, emails: &[&str], status: &str, attempts: i32) -> OffsetDateTime {
    wait_for(
        &format!("{emails:?} {status} after {attempts} attempts"),
        Duration::from_secs(30),
        || async {
            let mut latest = OffsetDateTime::UNIX_EPOCH;
            for email in emails {
                let (s, a, run_at) = job(rig, email).await;
                if s != status || a != attempts {
                    return None;
                }
                latest = latest.max(run_at);
            }
            Some(latest)
        },
    )
    .await
}

fn accepted_for(rig: &Rig, email: &str) -> usize {
    rig.sink
        .messages()
        .iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r == email))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_jobs_retried_get_a_fresh_budget_and_are_sent_suppressed_stay_failed() {
    let (rig, clock) = Rig::start_with_clock(|c| {
        c.delivery.retry.max_attempts = 2;
        // No safety-net scan while the test runs: the retry itself must wake
        // the tenant, and each deferral its planned retry time.
        c.queue.feed_idle_ms = 3_600_000;
    })
    .await;
    // Flaky recipients defer three times, then accept; the stuck one always defers.
    rig.sink
        .set_rules(vec![defer("*@flaky.test", Some(3)), defer("stuck@", None)])
        .unwrap();
    let flaky = ["a@flaky.test", "b@flaky.test"];
    let stuck = "stuck@hold.test";
    let fine = "fine@ok.test";
    let scenario = rig
        .campaign_with_leads(&[flaky[0], flaky[1], stuck, fine])
        .await;
    let tenant = &scenario.tenants[0];
    let (token, campaign) = (tenant.token.as_str(), tenant.campaign);
    let api = ApiClient::new(&rig.node().api_url());
    let retry = format!("/v1/campaigns/{campaign}/retry");
    scenario.start().await.unwrap();

    let all_three = [flaky[0], flaky[1], stuck];
    let retry_at = wait_jobs(&rig, &all_three, "deferred", 1).await;
    clock.set(retry_at);
    wait_jobs(&rig, &all_three, "failed", 2).await;
    wait_for(
        "the campaign completed",
        Duration::from_secs(30),
        || async {
            let answer = api.campaign(token, campaign).await;
            (answer.expect(200)["status"] == json!("completed")).then_some(())
        },
    )
    .await;
    assert_eq!(accepted_for(&rig, fine), 1);
    assert_eq!(rig.sink.stats().messages_accepted, 1);

    // Only `failed` can be retried.
    for body in [
        json!({ "status": "sent" }),
        json!({}),
        json!({ "status": "failed", "x": 1 }),
    ] {
        api.post(&retry, Some(token), &body)
            .await
            .assert_error(422, "invalid_request");
    }
    api.add_suppressions(token, &[stuck], "manual").await;
    let answer = api
        .post(&retry, Some(token), &json!({ "status": "failed" }))
        .await;
    assert_eq!(answer.expect(200), &json!({ "requeued": 2 }));
    let shown = api.campaign(token, campaign).await;
    assert_eq!(shown.expect(200)["status"], json!("running"), "reopened");
    assert_eq!(shown.body["completed_at"], Value::Null);

    // A fresh budget: the third deferral (the first since the retry) is
    // retried, not failed; `attempts` keeps counting.
    let retry_at = wait_jobs(&rig, &flaky, "deferred", 3).await;
    clock.set(retry_at);
    wait_jobs(&rig, &flaky, "sent", 4).await;
    for email in flaky {
        assert_eq!(accepted_for(&rig, email), 1, "{email}");
    }
    // The suppressed address stayed failed, never sent.
    assert_eq!(job(&rig, stuck).await.0, "failed");
    assert_eq!(job(&rig, stuck).await.1, 2);
    assert_eq!(accepted_for(&rig, stuck), 0);
    let failed = api
        .get(
            &format!("/v1/campaigns/{campaign}/jobs?status=failed"),
            Some(token),
        )
        .await;
    let failed = failed.expect(200)["jobs"].as_array().unwrap().clone();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["recipient"], json!(stuck));

    let again = api
        .post(&retry, Some(token), &json!({ "status": "failed" }))
        .await;
    assert_eq!(
        again.expect(200),
        &json!({ "requeued": 0 }),
        "nothing new failed"
    );
    assert_eq!(rig.sink.stats().messages_accepted, 3);

    // A cancelled campaign's jobs cannot be retried (this one is completed
    // by now or about to be, which cannot be cancelled: another one is).
    let other = api.create_campaign(token, &[tenant.ips[0].0]).await;
    api.action_ok(token, other, "cancel").await;
    api.post(
        &format!("/v1/campaigns/{other}/retry"),
        Some(token),
        &json!({ "status": "failed" }),
    )
    .await
    .assert_error(409, "conflict");
    rig.shutdown().await;
}
