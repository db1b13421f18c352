//! An Ip actor killed mid-run is restarted by its supervisor and nothing is lost:
//! every lead still ends `sent` and reaches the sink; copies are bounded by the
//! SMTP transactions the dead actor had under way (its connections). The
//! restarted actor really delivers: its IP's count at the sink grows after the
//! restart by more than what the dead actor could still have had under way.

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
    let victim_ip: std::net::IpAddr = scenario.tenants[0].ips[0].1.parse().unwrap();
    let sent_by_victim = || {
        rig.sink
            .stats()
            .per_source_ip
            .get(&victim_ip)
            .copied()
            .unwrap_or(0)
    };
    let at_restart = sent_by_victim();

    rig.wait_until_done(&scenario, Duration::from_secs(180))
        .await;
    let extra = rig.check_delivered(&scenario).await;
    let in_flight_bound = rig.node().config.delivery.connections_per_ip as u64;
    assert!(
        extra <= in_flight_bound,
        "{extra} copies > {in_flight_bound} transactions in flight"
    );
    // The restarted actor carried traffic again: more than the transactions
    // the dead one may have finished after the restart was seen.
    let after = sent_by_victim();
    assert!(
        after > at_restart + in_flight_bound,
        "{victim_ip} sent {at_restart} before the restart and {after} in the end: \
         the restarted Ip actor did not deliver"
    );
    rig.shutdown().await;
}
