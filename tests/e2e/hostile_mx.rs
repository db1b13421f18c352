//! No SSRF through a recipient's DNS: recipient domains whose MX (or A fallback)
//! point at loopback, RFC 1918, link-local/metadata, IPv6 loopback or unique-local
//! addresses end `failed` — permanently, on their first attempt — with the refused
//! address in their reason, and no connection is ever opened: a sink listening on
//! the loopback address the MX names counts none. A domain routed by
//! `[[delivery.routes]]` to a loopback sink still delivers (the operator's route
//! is the exception).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use penguin_engine::dns::FakeResolver;
use penguin_engine::sink::{Sink, SinkConfig};

use crate::support::rig::{Rig, RigOptions};

/// The loopback address a hostile MX names; a sink listens there on port 25.
const TRAP: &str = "127.0.0.77";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mx_records_pointing_inside_are_refused_and_never_connected() {
    let trap = Sink::start(SinkConfig::new(SocketAddr::new(ip(TRAP), 25)))
        .await
        .expect("the trap sink listens on 127.0.0.77:25");
    let resolver = FakeResolver::new()
        .with_mx("loopback.test", &[(10, "mx.loopback.test")])
        .with_addresses("mx.loopback.test", &[ip(TRAP)])
        .with_mx("ten.test", &[(10, "mx.ten.test")])
        .with_addresses("mx.ten.test", &[ip("10.20.30.40")])
        .with_mx("home.test", &[(10, "mx.home.test")])
        .with_addresses("mx.home.test", &[ip("192.168.1.25")])
        .with_mx("metadata.test", &[(10, "mx.metadata.test")])
        .with_addresses("mx.metadata.test", &[ip("169.254.169.254")])
        .with_mx("v6loop.test", &[(10, "mx.v6loop.test")])
        .with_addresses("mx.v6loop.test", &[ip("::1")])
        .with_mx("ula.test", &[(10, "mx.ula.test")])
        .with_addresses("mx.ula.test", &[ip("fc00::25")])
        .with_mx("mapped.test", &[(10, "mx.mapped.test")])
        .with_addresses("mx.mapped.test", &[ip("::ffff:127.0.0.77")])
        // No MX at all: the domain's own A record is the implicit MX.
        .with_addresses("afallback.test", &[ip(TRAP)])
        // Every MX refused: the reason names each address.
        .with_mx("both.test", &[(10, "mx1.both.test"), (20, "mx2.both.test")])
        .with_addresses("mx1.both.test", &[ip("10.9.9.9")])
        .with_addresses("mx2.both.test", &[ip(TRAP)]);
    let options = RigOptions {
        resolver: Some(Arc::new(resolver)),
        routed_domains: Some(vec!["routed.test".into()]),
        ..RigOptions::default()
    };
    let rig = Rig::start_with(|_| {}, options).await;
    let hostile = [
        ("a@loopback.test", vec![TRAP]),
        ("b@ten.test", vec!["10.20.30.40"]),
        ("c@home.test", vec!["192.168.1.25"]),
        ("d@metadata.test", vec!["169.254.169.254"]),
        ("e@v6loop.test", vec!["::1"]),
        ("f@ula.test", vec!["fc00::25"]),
        ("g@mapped.test", vec!["::ffff:127.0.0.77"]),
        ("h@afallback.test", vec![TRAP]),
        ("i@both.test", vec!["10.9.9.9", TRAP]),
    ];
    let mut leads: Vec<&str> = hostile.iter().map(|(email, _)| *email).collect();
    leads.push("ok@routed.test");
    let scenario = rig.campaign_with_leads(&leads).await;
    scenario.start().await.unwrap();
    rig.wait_until_done(&scenario, Duration::from_secs(30))
        .await;

    let rows = rig
        .env
        .psql(
            "SELECT l.email, j.status, coalesce(j.last_reply, ''), j.attempts
             FROM send_jobs j JOIN leads l ON l.id = j.lead_id",
        )
        .await;
    assert_eq!(rows.len(), leads.len());
    for row in &rows {
        let (email, status, reply, attempts): (String, String, String, i32) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if email == "ok@routed.test" {
            assert_eq!(status, "sent", "the routed domain still delivers: {reply}");
            continue;
        }
        let (_, refused) = hostile
            .iter()
            .find(|(lead, _)| *lead == email)
            .expect("a known lead");
        assert_eq!(status, "failed", "{email}: {reply}");
        assert_eq!(attempts, 1, "{email} is not retried");
        assert!(reply.starts_with("refused:"), "{email}: {reply}");
        for address in refused {
            assert!(reply.contains(address), "{email}: {reply} names {address}");
        }
    }

    assert_eq!(
        trap.stats().connections,
        0,
        "nothing ever connected to the address a hostile MX named"
    );
    assert_eq!(rig.sink.stats().messages_accepted, 1);
    crate::support::wait_for("failed events", Duration::from_secs(10), || async {
        let rows = rig
            .env
            .psql("SELECT count(*) FROM delivery_events WHERE kind = 'failed' AND reply LIKE 'refused:%'")
            .await;
        (rows[0].get::<_, i64>(0) == hostile.len() as i64).then_some(())
    })
    .await;
    let metrics = rig.metrics().await;
    for range in ["loopback", "private", "cloud-metadata", "unique-local"] {
        assert!(
            metrics.contains(&format!(
                "penguin_delivery_refused_addresses_total{{range=\"{range}\"}}"
            )),
            "refusals counted by range ({range})"
        );
    }
    rig.shutdown().await;
    trap.shutdown().await;
}
