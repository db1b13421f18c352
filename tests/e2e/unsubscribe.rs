//! RFC 8058 one-click unsubscribe, end to end: after a campaign ran, the signed
//! link of a message shows a page on GET (changing nothing) and suppresses the
//! recipient for that tenant on POST, once (repeats are harmless). Forged or
//! altered tokens answer 404 and change nothing; a later import skips the address.

use std::time::Duration;

use penguin_engine::tracking;
use uuid::Uuid;

use crate::support::rig::Rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_click_unsubscribe_suppresses_the_recipient_once() {
    let rig = Rig::start(|_| {}).await;
    let scenario = rig
        .campaign_with_leads(&["ann@list.test", "bob@list.test"])
        .await;
    scenario.start().await.unwrap();
    rig.wait_until_done(&scenario, Duration::from_secs(30))
        .await;
    let tenant = scenario.tenants[0].id;
    let rows = rig
        .env
        .psql("SELECT j.id FROM send_jobs j JOIN leads l ON l.id = j.lead_id WHERE l.email = 'ann@list.test'")
        .await;
    let job: Uuid = rows[0].get(0);
    let config = &rig.node().config;
    let url = tracking::unsubscribe_url(
        &rig.node().public_url(),
        &config.tracking.secret,
        tenant,
        job,
    );
    let http = reqwest::Client::new();
    let suppressions = || async { rig.env.psql("SELECT email, reason FROM suppressions").await };

    // GET: a confirmation page naming the address; nothing changes.
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("ann@list.test"));
    assert!(suppressions().await.is_empty(), "GET must not unsubscribe");

    // Forged and altered tokens: 404, nothing changes.
    let forged = tracking::unsubscribe_url(
        &rig.node().public_url(),
        "not-the-secret-at-all",
        tenant,
        job,
    );
    let mut altered = url.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    for bad in [
        forged,
        String::from_utf8(altered).unwrap(),
        format!("{}/u/garbage", rig.node().public_url()),
    ] {
        let answer = http
            .post(&bad)
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "{bad}");
    }
    assert!(suppressions().await.is_empty());

    // POST (RFC 8058 one-click), twice.
    for _ in 0..2 {
        let answer = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let rows = suppressions().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "ann@list.test");
    assert_eq!(rows[0].get::<_, String>(1), "unsubscribe");
    let events = rig
        .env
        .psql("SELECT count(*) FROM delivery_events WHERE kind = 'unsubscribed'")
        .await;
    assert_eq!(
        events[0].get::<_, i64>(0),
        1,
        "one event, however often it is clicked"
    );

    // The tenant's next campaign skips the address at import.
    let body = rig
        .import_into_new_campaign(&scenario, &["ann@list.test", "bob@list.test"])
        .await;
    assert_eq!(
        (body["accepted"].as_u64(), body["suppressed"].as_u64()),
        (Some(1), Some(1))
    );
    rig.shutdown().await;
}
