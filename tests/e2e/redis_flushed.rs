//! Redis is never the only copy: emptied (FLUSHALL) mid-run, the engine notices,
//! re-feeds every `queued` job from Postgres and completes the campaign with
//! nothing lost and nothing sent twice. Redis restarted (process killed) likewise.
//! A job whose stale copy sits in Redis next to its re-fed one is sent once.
//! Each scenario judges the sink only once it stayed quiet (`Rig::wait_until_quiet`),
//! so a late second copy counts.

use std::time::Duration;

use penguin_engine::payload::{JobPayload, JobV1};
use penguin_engine::queue::RedisQueue;
use penguin_engine::store::campaigns;

use crate::support::rig::{Rig, RigOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flushall_mid_run_loses_nothing_and_duplicates_nothing() {
    flushed_twice(false, 6_000).await;
}

/// `leads` for one tenant, Redis emptied (on every master of a cluster) after
/// a quarter and again after a bit over half of them were received.
pub(crate) async fn flushed_twice(redis_cluster: bool, leads: u64) {
    let rig = Rig::start_with(|_| {}, RigOptions::on_redis(redis_cluster)).await;
    let scenario = rig
        .scenario(vec![vec!["127.0.0.2", "127.0.0.3"]], leads as usize)
        .await;
    scenario.start().await.expect("start");
    rig.wait_for_sink(leads / 4, Duration::from_secs(60)).await;
    rig.env.flush_redis().await;
    rig.wait_for_sink(leads * 7 / 12, Duration::from_secs(60))
        .await;
    rig.env.flush_redis().await;

    rig.wait_until_done(&scenario, Duration::from_secs(180))
        .await;
    rig.wait_until_quiet().await;
    let extra = rig.check_delivered(&scenario).await;
    assert_eq!(extra, 0, "losing Redis must not cause duplicates");
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restart_mid_run_loses_nothing() {
    let rig = Rig::start(|_| {}).await;
    let scenario = rig.scenario(vec![vec!["127.0.0.2"]], 3_000).await;
    scenario.start().await.expect("start");
    rig.wait_for_sink(800, Duration::from_secs(60)).await;
    rig.env.restart_redis().await;

    rig.wait_until_done(&scenario, Duration::from_secs(180))
        .await;
    rig.wait_until_quiet().await;
    let extra = rig.check_delivered(&scenario).await;
    assert_eq!(extra, 0, "a Redis restart must not cause duplicates");
    rig.shutdown().await;
}

/// After Redis lost state, a popped-but-unclaimed copy of a job and its re-fed copy
/// can reach the same IP in one batch. Postgres claims the job once; the Ip actor
/// must send it once. Here, with the node stopped, every job of a started campaign
/// is put in Redis twice, side by side; then the node starts and works them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_twice_in_redis_is_sent_once() {
    let mut rig = Rig::start(|_| {}).await;
    let scenario = rig.scenario(vec![vec!["127.0.0.2"]], 300).await;
    let run = &scenario.tenants[0];
    let tenant = run.id;
    rig.node.take().expect("node").shutdown().await;

    let mut client = rig.env.pg.get().await.expect("pg");
    let tx = penguin_engine::db::tenant_transaction(&mut client, tenant)
        .await
        .expect("tenant transaction");
    campaigns::start_campaign(&tx, tenant, run.campaign, None)
        .await
        .expect("start the campaign in postgres");
    tx.commit().await.expect("commit the start");
    drop(client);
    let queue = RedisQueue::new(rig.env.redis.clone());
    // Redis "holds" this tenant's queue, so nothing re-feeds the queued jobs.
    queue.mark_live(tenant).await.expect("mark live");
    let client = rig.env.pg.get().await.expect("pg");
    let rows = client
        .query(
            "UPDATE send_jobs j SET status = 'queued', queued_at = now(), updated_at = now()
             FROM leads l
             WHERE j.tenant_id = $1 AND j.status = 'pending'
               AND l.tenant_id = j.tenant_id AND l.id = j.lead_id
             RETURNING j.id, j.campaign_id, j.priority, j.attempts, l.email, l.fields::text,
                       (extract(epoch FROM j.run_at) * 1000)::int8",
            &[&tenant],
        )
        .await
        .expect("queue the jobs");
    assert_eq!(rows.len(), 300);
    let mut copies = Vec::new();
    for row in &rows {
        let payload = JobPayload::V1(JobV1 {
            job_id: row.get(0),
            tenant_id: tenant,
            campaign_id: row.get(1),
            priority: row.get(2),
            attempts: row.get(3),
            recipient: row.get(4),
            fields_json: row.get(5),
            due_ms: row.get(6),
        });
        let raw = payload.encode().expect("encode");
        copies.push((payload.job().band(), raw.clone()));
        copies.push((payload.job().band(), raw));
    }
    queue.push(tenant, &copies).await.expect("push both copies");

    rig.restart_node().await;
    rig.wait_for_jobs("sent", 300, Duration::from_secs(120))
        .await;
    // Every job `sent` is not the end: a second copy could still be on its way.
    rig.wait_until_quiet().await;
    let extra = rig.check_delivered(&scenario).await;
    assert_eq!(extra, 0, "a job in Redis twice must be sent once");
    assert_eq!(rig.sink.stats().messages_accepted, 300);
    rig.shutdown().await;
}
