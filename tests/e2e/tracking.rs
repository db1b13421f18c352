//! Open and click tracking, end to end: a campaign with an HTML body goes through
//! the loopback sink; the received message's HTML part carries the open pixel and
//! click redirects (the text part stays as written). The pixel answers a GIF and
//! records one `open`; each link answers 302 to its exact original URL and records
//! one `click`; an altered token, or a token with another link's or a foreign URL,
//! is refused and records nothing. The events show in the campaign's event list.

use std::time::Duration;

use penguin_engine::tracking;
use serde_json::{Value, json};

use crate::support::rig::Rig;
use crate::support::wait_for;

const OFFER: &str = "https://shop.example.com/offer?id=5&ref=mail";
const BLOG: &str = "http://blog.example.org/post/1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pixel_and_links_record_opens_and_clicks() {
    let rig = Rig::start(|_| {}).await;
    rig.sink.keep_bodies(true);
    let scenario = rig.scenario(vec![vec!["127.0.0.2"]], 0).await;
    let tenant = &scenario.tenants[0];
    let client = &scenario.client;
    let campaign = client
        .create_campaign(
            &tenant.token,
            &json!({
                "name": "tracked", "from": "hello@e2e-1.test", "subject": "Hi {{first_name}}",
                "text": "Hello {{first_name}}, the offer: https://shop.example.com/offer?id=5\n",
                "html": "<html><body><p>Hello {{first_name}}</p>\
                         <p><a href=\"https://shop.example.com/offer?id=5&amp;ref=mail\">offer</a>\
                         <a href='http://blog.example.org/post/1'>blog</a>\
                         <a href=\"mailto:hello@e2e-1.test\">write</a></p></body></html>",
                "ip_ids": [tenant.ips[0].0.to_string()],
            }),
        )
        .await
        .expect("campaign created");
    let lead = json!({"email": "ann@list.test", "fields": {"first_name": "Ann"}});
    client
        .add_leads(&tenant.token, campaign, &[lead], 10)
        .await
        .expect("lead added");
    client
        .campaign_action(&tenant.token, campaign, "start")
        .await
        .expect("started");
    rig.wait_for_sink(1, Duration::from_secs(30)).await;

    // What the recipient got.
    let received = rig.sink.messages().remove(0);
    let raw = rig.sink.body(received.seq).expect("the sink kept the body");
    let raw = String::from_utf8(raw).expect("the message is UTF-8");
    let text = mime_part(&raw, "text/plain");
    let html = mime_part(&raw, "text/html");
    assert!(!text.contains("/t/"), "text part untouched: {text}");
    assert!(
        text.contains("https://shop.example.com/offer?id=5"),
        "{text}"
    );
    let base = rig
        .config()
        .tracking
        .base_url
        .trim_end_matches('/')
        .to_owned();
    let pixel = attribute_values(&html, "src=\"");
    assert_eq!(pixel.len(), 1, "{html}");
    assert!(pixel[0].starts_with(&format!("{base}/t/o/")), "{html}");
    assert!(
        html.contains("width=\"1\" height=\"1\" alt=\"\"></body>"),
        "{html}"
    );
    let mut links = attribute_values(&html, "href=\"");
    links.extend(attribute_values(&html, "href='"));
    assert_eq!(links.len(), 3, "{html}");
    assert!(links.contains(&"mailto:hello@e2e-1.test".to_owned()));
    let clicks: Vec<&String> = links
        .iter()
        .filter(|l| l.starts_with(&format!("{base}/t/c/")))
        .collect();
    assert_eq!(clicks.len(), 2, "both web links are tracked: {links:?}");
    assert!(!html.contains("shop.example.com") && !html.contains("blog.example.org"));

    // The links are under the configured base URL; this node's public listener
    // answers them here.
    let public = rig.node().public_url();
    let here = |url: &str| url.replacen(&base, &public, 1);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let tracked = || async {
        rig.env
            .psql(
                "SELECT kind, coalesce(reply, '') FROM delivery_events
                 WHERE kind IN ('open', 'click') ORDER BY id",
            )
            .await
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
    };

    // The pixel: a GIF every time, one open event.
    for _ in 0..2 {
        let answer = http.get(here(&pixel[0])).send().await.unwrap();
        assert_gif(answer).await;
    }
    assert_eq!(tracked().await, [("open".to_owned(), String::new())]);
    let bad_pixel = here(&altered(&pixel[0]));
    assert_gif(http.get(&bad_pixel).send().await.unwrap()).await;
    assert_gif(
        http.get(format!("{public}/t/o/garbage"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        tracked().await.len(),
        1,
        "a bad pixel token records nothing"
    );

    // The links: 302 to the exact original URL, one click event per link.
    let mut targets = Vec::new();
    for link in &clicks {
        for _ in 0..2 {
            let answer = http.get(here(link)).send().await.unwrap();
            assert_eq!(answer.status(), 302, "{link}");
            let location = answer.headers()["location"].to_str().unwrap().to_owned();
            targets.push(location);
        }
    }
    targets.dedup();
    assert_eq!(targets, [OFFER, BLOG]);
    let after_clicks = vec![
        ("open".to_owned(), String::new()),
        ("click".to_owned(), OFFER.to_owned()),
        ("click".to_owned(), BLOG.to_owned()),
    ];
    assert_eq!(tracked().await, after_clicks);

    // Forgeries: one byte changed, the other link's URL, a foreign URL. A token
    // is base64 of 48 signed bytes (64 characters) followed by the URL.
    let token = |link: &str| link.rsplit('/').next().unwrap().to_owned();
    let (offer_token, blog_token) = (token(clicks[0]), token(clicks[1]));
    let tenant_id = tenant.id;
    let job: uuid::Uuid = rig.env.psql("SELECT id FROM send_jobs").await[0].get(0);
    let foreign = tracking::sign_click(
        "someone-elses-secret-0",
        tenant_id,
        job,
        "https://evil.example/",
    )
    .unwrap();
    for bad in [
        altered(clicks[0]),
        format!("{public}/t/c/{}{}", &offer_token[..64], &blog_token[64..]),
        format!("{public}/t/c/{}{}", &offer_token[..64], &foreign[64..]),
        format!("{public}/t/c/{foreign}"),
        format!("{public}/t/c/garbage"),
    ] {
        let answer = http.get(here(&bad)).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{bad}");
        assert!(answer.headers().get("location").is_none());
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{bad}");
    }
    assert_eq!(tracked().await, after_clicks, "forgeries record nothing");

    // The campaign's event list shows them, for that job.
    let path = format!("/v1/campaigns/{campaign}/events");
    let events: Value = wait_for("the sent event", Duration::from_secs(10), || async {
        let page = client.get(&path, &tenant.token).await.ok()?;
        let kinds = kinds(&page);
        kinds.contains(&"sent".to_owned()).then_some(page)
    })
    .await;
    let mut kinds = kinds(&events);
    kinds.sort();
    assert_eq!(kinds, ["click", "click", "open", "sent"]);
    for event in events["events"].as_array().unwrap() {
        assert_eq!(event["job_id"], job.to_string());
        assert_eq!(event["recipient"], "ann@list.test");
    }
    rig.shutdown().await;
}

fn kinds(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn assert_gif(answer: reqwest::Response) {
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "image/gif");
    assert_eq!(answer.headers()["cache-control"], "no-store");
    let bytes = answer.bytes().await.unwrap();
    assert!(
        bytes.starts_with(b"GIF89a") && bytes.len() == 43,
        "{bytes:?}"
    );
}

/// `url` with the last character of its token changed.
fn altered(url: &str) -> String {
    let mut bytes = url.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// Every value that follows `opening` (e.g. `href="`) up to its closing quote.
fn attribute_values(html: &str, opening: &str) -> Vec<String> {
    let quote = opening.chars().last().unwrap();
    html.match_indices(opening)
        .map(|(at, _)| {
            let value = &html[at + opening.len()..];
            value[..value.find(quote).unwrap()].to_owned()
        })
        .collect()
}

/// The decoded body of the first part of type `content_type` in a
/// multipart message as mail-builder writes it (7bit or quoted-printable).
fn mime_part(raw: &str, content_type: &str) -> String {
    let boundary = raw
        .split("boundary=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a multipart message");
    for part in raw.split(&format!("--{boundary}")).skip(1) {
        let Some((head, body)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let head = head.to_ascii_lowercase();
        if !head.contains(&format!("content-type: {content_type}")) {
            continue;
        }
        let body = body.trim_end_matches("\r\n");
        if head.contains("content-transfer-encoding: quoted-printable") {
            return quoted_printable(body);
        }
        assert!(
            !head.contains("content-transfer-encoding: base64"),
            "unexpected base64 part: {head}"
        );
        return body.to_owned();
    }
    panic!("no {content_type} part in {raw}");
}

fn quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).expect("a QP escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
