//! Hostile input, Postgres pool starvation: the control API draws from a pool of
//! its own (`database.api_max_connections`), apart from the engine's
//! (`database.max_connections`), so no number of API requests can stop sending.
//! Here lead imports that wrote a first batch and then stall hold every API
//! connection (the minimum upload rate is off, so nothing frees them) while a
//! campaign sends: every lead still reaches the sink exactly once during the
//! starvation, and API callers past the pool get a clear 503 `unavailable`
//! ("database busy") after `database.acquire_timeout_ms` rather than hanging.
//! Once the holders hang up, the API answers again and their imports left no
//! lead.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::api::{Answer, ApiClient};
use crate::support::rig::Rig;
use crate::support::slow_upload::SlowUpload;
use crate::support::{admin_token, wait_for};

const LEADS: usize = 800;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_starved_api_pool_never_stops_sending() {
    let acquire = Duration::from_millis(1_000);
    let rig = Rig::start(|config| {
        config.database.api_max_connections = 2;
        config.database.acquire_timeout_ms = acquire.as_millis() as u64;
        config.api.max_concurrent_imports_per_tenant = 8;
        config.api.import_min_bytes_per_sec = 0;
        // Slow enough that sending spans the starvation: about 8 s.
        config.limits.ip_messages_per_second = 100;
    })
    .await;
    let scenario = rig.scenario(vec![vec!["127.0.0.2"]], LEADS).await;
    let tenant = &scenario.tenants[0];
    let base = rig.node().api_url();
    let api = ApiClient::new(&base);
    let body = json!({
        "name": "holders", "from": "hello@e2e-1.test", "subject": "Hi", "text": "Hello",
        "ip_ids": [tenant.ips[0].0.to_string()],
    });
    let holder_campaign = scenario
        .client
        .create_campaign(&tenant.token, &body)
        .await
        .expect("a campaign for the holders");
    scenario.start().await.expect("start");

    // Two imports that send a first batch of leads, then stall without ever
    // finishing their body: each then holds a connection and its transaction.
    let path = format!("/v1/campaigns/{holder_campaign}/leads");
    let mut first = String::from("email\n");
    for i in 0..2_500 {
        first.push_str(&format!("held{i}@example.com\n"));
    }
    let mut holders = Vec::new();
    for _ in 0..2 {
        let upload = SlowUpload::open(
            &base,
            &path,
            &tenant.token,
            "text/csv",
            1 << 20,
            first.as_bytes(),
        );
        holders.push(upload.await);
    }
    let campaign_path = format!("/v1/campaigns/{}", tenant.campaign);
    wait_for("the API pool held", Duration::from_secs(20), || async {
        let answer = api.get(&campaign_path, Some(&tenant.token)).await;
        (answer.status == 503).then_some(())
    })
    .await;
    let at_starved = rig.sink.stats().messages_accepted;
    assert!(
        at_starved < LEADS as u64,
        "the campaign was still sending when the pool ran dry ({at_starved})"
    );

    // Callers past the pool: a clear 503 after the acquire timeout, no hang.
    let started = Instant::now();
    let calls = (0..30).map(|i| {
        let api = &api;
        let (token, path) = match i % 3 {
            0 => (tenant.token.as_str(), campaign_path.clone()),
            1 => (admin_token(), "/v1/ips".to_string()),
            _ => (tenant.token.as_str(), "/v1/suppressions".to_string()),
        };
        async move {
            let sent = Instant::now();
            let answer: Answer = api.get(&path, Some(token)).await;
            (answer, sent.elapsed())
        }
    });
    let answers = futures::future::join_all(calls).await;
    for (answer, took) in &answers {
        answer.assert_error(503, "unavailable");
        assert!(answer.message().contains("busy"), "{:#}", answer.body);
        assert!(
            *took >= acquire - Duration::from_millis(100) && *took < acquire * 3,
            "answered after {took:?}, expected about {acquire:?}"
        );
    }
    println!(
        "30 callers past the pool answered 503 in {:?} (at starvation: {at_starved}/{LEADS} sent)",
        started.elapsed()
    );

    // Every lead goes out while the API stays starved.
    rig.wait_for_sink(LEADS as u64, Duration::from_secs(90))
        .await;
    api.get(&campaign_path, Some(&tenant.token))
        .await
        .assert_error(503, "unavailable");
    println!(
        "all {LEADS} delivered under starvation ({} after it began)",
        LEADS as u64 - at_starved
    );

    // The holders hang up: the API answers again, and they stored nothing.
    drop(holders);
    wait_for(
        "the API answering again",
        Duration::from_secs(20),
        || async {
            let answer = api.get(&campaign_path, Some(&tenant.token)).await;
            (answer.status == 200).then_some(())
        },
    )
    .await;
    rig.wait_for_jobs("sent", LEADS as i64, Duration::from_secs(30))
        .await;
    assert_eq!(rig.check_delivered(&scenario).await, 0, "no duplicates");
    let held = format!("SELECT count(*) FROM leads WHERE campaign_id = '{holder_campaign}'");
    assert_eq!(crate::support::api::count(&rig.env, &held).await, 0);
    rig.shutdown().await;
}
