//! SIGTERM during a running campaign (README, "Operating"): a `penguin serve`
//! process stops in order by itself — stop leasing and feeding → stop popping
//! → drain the IPs (work not started returns to `pending`, SMTP under way
//! finishes) → flush job outcomes → release the tenant leases — and exits 0.
//!
//! Checked once it has exited: no job is left `sending`; every message the
//! sink received (each SMTP transaction under way at the signal finished, none
//! cut) is `sent` in Postgres with its Message-ID; every tenant lease in Redis
//! reads released. Then the node starts again and the campaign ends with every lead
//! delivered exactly once at the sink: nothing lost, no copy.

use std::collections::HashSet;
use std::time::Duration;

use penguin_engine::lease::{Leases, RELEASED};

use crate::support::cluster::{node_config, slow_smtp, tenant_per_ip};
use crate::support::node_process::ChildNode;
use crate::support::rig::Rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_campaign_stops_in_order_and_loses_nothing() {
    let mut rig = Rig::start(|config| {
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = 3_000;
        config.limits.ip_messages_per_second = 100;
        config.delivery.connections_per_ip = 2;
    })
    .await;
    // 50 ms per SMTP transaction: the signal meets transactions under way.
    slow_smtp(&rig, 50);
    let mut scenario = rig
        .scenario(tenant_per_ip(&["127.0.0.2", "127.0.0.3"]), 200)
        .await;
    // The campaign runs on the `penguin serve` process alone.
    rig.node.take().expect("the rig's node").shutdown().await;
    let mut node = ChildNode::start(&node_config(&rig, "node-b")).await;
    scenario.client = penguin::client::ApiClient::new(node.api_url());
    scenario.start().await.expect("campaigns start");
    rig.wait_for_sink(scenario.total / 3, Duration::from_secs(60))
        .await;

    let at_signal = rig.sink.stats();
    node.signal("TERM");
    let status = node.exit_status(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "SIGTERM: the node exited with {status}:\n{}",
        node.log_tail()
    );
    let at_exit = rig.sink.stats();
    eprintln!(
        "SIGTERM at {} of {} messages; {} received by the exit",
        at_signal.messages_accepted, scenario.total, at_exit.messages_accepted
    );
    assert!(
        at_exit.messages_accepted < scenario.total,
        "the campaign was over before the signal: nothing was under test"
    );
    // SMTP under way finished: every transaction the sink saw begin ended
    // with its message accepted.
    assert_eq!(
        at_exit.transactions_begun, at_exit.messages_accepted,
        "transactions cut by the shutdown"
    );
    // Outcomes flushed: nothing `sending`, and every message received is its
    // job's recorded outcome.
    let sending = rig.job_counts().await.get("sending").copied().unwrap_or(0);
    assert_eq!(sending, 0, "jobs left `sending` by the shutdown");
    let sent: HashSet<String> = rig
        .env
        .psql("SELECT message_id FROM send_jobs WHERE status = 'sent'")
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    let received: HashSet<String> = rig
        .sink
        .messages()
        .into_iter()
        .filter_map(|m| m.message_id)
        .collect();
    let unrecorded: Vec<&String> = received.difference(&sent).collect();
    assert!(
        unrecorded.is_empty(),
        "{} messages received without a `sent` outcome in Postgres: {unrecorded:?}",
        unrecorded.len()
    );
    assert_eq!(sent.len(), received.len(), "`sent` jobs the sink never saw");
    // Leases released (marked so, for any node to take at once), not left
    // to expire.
    let leases = Leases::new(rig.env.redis.clone());
    for tenant in &scenario.tenants {
        let partition = penguin_engine::partition::of(tenant.id, 512);
        let holder = leases.holder(partition).await.expect("lease holder");
        assert_eq!(
            holder.as_deref(),
            Some(RELEASED),
            "partition {partition} of tenant {} after the shutdown",
            tenant.id
        );
    }
    drop(node);

    // Back up: the rest of the campaign, each lead once.
    let node = ChildNode::start(&node_config(&rig, "node-b")).await;
    scenario.client = penguin::client::ApiClient::new(node.api_url());
    rig.wait_until_done(&scenario, Duration::from_secs(60))
        .await;
    rig.wait_until_quiet().await;
    let copies = rig.check_delivered(&scenario).await;
    assert_eq!(
        copies,
        0,
        "sent twice across the restart: {:?}…",
        &rig.sink.message_ids_seen_more_than_once()[..copies.min(5) as usize]
    );
    assert_eq!(rig.sink.stats().unique_message_ids, scenario.total);
    drop(node);
    rig.shutdown().await;
}
