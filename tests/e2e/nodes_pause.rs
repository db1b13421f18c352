//! Pause is prompt on every node (DESIGN.md §7.4): two nodes each send one
//! tenant's campaign; once `pause` has returned for both, no message of either
//! reaches the sink, while a second campaign of each tenant, on the same IPs and
//! so the same nodes, goes out in full (the nodes had every chance to send).
//! `resume` then completes both campaigns, nothing sent twice.

use std::time::Duration;

use crate::support::api::ApiClient;
use crate::support::cluster::{shares, shares_of, start_node};
use crate::support::rig::{Rig, start_other_campaign};
use crate::support::wait_for;

const LEADS: usize = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_holds_on_every_node_and_resume_completes_exactly_once() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.limits.ip_messages_per_second = 100;
    })
    .await;
    let api = ApiClient::new(&rig.node().api_url());
    let scenario = rig
        .scenario_on(
            vec![vec!["127.0.0.2"], vec!["127.0.0.3"]],
            LEADS,
            &["node-a", "node-b"],
            &["node-a", "node-b"],
        )
        .await;
    let node_b = start_node(&rig, "node-b").await;
    wait_for(
        "one tenant on each node",
        Duration::from_secs(30),
        || async {
            (shares(&api).await == shares_of(&[("node-a", 1), ("node-b", 1)])).then_some(())
        },
    )
    .await;
    let client = &scenario.client;
    scenario.start().await.expect("start");
    rig.wait_for_sink(300, Duration::from_secs(60)).await;

    for tenant in &scenario.tenants {
        let status = client
            .campaign_action(&tenant.token, tenant.campaign, "pause")
            .await
            .expect("pause");
        assert_eq!(status, "paused");
    }
    let at_pause = rig.sink.stats().messages_accepted;
    assert!(
        at_pause < 2 * LEADS as u64,
        "paused before the end ({at_pause})"
    );

    // A second campaign of each tenant, on its IPs: it must go out.
    let mut others = Vec::new();
    for (n, tenant) in scenario.tenants.iter().enumerate() {
        let from = format!("e2e-{}.test", n + 1);
        let other =
            start_other_campaign(client, tenant, &from, &format!("flow{n}.test"), 200).await;
        others.push((tenant.token.clone(), other));
    }
    for (token, other) in &others {
        wait_for(
            "the other campaign to finish",
            Duration::from_secs(60),
            || async { (client.count(token, *other, "sent").await.ok()? == 200).then_some(()) },
        )
        .await;
    }
    let paused_messages = rig
        .sink
        .messages()
        .iter()
        .filter(|m| m.rcpt_to.iter().all(|r| r.starts_with("lead")))
        .count() as u64;
    assert_eq!(
        paused_messages, at_pause,
        "no message of a paused campaign after pause returned, on either node"
    );

    for tenant in &scenario.tenants {
        let status = client
            .campaign_action(&tenant.token, tenant.campaign, "resume")
            .await
            .expect("resume");
        assert_eq!(status, "running");
    }
    rig.wait_until_done(&scenario, Duration::from_secs(120))
        .await;
    let stats = rig.sink.stats();
    assert_eq!(stats.messages_accepted, 2 * LEADS as u64 + 400);
    assert_eq!(stats.duplicate_messages, 0, "resume sends nothing twice");
    node_b.shutdown().await;
    rig.shutdown().await;
}
