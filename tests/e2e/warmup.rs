//! Warm-up (DESIGN.md §6): at each IP's own local midnight the engine judges the
//! day that ended — advance on a healthy, well-used day, hold on a quiet one, step
//! back on an unhealthy one, restart the ramp after a long idle spell — exactly
//! once per day across restarts, catching up days it missed; and it ends health
//! pauses when their time comes. The world (IPs, their usage and outcomes) is
//! seeded with SQL; only the engine clock moves.

mod world;

use penguin_engine::store::warmup::{Applied, apply};
use penguin_engine::warmup::{Decision, Verdict};

use self::world::{Day, NewIp, WAIT, World};
use crate::support::rig::series;
use crate::support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_well_used_day_advances_and_restores_the_rate_factor() {
    let w = World::start().await;
    // Day 2 of the ramp (20) at half rate: 10 allowed, 9 used (90 %).
    let ip = NewIp {
        warmup_day: 2,
        rate_factor: 0.5,
        ..NewIp::default()
    };
    let ip = w.add_ip(ip, &[Day::clean(0, 9)], "").await;
    let (today, midnight) = (w.local_day("UTC", 0).await, w.local_midnight("UTC").await);
    w.pass(midnight);

    let v = w.wait_verdict(ip, today).await;
    assert_eq!(
        (
            v.decision.as_str(),
            v.from_day,
            v.to_day,
            v.sent,
            v.allowance
        ),
        ("advance", 2, 3, 9, Some(10)),
        "{v:?}"
    );
    assert!(
        v.decided_at >= midnight,
        "judged before the day ended: {v:?}"
    );
    assert_eq!(w.ip_state(ip).await, (3, 1.0, "active".to_string()));
    // The node's own counter, decision by decision, is its history.
    let metrics = w.rig.metrics().await;
    for decision in ["advance", "hold", "step_back", "rewarm"] {
        let rows = w
            .rig
            .env
            .psql(&format!(
                "SELECT count(*) FROM warmup_history WHERE decision = '{decision}'"
            ))
            .await;
        let recorded = rows[0].get::<_, i64>(0) as f64;
        let name = format!("penguin_warmup_decisions_total{{decision=\"{decision}\"}}");
        assert_eq!(
            series(&metrics, &name).unwrap_or(0.0),
            recorded,
            "{name}:\n{metrics}"
        );
    }
    assert_eq!(
        series(
            &metrics,
            "penguin_warmup_decisions_total{decision=\"advance\"}"
        ),
        Some(1.0),
        "one day judged, an advance: {metrics}"
    );
    w.rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quiet_day_holds() {
    let w = World::start().await;
    let ip = NewIp {
        warmup_day: 2,
        ..NewIp::default()
    };
    let ip = w.add_ip(ip, &[Day::clean(0, 5)], "").await;
    let today = w.local_day("UTC", 0).await;
    w.pass(w.local_midnight("UTC").await);

    let v = w.wait_verdict(ip, today).await;
    assert_eq!((v.decision.as_str(), v.from_day, v.to_day), ("hold", 2, 2));
    assert!(v.reason.starts_with("sent 5 of 20 allowed"), "{v:?}");
    assert_eq!(w.ip_state(ip).await.0, 2);
    w.rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_day_with_too_many_bounces_steps_back() {
    let w = World::start().await;
    let ip = NewIp {
        warmup_day: 3,
        ..NewIp::default()
    };
    let bad_day = Day {
        days_ago: 0,
        reserved: 40,
        sent: 30,
        bounced: 10,
    };
    let ip = w.add_ip(ip, &[bad_day], "").await;
    let today = w.local_day("UTC", 0).await;
    w.pass(w.local_midnight("UTC").await);

    let v = w.wait_verdict(ip, today).await;
    assert_eq!(
        (v.decision.as_str(), v.from_day, v.to_day),
        ("step_back", 3, 2)
    );
    assert!(v.reason.contains("bounce rate 25.00%"), "{v:?}");
    assert_eq!(w.ip_state(ip).await.0, 2);
    w.rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ip_idle_for_a_month_restarts_its_ramp() {
    let w = World::start().await;
    // Day 10 of `conservative`; last sent 31 days ago; yesterday already judged.
    let ip = NewIp {
        schedule: Some("conservative"),
        warmup_day: 10,
        created: ":now - interval '40 days'",
        ..NewIp::default()
    };
    let judged_yesterday = "INSERT INTO warmup_history
            (tenant_id, ip_id, day, decision, from_day, to_day, sent, allowance, reason)
        SELECT tenant_id, id, (:now AT TIME ZONE 'UTC')::date - 1, 'hold', 10, 10, 0, 0, 'seeded'
        FROM smtp_ips WHERE id = :ip";
    let ip = w.add_ip(ip, &[Day::clean(31, 100)], judged_yesterday).await;
    let today = w.local_day("UTC", 0).await;
    w.pass(w.local_midnight("UTC").await);

    let v = w.wait_verdict(ip, today).await;
    assert_eq!(
        (v.decision.as_str(), v.from_day, v.to_day),
        ("rewarm", 10, 1)
    );
    assert!(v.reason.starts_with("idle for 31 days"), "{v:?}");
    assert_eq!(w.ip_state(ip).await.0, 1);
    assert_eq!(w.verdicts(ip).await.len(), 2, "only today was judged");
    w.rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_ip_is_judged_at_its_own_local_midnight() {
    let w = World::start().await;
    let zones = ["UTC", "Asia/Tokyo"];
    let mut ips = Vec::new();
    for (zone, address) in zones.iter().zip(["127.0.0.2", "127.0.0.3"]) {
        let ip = NewIp {
            address,
            timezone: zone,
            ..NewIp::default()
        };
        let id = w.add_ip(ip, &[Day::clean(0, 10)], "").await;
        let today = w.local_day(zone, 0).await;
        ips.push((id, today, w.local_midnight(zone).await));
    }
    // The zone whose midnight comes first is judged then, the other one later:
    // each verdict only once its own day has ended.
    ips.sort_by_key(|(_, _, midnight)| *midnight);
    for (ip, today, midnight) in ips {
        w.pass(midnight);
        let v = w.wait_verdict(ip, today).await;
        assert_eq!((v.decision.as_str(), v.to_day), ("advance", 2), "{v:?}");
        assert!(
            v.decided_at >= midnight,
            "judged at {} before its local midnight {midnight}",
            v.decided_at
        );
    }
    w.rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missed_days_are_caught_up_in_order_and_never_judged_twice() {
    let mut w = World::start().await;
    // Created three days ago and never judged (the engine was down): each day
    // used its whole allowance, so the IP climbs one day per missed day.
    let ip = NewIp {
        created: ":now - interval '3 days'",
        ..NewIp::default()
    };
    let days = [Day::clean(3, 10), Day::clean(2, 20), Day::clean(1, 40)];
    let ip = w.add_ip(ip, &days, "").await;
    let caught_up = wait_for("three verdicts", WAIT, || async {
        let verdicts = w.verdicts(ip).await;
        (verdicts.len() == 3).then_some(verdicts)
    })
    .await;
    let moves: Vec<(i32, i32)> = caught_up.iter().map(|v| (v.from_day, v.to_day)).collect();
    assert_eq!(moves, [(1, 2), (2, 3), (3, 4)]);
    assert_eq!(caught_up[0].day, w.local_day("UTC", 3).await);
    assert_eq!(w.ip_state(ip).await.0, 4);

    // A day already judged is never applied again, even with a fresh verdict.
    let again = Decision {
        verdict: Verdict::Advance,
        from_day: 4,
        to_day: 5,
        from_factor: 1.0,
        to_factor: 1.0,
        sent: 40,
        allowance: Some(40),
        reason: "judged twice".into(),
    };
    let yesterday = w.local_day("UTC", 1).await;
    let applied = apply(&w.rig.env.pg, w.tenant, ip, yesterday, &again, w.now)
        .await
        .unwrap();
    assert_eq!(applied, Applied::AlreadyJudged);

    // A restarted node re-reads everything; once it has judged a newcomer on the
    // same schedule (so its start-up pass is over), the first IP is untouched.
    w.rig.restart_node().await;
    let newcomer = NewIp {
        address: "127.0.0.3",
        created: ":now - interval '2 days'",
        ..NewIp::default()
    };
    let newcomer = w.add_ip(newcomer, &[], "").await;
    w.wait_verdict(newcomer, w.local_day("UTC", 2).await).await;
    assert_eq!(w.verdicts(ip).await, caught_up, "no day judged twice");
    assert_eq!(w.ip_state(ip).await.0, 4, "the day moved once per day");
    w.rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_health_pause_ends_when_its_time_comes() {
    let w = World::start().await;
    let paused = |hours: u32| {
        format!(
            "UPDATE smtp_ips SET status = 'paused', status_reason = 'bounce rate 12.00% >= 10.00%',
                 paused_until = :now + interval '{hours} hours' WHERE id = :ip"
        )
    };
    // Warm IPs (no schedule): their Warmup actor handles pauses too.
    let warm = |address| NewIp {
        address,
        schedule: None,
        ..NewIp::default()
    };
    let first = w.add_ip(warm("127.0.0.2"), &[], &paused(1)).await;
    let second = w.add_ip(warm("127.0.0.3"), &[], &paused(3)).await;

    w.pass(w.now + time::Duration::hours(1));
    wait_for("the first pause to end", WAIT, || async {
        let rows = w
            .rig
            .env
            .psql(&format!(
                "SELECT 1 FROM smtp_ips WHERE id = '{first}' AND status = 'active'
                   AND status_reason IS NULL AND paused_until IS NULL"
            ))
            .await;
        (!rows.is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        w.ip_state(second).await.2,
        "paused",
        "its pause has not ended"
    );

    w.pass(w.now + time::Duration::hours(3));
    wait_for("the second pause to end", WAIT, || async {
        (w.ip_state(second).await.2 == "active").then_some(())
    })
    .await;
    let metrics = w.rig.metrics().await;
    assert_eq!(
        series(&metrics, "penguin_ip_auto_resumed_total"),
        Some(2.0),
        "this node resumed both ips, once each: {metrics}"
    );
    w.rig.shutdown().await;
}
