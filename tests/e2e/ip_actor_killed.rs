//! An Ip actor killed mid-run is restarted by its supervisor and nothing is lost:
//! every lead still ends `sent` and reaches the sink; copies are bounded by the
//! SMTP transactions the dead actor had under way (its connections).

use std::time::Duration;

use crate::support::rig::Rig;
use crate::support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_ip_actor_restarts_and_nothing_is_lost() {
    let rig = Rig::start(|_| {}).await;
    let scenario = rig
        .scenario(vec![vec!["127.0.0.2", "127.0.0.3", "127.0.0.4"]], 5_000)
        .await;
    let victim = scenario.tenants[0].ips[0].0;
    scenario.start().await.expect("start");
    rig.wait_for_sink(1_000, Duration::from_secs(60)).await;

    let engine = rig.node().engine();
    let before = engine.ip_actor(victim).expect("ip actor running");
    before.kill();
    let restarted = wait_for(
        "the ip actor to be restarted",
        Duration::from_secs(30),
        || async {
            engine
                .ip_actor(victim)
                .filter(|now| now.get_id() != before.get_id())
        },
    )
    .await;
    assert_ne!(restarted.get_id(), before.get_id());

    rig.wait_until_done(&scenario, Duration::from_secs(180))
        .await;
    let extra = rig.check_delivered(&scenario).await;
    let in_flight_bound = rig.node().config.delivery.connections_per_ip as u64;
    assert!(
        extra <= in_flight_bound,
        "{extra} copies > {in_flight_bound} transactions in flight"
    );
    // The restarted actor carried traffic again.
    let victim_ip: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    assert!(
        rig.sink
            .stats()
            .per_source_ip
            .get(&victim_ip)
            .copied()
            .unwrap_or(0)
            > 0
    );
    rig.shutdown().await;
}
