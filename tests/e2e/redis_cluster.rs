//! The engine on a real Redis Cluster (`[redis] cluster`): three masters on
//! loopback ports (`support::redis_cluster`), every node of the scenario
//! configured with them as seeds. The scenarios the single-server suite proves
//! hold here too — delivery exactly once, pause and resume, Redis emptied on
//! every master mid-run, nodes killed and their partitions taken over — and one
//! only a cluster has: each master restarted in turn mid-run (its slots' keys
//! gone, its clients cut, the cluster briefly down), with nothing lost and
//! nothing sent twice. And the control channel: a notification published
//! through the cluster reaches a subscriber on every master.
//!
//! Every pipeline and script keeps to one slot (a tenant's keys share
//! `{t:<tenant>}`, the leases and node records `{cluster}`); a command that
//! did not would fail here with CROSSSLOT.

use std::time::Duration;

use crate::support::rig::{Rig, RigOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_is_exactly_once_on_a_redis_cluster() {
    crate::delivery_exactly_once::two_tenants_three_ips(true, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_and_resume_hold_on_a_redis_cluster() {
    crate::pause_resume::pause_and_resume(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flushing_every_master_twice_loses_nothing() {
    crate::redis_flushed::flushed_twice(true, 2_400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_killed_on_a_redis_cluster_lose_nothing() {
    crate::nodes_killed::kill_and_restart(true, 200, 2).await;
}

/// Each master, in turn, is killed and restarted empty while a campaign runs:
/// the tenant's lists, its in-flight set, the IP counters, the leases and the
/// node records each live on one of them. Every lead arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_master_restarted_mid_run_loses_nothing() {
    let rig = Rig::start_with(|_| {}, RigOptions::on_redis(true)).await;
    assert!(rig.env.redis.is_cluster());
    let leads = 3_000u64;
    let scenario = rig
        .scenario(vec![vec!["127.0.0.2", "127.0.0.3"]], leads as usize)
        .await;
    scenario.start().await.expect("start");
    for master in 0..3 {
        rig.wait_for_sink(leads * (master as u64 + 1) / 5, Duration::from_secs(90))
            .await;
        rig.env.redis_cluster().restart_master(master).await;
    }
    rig.wait_until_done(&scenario, Duration::from_secs(180))
        .await;
    rig.wait_until_quiet().await;
    let extra = rig.check_delivered(&scenario).await;
    assert_eq!(extra, 0, "a master restart must not cause duplicates");
    rig.shutdown().await;
}

/// The control channel on a cluster: a notification the API publishes through
/// the cluster connection reaches a subscriber on every master (a node
/// subscribes on one seed, whichever answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_notification_reaches_every_master() {
    use futures::StreamExt;
    use penguin_engine::control::{self, CHANNEL, ControlEvent};

    let env = crate::support::TestEnv::start_on_cluster().await;
    let mut streams = Vec::new();
    for seed in &env.config.redis.cluster {
        let client = redis::Client::open(seed.as_str()).expect("seed url");
        let mut pubsub = client.get_async_pubsub().await.expect("subscriber");
        pubsub.subscribe(CHANNEL).await.expect("subscribe");
        streams.push(pubsub.into_on_message());
    }
    let event = ControlEvent::TenantChanged {
        tenant_id: uuid::Uuid::new_v4(),
    };
    control::publish(&env.redis, &event)
        .await
        .expect("publish through the cluster");
    for (seed, stream) in env.config.redis.cluster.iter().zip(&mut streams) {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("nothing reached the subscriber on {seed}"))
            .expect("a message");
        let text: String = message.get_payload().expect("text");
        assert_eq!(
            ControlEvent::from_json(&text),
            Some(event.clone()),
            "{seed}"
        );
    }
}
