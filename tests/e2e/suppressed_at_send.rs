//! The suppression list is checked right before every send: addresses suppressed
//! after their leads were imported end `suppressed`, never reach the sink, and
//! leave a `suppressed` delivery event.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::rig::Rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn addresses_suppressed_after_import_are_never_sent() {
    let rig = Rig::start(|_| {}).await;
    let scenario = rig.scenario(vec![vec!["127.0.0.2"]], 200).await;
    let tenant = scenario.tenants[0].id;
    // Suppress every tenth lead after import (import-time skipping is separate).
    let client = rig.env.pg.get().await.unwrap();
    let suppressed: Vec<String> = (0..200)
        .step_by(10)
        .map(|n| format!("lead{n}@domain{}.test", n % 20))
        .collect();
    client
        .execute(
            "INSERT INTO suppressions (tenant_id, email, reason) SELECT $1, unnest($2::text[]), 'manual'",
            &[&tenant, &suppressed],
        )
        .await
        .unwrap();
    scenario.start().await.unwrap();
    rig.wait_until_done(&scenario, Duration::from_secs(60))
        .await;

    let progress = scenario.progress().await.unwrap();
    assert_eq!(
        progress.counts.get("suppressed"),
        Some(&20),
        "{:?}",
        progress.counts
    );
    assert_eq!(
        progress.counts.get("sent"),
        Some(&180),
        "{:?}",
        progress.counts
    );
    let received: HashSet<String> = rig
        .sink
        .messages()
        .into_iter()
        .flat_map(|m| m.rcpt_to)
        .collect();
    assert_eq!(received.len(), 180);
    for address in &suppressed {
        assert!(
            !received.contains(address),
            "{address} was sent despite its suppression"
        );
    }
    crate::support::wait_for("suppressed events", Duration::from_secs(10), || async {
        let rows = rig
            .env
            .psql("SELECT count(*) FROM delivery_events WHERE kind = 'suppressed'")
            .await;
        (rows[0].get::<_, i64>(0) == 20).then_some(())
    })
    .await;
    rig.shutdown().await;
}
