//! No webhook event is lost across a node kill. Two nodes, a tenant on each,
//! each tenant with a webhook of its own receiver. Node B's receiver does not
//! answer at first, so B holds claimed batches in flight (and more queued in
//! the outbox) when its process is killed with SIGKILL; the receiver then
//! answers 200. Node A takes B's tenant over once the lease expires, and once
//! the claims' leases pass, delivers them: every `sent` event of both tenants
//! reaches its receiver at least once, and no delivery stays undelivered.

use std::time::Duration;

use crate::support::api::ApiClient;
use crate::support::cluster::{node_config, shares, slow_smtp, tenant_per_ip};
use crate::support::node_process::NodeProcess;
use crate::support::quiet::{quiet_span, wait_until_quiet};
use crate::support::rig::Rig;
use crate::support::webhook_receiver::{Receiver, Reply, create_webhook, event_ids};
use crate::support::{wait_for, wait_for_showing};

const LEADS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_events_survive_a_node_kill() {
    let rig = Rig::start(|config| {
        config.node.id = "node-a".into();
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = 3_000;
        config.limits.ip_messages_per_second = 40;
        config.webhooks.allow_hosts = vec!["127.0.0.1".into()];
        config.webhooks.poll_ms = 100;
        config.webhooks.timeout_ms = 2_000;
        config.webhooks.batch_size = 5;
        config.webhooks.backoff_base_ms = 100;
        config.webhooks.backoff_max_ms = 500;
    })
    .await;
    slow_smtp(&rig, 20);
    let api = ApiClient::new(&rig.node().api_url());
    let scenario = rig
        .scenario_on(
            tenant_per_ip(&["127.0.0.2", "127.0.0.3"]),
            LEADS,
            &["node-a", "node-b"],
            &["node-a", "node-b"],
        )
        .await;
    let mut node_b = Some(NodeProcess::start(&node_config(&rig, "node-b")).await);
    wait_for("a tenant on each node", Duration::from_secs(30), || async {
        let shares = shares(&api).await;
        (shares.len() == 2 && shares.values().all(|n| *n == 1)).then_some(())
    })
    .await;
    let (a, b) = (&scenario.tenants[0], &scenario.tenants[1]);
    let receiver_a = Receiver::start().await;
    let receiver_b = Receiver::start().await;
    receiver_b.answer(Reply::Hang);
    create_webhook(&api, &a.token, &receiver_a.url(), &["sent"]).await;
    create_webhook(&api, &b.token, &receiver_b.url(), &["sent"]).await;
    scenario.start().await.expect("campaigns start");

    wait_for(
        "node B's webhook requests hanging, more events queued",
        Duration::from_secs(60),
        || async {
            let queued = event_ids(&rig.env, b.id, &["sent"]).await.len();
            (receiver_b.hanging() >= 1 && queued > 10).then_some(())
        },
    )
    .await;
    let node = node_b.take().expect("node B runs");
    node.signal("KILL");
    drop(node);
    receiver_b.answer(Reply::Status(200));

    rig.wait_until_done(&scenario, Duration::from_secs(120))
        .await;
    // Events are recorded in batches, after the jobs' outcomes: wait until
    // no more are (a killed node's unwritten batch is lost with it: the events
    // that were recorded are what must reach the receivers).
    wait_until_quiet(
        "the recorded events",
        quiet_span(rig.config()),
        Duration::from_secs(60),
        || async {
            let rows = rig.env.psql("SELECT count(*) FROM delivery_events").await;
            Some(rows[0].get::<_, i64>(0))
        },
    )
    .await;
    for (tenant, receiver) in [(a, &receiver_a), (b, &receiver_b)] {
        let sent = event_ids(&rig.env, tenant.id, &["sent"]).await;
        assert!(sent.len() >= LEADS / 2, "{} sent events", sent.len());
        wait_for_showing(
            "every sent event at its receiver",
            Duration::from_secs(60),
            || async {
                let missing: Vec<i64> = sent
                    .difference(&receiver.delivered_ids())
                    .copied()
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(missing)
                }
            },
        )
        .await;
    }
    let undelivered = rig
        .env
        .psql("SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'")
        .await;
    assert_eq!(
        undelivered[0].get::<_, i64>(0),
        0,
        "deliveries left undelivered"
    );
    // The batches node B had claimed when it died were sent again by node A.
    let retried = rig
        .env
        .psql(&format!(
            "SELECT count(*) FROM webhook_deliveries WHERE tenant_id = '{}' AND attempts >= 2",
            b.id
        ))
        .await;
    assert!(
        retried[0].get::<_, i64>(0) >= 1,
        "no batch claimed by node B was left to node A"
    );
    rig.shutdown().await;
}
