//! Hostile input, trickling clients on lead imports: an import whose upload
//! falls below `api.import_min_bytes_per_sec` (over `api.import_rate_window_ms`)
//! is cut off with 408 `upload_too_slow` within about one window, and nothing of
//! it is stored — not even the full batch it had already written inside its
//! transaction. A tenant may run at most `api.max_concurrent_imports_per_tenant`
//! imports at once: one more answers 429 `too_many_imports` and changes
//! nothing, other tenants keep their own slots, and a slot comes back as soon as
//! an import ends, however it ends (a client that hangs up included).

use std::time::{Duration, Instant};

use crate::support::api::{ApiServer, count, leads, snapshot};
use crate::support::slow_upload::SlowUpload;
use crate::support::{TestEnv, wait_for};

/// `n` CSV rows `trickle<i>@example.com`, after the header.
fn csv_rows(n: usize) -> String {
    let mut text = String::from("email,first_name\n");
    for i in 0..n {
        text.push_str(&format!("trickle{i}@example.com,T{i}\n"));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trickling_import_is_cut_off_and_rolled_back() {
    let env = TestEnv::start().await;
    let window = Duration::from_millis(1_000);
    let server = ApiServer::start(&env, |config| {
        config.api.import_min_bytes_per_sec = 1_000;
        config.api.import_rate_window_ms = window.as_millis() as u64;
    })
    .await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    let before = snapshot(&env).await;

    // 3,000 rows at full speed (more than one 2,000-lead batch, so rows are
    // written inside the transaction), then one byte every 100 ms: 10 B/s.
    let fast = csv_rows(3_000);
    let path = format!("/v1/campaigns/{campaign}/leads");
    let mut upload = SlowUpload::open(
        &api.base,
        &path,
        &token,
        "text/csv",
        10_000_000,
        fast.as_bytes(),
    )
    .await;
    let trickle_started = Instant::now();
    let (answer, trickled) = upload
        .trickle_until_answered(b'x', Duration::from_millis(100), Duration::from_secs(30))
        .await;
    let cut_after = trickle_started.elapsed();
    assert_eq!(
        (answer.status, answer.code()),
        (408, "upload_too_slow"),
        "{:#}",
        answer.body
    );
    println!("trickle cut off after {cut_after:?} ({trickled} bytes trickled, window {window:?})");
    assert!(
        cut_after < window * 3,
        "cut off within about a window, not {cut_after:?}"
    );

    // Nothing of it stored, and nothing else changed.
    let stored = format!("SELECT count(*) FROM leads WHERE campaign_id = '{campaign}'");
    assert_eq!(count(&env, &stored).await, 0, "the import rolled back");
    assert_eq!(
        snapshot(&env).await,
        before,
        "a cut-off import changes nothing"
    );

    // The slot came back: a well-behaved import goes through at once.
    let ok = api.add_leads(&token, campaign, leads(5)).await;
    assert_eq!(ok.expect(200)["accepted"], 5);
    assert_eq!(count(&env, &stored).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_over_the_per_tenant_limit_get_429_and_change_nothing() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |config| {
        config.api.max_concurrent_imports_per_tenant = 2;
        // Long enough that the held imports are never cut off by the rate
        // check during this scenario.
        config.api.import_rate_window_ms = 60_000;
        config.api.import_min_bytes_per_sec = 1;
    })
    .await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let (other_tenant, other_token) = api.create_tenant("globex").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    let path = format!("/v1/campaigns/{campaign}/leads");

    // Two imports that never finish their body hold both slots (still short
    // of a first batch, they hold no database connection yet).
    let head = csv_rows(10);
    let mut held = Vec::new();
    for _ in 0..2 {
        let upload = SlowUpload::open(
            &api.base,
            &path,
            &token,
            "text/csv",
            1_000_000,
            head.as_bytes(),
        )
        .await;
        held.push(upload);
    }
    let slots = &server.limits.imports;
    wait_for("both imports running", Duration::from_secs(10), || async {
        (slots.running_for(tenant) == 2).then_some(())
    })
    .await;
    // Both stay open for the rest of the test, so a connection they held would
    // never come back; one the API used for a moment (a token lookup) does.
    wait_for(
        "no connection held by the two imports",
        Duration::from_secs(10),
        || async {
            let pool = env.pg.status();
            (pool.size == pool.available).then_some(())
        },
    )
    .await;
    let before = snapshot(&env).await;

    // A third, JSON or CSV: 429 before anything is read or opened.
    api.add_leads(&token, campaign, leads(3))
        .await
        .assert_error(429, "too_many_imports");
    let csv = Some(csv_rows(3).into_bytes());
    api.raw(
        reqwest::Method::POST,
        &path,
        Some(&token),
        Some("text/csv"),
        csv,
    )
    .await
    .assert_error(429, "too_many_imports");
    assert_eq!(
        snapshot(&env).await,
        before,
        "refused imports change nothing"
    );

    // Another tenant has slots of its own.
    let other_ip = api.add_ip(other_tenant, "127.0.0.3").await;
    let other_campaign = api.create_campaign(&other_token, &[other_ip]).await;
    api.add_leads(&other_token, other_campaign, leads(2))
        .await
        .expect(200);

    // A client hanging up ends its import: its slot comes back, its rows do not.
    drop(held.pop());
    wait_for(
        "the abandoned import's slot back",
        Duration::from_secs(10),
        || async { (slots.running_for(tenant) == 1).then_some(()) },
    )
    .await;
    let answer = api.add_leads(&token, campaign, leads(3)).await;
    assert_eq!(answer.expect(200)["accepted"], 3);
    let stored = format!("SELECT count(*) FROM leads WHERE campaign_id = '{campaign}'");
    assert_eq!(
        count(&env, &stored).await,
        3,
        "only the finished import's rows"
    );

    // The last held import is answered as soon as its body completes.
    let mut last = held.pop().expect("one held import");
    let rest = vec![b'\n'; 1_000_000 - head.len()];
    assert!(last.send(&rest).await, "the server still reads the body");
    let done = last.answer(Duration::from_secs(30)).await;
    assert_eq!(done.status, 200, "{:#}", done.body);
    assert_eq!(done.body["accepted"], 10, "{:#}", done.body);
    assert_eq!(slots.running_for(tenant), 0);
}
