//! API scenario: lead import as streamed `text/csv`. Counts are exact (accepted,
//! rejected with row and reason, suppressed) and the rows in Postgres match them,
//! including duplicates across the import's batches; a running campaign gets its
//! jobs; a bad header, a body over `api.max_import_bytes` or a foreign campaign
//! change nothing — even when earlier batches were already written.

use reqwest::Method;

use crate::support::TestEnv;
use crate::support::api::{ApiServer, count, rejected, snapshot};

/// `n` CSV rows `lead<i>@example.com,Lead<i>` (no header).
fn rows(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("lead{i}@example.com,Lead{i}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_imports_stream_in_batches_and_count_exactly() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    let path = format!("/v1/campaigns/{campaign}/leads");
    env.psql(&format!(
        "INSERT INTO suppressions (tenant_id, email, reason)
         VALUES ('{tenant}', 'blocked@example.com', 'unsubscribe')"
    ))
    .await;
    let csv = |body: String| {
        api.raw(
            Method::POST,
            &path,
            Some(&token),
            Some("text/csv; charset=utf-8"),
            Some(body.into_bytes()),
        )
    };

    // 2,500 good rows (three database batches), then trouble: a repeat of row 0
    // (another batch: the database tells), a bad address, a short row, a
    // suppressed address, and quoted cells.
    let mut body = format!("\u{feff}Email,first_name\r\n{}", rows(0, 2_500));
    body.push_str("LEAD0@example.com,Again\n");
    body.push_str("not-an-email,X\n");
    body.push_str("short@example.com\n");
    body.push_str("blocked@example.com,B\n");
    body.push_str("\"quoted@example.com\",\"Doe, \"\"Jo\"\"\"");
    let answer = csv(body).await;
    let body = answer.expect(200);
    assert_eq!(body["accepted"], 2_501, "{body:#}");
    assert_eq!(body["suppressed"], 1);
    let reasons = rejected(body);
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[0], (2_500, "duplicate".into()));
    assert_eq!(reasons[1].0, 2_501);
    assert!(reasons[1].1.starts_with("email "), "{reasons:?}");
    assert_eq!(reasons[2], (2_502, "expected 2 columns, found 1".into()));
    assert_eq!(body.get("rejected_truncated"), None);
    let leads = format!("SELECT count(*) FROM leads WHERE campaign_id = '{campaign}'");
    assert_eq!(count(&env, &leads).await, 2_501);
    let quoted = env
        .psql(&format!(
            "SELECT fields->>'first_name' FROM leads
             WHERE campaign_id = '{campaign}' AND email = 'quoted@example.com'"
        ))
        .await;
    assert_eq!(quoted[0].get::<_, String>(0), "Doe, \"Jo\"");

    // A second import: rows the campaign has are duplicates; a running campaign
    // gets jobs for the new ones only.
    assert_eq!(api.action_ok(&token, campaign, "start").await, "running");
    let answer = csv(format!("email,first_name\n{}", rows(2_400, 200))).await;
    let body = answer.expect(200);
    assert_eq!(body["accepted"], 100, "{body:#}");
    assert_eq!(rejected(body).len(), 100);
    let jobs = format!("SELECT count(*) FROM send_jobs WHERE campaign_id = '{campaign}'");
    assert_eq!(count(&env, &jobs).await, 2_601);

    // Refused imports change nothing.
    let before = snapshot(&env).await;
    for bad in [
        "first_name,company\nA,B\n".to_string(),
        String::new(),
        format!("email,email\n{}", rows(9_000, 10)),
    ] {
        csv(bad).await.assert_error(422, "invalid_request");
    }
    let (_, other_token) = api.create_tenant("globex").await;
    let before_foreign = snapshot(&env).await;
    api.raw(
        Method::POST,
        &path,
        Some(&other_token),
        Some("text/csv"),
        Some(format!("email\n{}", rows(9_000, 10)).into_bytes()),
    )
    .await
    .assert_error(404, "not_found");
    assert_eq!(snapshot(&env).await, before_foreign);
    assert_ne!(before, before_foreign, "the other tenant was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_csv_rolls_back_the_batches_already_written() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |config| config.api.max_import_bytes = 100_000).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let campaign = api.create_campaign(&token, &[ip]).await;
    let before = snapshot(&env).await;
    // ~33 bytes a row: 8,000 rows are ~270 kB, past the limit after a few batches.
    let body = format!("email,first_name\n{}", rows(0, 8_000));
    assert!(body.len() > 150_000);
    api.raw(
        Method::POST,
        &format!("/v1/campaigns/{campaign}/leads"),
        Some(&token),
        Some("text/csv"),
        Some(body.into_bytes()),
    )
    .await
    .assert_error(413, "payload_too_large");
    assert_eq!(snapshot(&env).await, before);
}
