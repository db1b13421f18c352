//! Pause is prompt and resume is exact: once `pause` returns, no message of that
//! campaign reaches the sink, while another campaign of the same tenant keeps
//! flowing (that is how the test knows the engine had every chance to send);
//! `resume` completes the campaign with no duplicates.

use std::time::Duration;

use crate::support::rig::{Rig, RigOptions, start_other_campaign};
use crate::support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_message_after_pause_returns_and_resume_completes_exactly_once() {
    pause_and_resume(false).await;
}

/// The scenario, on one Redis or on a Redis Cluster.
pub(crate) async fn pause_and_resume(redis_cluster: bool) {
    let rig = Rig::start_with(|_| {}, RigOptions::on_redis(redis_cluster)).await;
    let scenario = rig
        .scenario(vec![vec!["127.0.0.2", "127.0.0.3"]], 4_000)
        .await;
    let tenant = &scenario.tenants[0];
    let client = &scenario.client;
    scenario.start().await.expect("start");
    rig.wait_for_sink(400, Duration::from_secs(60)).await;

    let status = client
        .campaign_action(&tenant.token, tenant.campaign, "pause")
        .await
        .expect("pause");
    assert_eq!(status, "paused");
    let at_pause = rig.sink.stats().messages_accepted;
    assert!(at_pause < 4_000, "paused before the end ({at_pause})");
    // Idempotent.
    assert_eq!(
        client
            .campaign_action(&tenant.token, tenant.campaign, "pause")
            .await
            .unwrap(),
        "paused"
    );

    // A second campaign of the same tenant on the same IPs must still go out.
    let other = start_other_campaign(client, tenant, "e2e-1.test", "flow.test", 300).await;
    wait_for(
        "the other campaign to finish",
        Duration::from_secs(60),
        || async { (client.count(&tenant.token, other, "sent").await.ok()? == 300).then_some(()) },
    )
    .await;

    let paused_messages = rig
        .sink
        .messages()
        .iter()
        .filter(|m| m.rcpt_to.iter().all(|r| r.starts_with("lead")))
        .count() as u64;
    assert_eq!(
        paused_messages, at_pause,
        "no message of the paused campaign after pause returned"
    );
    let body = client
        .campaign(&tenant.token, tenant.campaign)
        .await
        .unwrap();
    assert_eq!(body["status"], "paused");
    assert_eq!(body["counts"]["sending"], 0);

    assert_eq!(
        client
            .campaign_action(&tenant.token, tenant.campaign, "resume")
            .await
            .unwrap(),
        "running"
    );
    wait_for(
        "the paused campaign to finish",
        Duration::from_secs(120),
        || async {
            (client
                .count(&tenant.token, tenant.campaign, "sent")
                .await
                .ok()?
                == 4_000)
                .then_some(())
        },
    )
    .await;
    let stats = rig.sink.stats();
    assert_eq!(stats.messages_accepted, 4_300);
    assert_eq!(stats.duplicate_messages, 0, "resume sends nothing twice");
    assert_eq!(stats.unique_message_ids, 4_300);
    rig.shutdown().await;
}
