//! RFC 8058 one-click unsubscribe, end to end: the message the sink received
//! carries `List-Unsubscribe: <https-or-loopback URL>` and `List-Unsubscribe-Post:
//! List-Unsubscribe=One-Click`; that link (as the recipient's mail client reads
//! it) shows a page on GET (changing nothing) and suppresses the recipient for
//! that tenant on POST, once (repeats are harmless). Forged or altered tokens
//! answer 404 and change nothing; a later import skips the address.

use std::time::Duration;

use penguin_engine::tracking;
use uuid::Uuid;

use crate::support::rig::Rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_click_unsubscribe_suppresses_the_recipient_once() {
    let rig = Rig::start(|_| {}).await;
    rig.sink.keep_bodies(true);
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

    // The link, as Ann's mail client reads it from the message she received.
    let received = rig
        .sink
        .messages()
        .into_iter()
        .find(|m| m.rcpt_to == ["ann@list.test"])
        .expect("the sink received Ann's message");
    let raw = rig.sink.body(received.seq).expect("the sink kept the body");
    let head = headers(&String::from_utf8(raw).expect("the message is UTF-8"));
    let post = header_values(&head, "List-Unsubscribe-Post");
    assert_eq!(post, ["List-Unsubscribe=One-Click"], "{head:#?}");
    let lists = header_values(&head, "List-Unsubscribe");
    assert_eq!(lists.len(), 1, "one List-Unsubscribe header: {head:#?}");
    let links = angle_bracketed(&lists[0]);
    let web: Vec<&String> = links.iter().filter(|l| !l.starts_with("mailto:")).collect();
    assert_eq!(web.len(), 1, "one web link: {}", lists[0]);
    // RFC 8058: the one-click URI is https; a loopback http base is the tests'.
    let base = rig
        .config()
        .tracking
        .base_url
        .trim_end_matches('/')
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let link = web[0];
    assert!(
        link.starts_with("https://") || link.starts_with(&format!("{base}/u/")),
        "an https (or loopback) link under tracking.base_url: {link}"
    );
    let token = link
        .strip_prefix(&format!("{base}/u/"))
        .unwrap_or_else(|| panic!("the link is {base}/u/<token>: {link}"));
    assert!(
        !token.is_empty() && !token.contains(['/', '?', '#', ' ']),
        "{link}"
    );
    // tracking.base_url stands for this node's public listener.
    let url = format!("{}/u/{token}", rig.node().public_url());
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

/// The header section of a raw message, unfolded (RFC 5322 §2.2.3), as
/// `(name, value)` pairs in order.
fn headers(raw: &str) -> Vec<(String, String)> {
    let (head, _) = raw.split_once("\r\n\r\n").expect("a header section");
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            let (_, value) = fields.last_mut().expect("a folded line follows a field");
            value.push_str(line);
            continue;
        }
        let (name, value) = line.split_once(':').expect("name: value");
        fields.push((name.to_owned(), value.trim_start().to_owned()));
    }
    fields
}

/// The values of every `name` field (names compare without case), trimmed.
fn header_values(fields: &[(String, String)], name: &str) -> Vec<String> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// The comma-separated `<URI>` items of a `List-Unsubscribe` value (RFC 2369),
/// checking that each item is enclosed in angle brackets.
fn angle_bracketed(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|item| {
            let item = item.trim();
            item.strip_prefix('<')
                .and_then(|i| i.strip_suffix('>'))
                .unwrap_or_else(|| panic!("an item in angle brackets: {value}"))
                .trim()
                .to_owned()
        })
        .collect()
}
