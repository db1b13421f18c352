//! One dead endpoint does not slow another tenant. Tenant A has three webhooks
//! whose receiver never answers (requests hang for the whole test:
//! `timeout_ms` is a minute); tenant B has one that answers 200. Both run a
//! campaign on the same node. Counted, not timed: every message of both
//! campaigns is sent, and B's receiver gets every one of B's `sent` events,
//! while A's requests are still hanging — at most `tenant_concurrency` of
//! them, so A never holds the node's other slots.

use std::time::Duration;

use crate::support::api::ApiClient;
use crate::support::rig::Rig;
use crate::support::wait_for;
use crate::support::webhook_receiver::{Receiver, Reply, create_webhook, event_ids};

const LEADS: usize = 30;
const TENANT_CONCURRENCY: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_endpoint_of_one_tenant_does_not_delay_another() {
    let rig = Rig::start(|config| {
        config.webhooks.allow_hosts = vec!["127.0.0.1".into()];
        config.webhooks.poll_ms = 100;
        config.webhooks.timeout_ms = 60_000;
        config.webhooks.batch_size = 5;
        config.webhooks.concurrency = 4;
        config.webhooks.tenant_concurrency = TENANT_CONCURRENCY;
    })
    .await;
    let dead = Receiver::start().await;
    dead.answer(Reply::Hang);
    let live = Receiver::start().await;
    let scenario = rig
        .scenario(vec![vec!["127.0.0.2"], vec!["127.0.0.3"]], LEADS)
        .await;
    let (a, b) = (&scenario.tenants[0], &scenario.tenants[1]);
    let api = ApiClient::new(&rig.node().api_url());
    for _ in 0..3 {
        create_webhook(&api, &a.token, &dead.url(), &["sent"]).await;
    }
    create_webhook(&api, &b.token, &live.url(), &["sent"]).await;

    scenario.start().await.expect("campaigns start");
    rig.wait_until_done(&scenario, Duration::from_secs(60))
        .await;
    // Events are recorded in batches, after the jobs' outcomes.
    let b_sent = wait_for(
        "every sent event recorded",
        Duration::from_secs(30),
        || async {
            let a_sent = event_ids(&rig.env, a.id, &["sent"]).await;
            let b_sent = event_ids(&rig.env, b.id, &["sent"]).await;
            (a_sent.len() == LEADS && b_sent.len() == LEADS).then_some(b_sent)
        },
    )
    .await;
    wait_for(
        "every sent event of B at B's receiver",
        Duration::from_secs(30),
        || async { live.delivered_ids().is_superset(&b_sent).then_some(()) },
    )
    .await;
    let hanging = dead.hanging();
    assert!(hanging >= 1, "A's requests hang meanwhile");
    assert!(
        hanging <= TENANT_CONCURRENCY as usize,
        "{hanging} requests of A at once, over tenant_concurrency"
    );
    assert_eq!(dead.count(), hanging, "no request of A has been answered");
    let a_ids = dead.seen_ids();
    assert!(a_ids.is_disjoint(&b_sent), "B's events went to A");
    rig.shutdown().await;
}
