//! API scenario: the campaign lifecycle. start/pause/resume/cancel are idempotent,
//! refuse impossible transitions with 409 and change nothing then; start creates
//! exactly one job per lead; cancel cancels what has not reached SMTP; pause
//! returns only once no job of the campaign is `sending` (or reports `in_flight`
//! at its deadline); every change is published to the nodes.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::support::api::{
    ApiServer, campaign_mid_smtp, control_events, count, finish_smtp, leads, snapshot,
};
use crate::support::{TestEnv, wait_for};

/// How often `pause` looks whether the campaign's SMTP is done (`DRAIN_POLL`
/// in api/src/routes/campaigns.rs).
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// How many of those looks a pause must sit through while a job is `sending`.
const DRAIN_POLLS_HELD: u32 = 50;

#[tokio::test]
async fn transitions_are_idempotent_and_impossible_ones_are_409() {
    let env = TestEnv::start().await;
    // The cancels below meet a job left `sending` that nothing finishes: each
    // waits the drain deadline out (30 s by default) before it answers.
    let server = ApiServer::start(&env, |config| config.api.pause_drain_timeout_ms = 500).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    api.add_leads(&token, campaign, leads(3)).await.expect(200);
    let jobs = |status: &str| {
        format!(
            "SELECT count(*) FROM send_jobs WHERE campaign_id = '{campaign}' AND status = '{status}'"
        )
    };

    // Nothing but start and cancel from draft.
    let before = snapshot(&env).await;
    for action in ["resume", "pause"] {
        api.action(&token, campaign, action)
            .await
            .assert_error(409, "conflict");
    }
    api.action(&token, campaign, "restart")
        .await
        .assert_error(404, "not_found");
    assert_eq!(snapshot(&env).await, before);

    let mut events = control_events(&env).await;
    assert_eq!(api.action_ok(&token, campaign, "start").await, "running");
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event")
        .unwrap();
    assert_eq!(
        event,
        json!({ "kind": "campaign_changed", "tenant_id": tenant.to_string(),
                "campaign_id": campaign.to_string(), "status": "running" })
    );
    assert_eq!(count(&env, &jobs("pending")).await, 3);
    // Start twice: same answer, no second set of jobs.
    assert_eq!(api.action_ok(&token, campaign, "start").await, "running");
    assert_eq!(api.action_ok(&token, campaign, "resume").await, "running");
    assert_eq!(count(&env, &jobs("pending")).await, 3);
    let one_per_lead =
        format!("SELECT count(DISTINCT lead_id) FROM send_jobs WHERE campaign_id = '{campaign}'");
    assert_eq!(count(&env, &one_per_lead).await, 3);

    assert_eq!(api.action_ok(&token, campaign, "pause").await, "paused");
    assert_eq!(api.action_ok(&token, campaign, "pause").await, "paused");
    let before = snapshot(&env).await;
    api.action(&token, campaign, "start")
        .await
        .assert_error(409, "conflict");
    assert_eq!(snapshot(&env).await, before);
    assert_eq!(api.action_ok(&token, campaign, "resume").await, "running");
    assert_eq!(api.action_ok(&token, campaign, "resume").await, "running");
    let shown = api.campaign(&token, campaign).await;
    assert_eq!(shown.expect(200)["status"], "running");

    // Cancel: what has not reached SMTP is cancelled, an attempt under way is not.
    env.psql(&format!(
        "UPDATE send_jobs SET status = 'sending' WHERE id = (
             SELECT id FROM send_jobs WHERE campaign_id = '{campaign}' LIMIT 1)"
    ))
    .await;
    env.psql(&format!(
        "UPDATE send_jobs SET status = 'queued' WHERE id = (
             SELECT id FROM send_jobs WHERE campaign_id = '{campaign}' AND status = 'pending' LIMIT 1)"
    ))
    .await;
    assert_eq!(api.action_ok(&token, campaign, "cancel").await, "cancelled");
    assert_eq!(api.action_ok(&token, campaign, "cancel").await, "cancelled");
    assert_eq!(count(&env, &jobs("cancelled")).await, 2);
    assert_eq!(count(&env, &jobs("sending")).await, 1);
    let before = snapshot(&env).await;
    for action in ["start", "pause", "resume"] {
        api.action(&token, campaign, action)
            .await
            .assert_error(409, "conflict");
    }
    assert_eq!(snapshot(&env).await, before);

    // A campaign without leads may start; a draft may be cancelled.
    let empty = api.create_campaign(&token, &[ip]).await;
    assert_eq!(api.action_ok(&token, empty, "start").await, "running");
    let draft = api.create_campaign(&token, &[ip]).await;
    assert_eq!(api.action_ok(&token, draft, "cancel").await, "cancelled");
    // A completed campaign cannot be cancelled.
    env.psql(&format!(
        "UPDATE campaigns SET status = 'completed' WHERE id = '{empty}'"
    ))
    .await;
    api.action(&token, empty, "cancel")
        .await
        .assert_error(409, "conflict");
}

#[tokio::test]
async fn pause_returns_only_when_no_job_is_sending() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |config| config.api.pause_drain_timeout_ms = 30_000).await;
    let api = server.api.clone();
    // An IP actor claimed one job and is in the middle of its SMTP transaction.
    let (token, campaign) = campaign_mid_smtp(&api, &env).await;

    let mut pausing = {
        let api = api.clone();
        let token = token.clone();
        tokio::spawn(async move { api.action(&token, campaign, "pause").await })
    };
    let paused =
        format!("SELECT count(*) FROM campaigns WHERE id = '{campaign}' AND status = 'paused'");
    wait_for("the pause to commit", Duration::from_secs(10), || async {
        (count(&env, &paused).await == 1).then_some(())
    })
    .await;
    // Committed, but a job is still `sending`: pause does not return — not at
    // one instant but at every check while the SMTP is held open, for many of
    // its drain looks.
    let held = Instant::now();
    let early = tokio::time::timeout(DRAIN_POLL * DRAIN_POLLS_HELD, &mut pausing).await;
    assert!(
        early.is_err(),
        "pause returned while a job was sending, {:?} after the pause committed",
        held.elapsed()
    );

    // The attempt ends; pause returns, with nothing in flight.
    finish_smtp(&env, campaign).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), pausing)
        .await
        .expect("pause returns once nothing is sending")
        .unwrap();
    assert_eq!(
        answer.expect(200),
        &json!({ "id": campaign.to_string(), "status": "paused" })
    );
}

#[tokio::test]
async fn pause_reports_attempts_still_in_flight_at_its_deadline() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |config| config.api.pause_drain_timeout_ms = 200).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    api.add_leads(&token, campaign, leads(3)).await.expect(200);
    api.action_ok(&token, campaign, "start").await;
    env.psql(&format!(
        "UPDATE send_jobs SET status = 'sending' WHERE campaign_id = '{campaign}'"
    ))
    .await;

    let answer = api.action(&token, campaign, "pause").await;
    assert_eq!(
        answer.expect(200),
        &json!({ "id": campaign.to_string(), "status": "paused", "in_flight": 3 })
    );
}
