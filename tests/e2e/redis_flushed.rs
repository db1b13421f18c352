//! Redis is never the only copy: emptied (FLUSHALL) mid-run, the engine notices,
//! re-feeds every `queued` job from Postgres and completes the campaign with
//! nothing lost and nothing sent twice. Redis restarted (process killed) likewise.

use std::time::Duration;

use crate::support::rig::Rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flushall_mid_run_loses_nothing_and_duplicates_nothing() {
    let rig = Rig::start(|_| {}).await;
    let scenario = rig
        .scenario(vec![vec!["127.0.0.2", "127.0.0.3"]], 6_000)
        .await;
    scenario.start().await.expect("start");
    rig.wait_for_sink(1_500, Duration::from_secs(60)).await;
    rig.env.flush_redis().await;
    rig.wait_for_sink(3_500, Duration::from_secs(60)).await;
    rig.env.flush_redis().await;

    rig.wait_until_done(&scenario, Duration::from_secs(180))
        .await;
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
    let extra = rig.check_delivered(&scenario).await;
    assert_eq!(extra, 0, "a Redis restart must not cause duplicates");
    rig.shutdown().await;
}
