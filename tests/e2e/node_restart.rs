//! A node that dies mid-SMTP leaves jobs `sending`. The node that next takes the
//! tenant's lease (here: the restarted node) returns them at once and delivers
//! them exactly once — without waiting for `queue.sending_timeout_ms`, which the
//! test configuration sets far beyond the test's deadline.

use std::time::Duration;

use crate::support::rig::Rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_left_sending_by_a_dead_node_are_delivered_after_takeover() {
    let mut rig = Rig::start(|_| {}).await;
    let scenario = rig
        .campaign_with_leads(&["a@crash.test", "b@crash.test", "c@crash.test"])
        .await;
    let tenant = &scenario.tenants[0];
    assert!(rig.node().config.queue.sending_timeout_ms >= 60_000);
    // The node stops; then the database is left as a node killed mid-SMTP leaves
    // it: the campaign running and its jobs claimed `sending` — two on the IP
    // (its restarted Ip actor returns those) and one whose IP is unknown (only the
    // lease takeover returns that one).
    let node = rig.node.take().expect("node");
    node.shutdown().await;
    let client = rig.env.pg.get().await.unwrap();
    client
        .execute(
            "UPDATE campaigns SET status = 'running', started_at = now()",
            &[],
        )
        .await
        .unwrap();
    let created = client
        .execute(
            "INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id, priority, status, ip_id, attempts, first_attempt_at)
             SELECT tenant_id, gen_random_uuid(), campaign_id, id, 100, 'sending',
                    CASE WHEN email = 'c@crash.test' THEN NULL ELSE $1::uuid END, 1, now() FROM leads",
            &[&tenant.ips[0].0],
        )
        .await
        .unwrap();
    assert_eq!(created, 3);
    drop(client);

    rig.restart_node().await;
    rig.wait_for_jobs("sent", 3, Duration::from_secs(30)).await;
    let stats = rig.sink.stats();
    assert_eq!((stats.messages_accepted, stats.duplicate_messages), (3, 0));
    rig.shutdown().await;
}
