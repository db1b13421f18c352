//! Header and SMTP injection through every tenant-controlled string that reaches
//! a message: tenant name, IP `helo_name`, campaign `name`, `from`, `from_name`,
//! `subject`, `text`, `html`, lead `email` and lead `fields`. Each hostile value
//! (CR, LF, NUL, `\r\n.\r\nMAIL FROM:…`, `\r\nBcc: …`) is either refused by the API
//! with a JSON error, or carried harmlessly. Checked on the wire at the sink:
//! exactly one SMTP transaction and one message per recipient, no extra
//! recipient, no injected header line, and the body's lone-dot lines arrive as
//! data (dot-stuffed by the engine, unstuffed by the sink), never as the end of
//! DATA.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::admin_token;
use crate::support::api::{Answer, ApiClient, rejected};
use crate::support::rig::Rig;

/// Ends DATA early and starts a second transaction, if the body were sent as is.
const SMUGGLE: &str = "Hi\r\n.\r\nMAIL FROM:<evil@evil.test>\r\nRCPT TO:<victim@evil.test>\r\n\
                       DATA\r\nSubject: smuggled\r\n\r\nowned\r\n.\r\nQUIT\r\n";
/// Ends the header line early and adds one.
const BCC: &str = "Pat\r\nBcc: victim@evil.test";
const BARE_LF: &str = "Pat\nX-Injected: 1";
const NUL: &str = "Pat\0X-Injected: 1";

const HOSTILE: [&str; 4] = [SMUGGLE, BCC, BARE_LF, NUL];

/// A JSON error answer (4xx with `error.code` and `error.message`).
fn assert_refused(answer: &Answer, door: &str) {
    assert!(
        (400..500).contains(&answer.status) && !answer.code().is_empty(),
        "{door}: expected a JSON error, got {} {}",
        answer.status,
        answer.body
    );
}

/// The header block of a received message as (name, value) lines; panics on a
/// line that is neither `Name: value` nor a folded continuation.
fn header_names(message: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let (head, _) = text.split_once("\r\n\r\n").expect("header/body separator");
    head.split("\r\n")
        .filter(|line| !line.starts_with([' ', '\t']))
        .map(|line| {
            let (name, _) = line.split_once(':').expect("a header line");
            assert!(name.bytes().all(|b| b.is_ascii_graphic()), "{line:?}");
            name.to_ascii_lowercase()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_through_every_tenant_string_is_refused_or_harmless() {
    let rig = Rig::start(|_| {}).await;
    rig.sink.keep_bodies(true);
    let api = ApiClient::new(&rig.node().api_url());

    // Tenant names never reach a message (Feedback-ID carries ids); hostile
    // ones are refused anyway.
    for name in HOSTILE {
        let answer = api
            .post("/v1/tenants", Some(admin_token()), &json!({ "name": name }))
            .await;
        assert_refused(&answer, "tenant name");
    }
    let (tenant, token) = api.create_tenant("injection target").await;
    // The HELO name goes on the wire as an SMTP command argument: only a host
    // name is accepted.
    for helo in HOSTILE
        .iter()
        .map(|h| format!("mta.example.test{h}"))
        .chain(["mta.example.test\r\nMAIL FROM:<e@evil.test>".to_string()])
    {
        let body = json!({ "address": "127.0.0.2", "helo_name": helo });
        assert_refused(&api.add_ip_with(tenant, &body).await, "helo_name");
    }
    let ip = api.add_ip(tenant, "127.0.0.2").await;

    // Header fields of the campaign: refused.
    let valid = json!({
        "name": "inject", "from": "hello@sender.test", "from_name": "Sender",
        "subject": "Hi {{ first_name }}",
        "text": format!("{SMUGGLE}{{{{ first_name }}}}\r\n.\r\n..\r\nend\r\n"),
        "html": format!("<p>{SMUGGLE}</p><p>{{{{ first_name }}}}</p>\n.\n"),
        "ip_ids": [ip],
    });
    for field in ["name", "from", "from_name", "subject"] {
        for payload in HOSTILE {
            let mut body = valid.clone();
            let value = format!("{}{payload}", body[field].as_str().unwrap());
            body[field] = json!(value);
            let answer = api.create_campaign_with(&token, &body).await;
            assert_refused(&answer, field);
            assert!(
                answer.message().contains(field),
                "{field}: {}",
                answer.message()
            );
        }
    }
    // Bodies may hold line breaks (they are multi-line text), never NUL.
    for field in ["text", "html"] {
        let mut body = valid.clone();
        body[field] = json!(NUL);
        assert_refused(&api.create_campaign_with(&token, &body).await, field);
    }
    let campaign = api.create_campaign_with(&token, &valid).await;
    let campaign = campaign.expect(201)["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Lead addresses: a hostile one is a rejected row, never a recipient.
    let mut leads: Vec<Value> = [
        "victim@evil.test\r\nRCPT TO:<other@evil.test>",
        "a@b.test>\r\nBcc: victim@evil.test",
        "x@y.test\0",
        "lf@x.test\nBcc: victim@evil.test",
    ]
    .iter()
    .map(|email| json!({ "email": email, "fields": { "first_name": "Pat" } }))
    .collect();
    let refused_addresses = leads.len();
    // Lead fields reach the subject, text and HTML: carried harmlessly.
    let field_payloads = [SMUGGLE, BCC, BARE_LF, "Pat\r\n\r\n<script>x</script>"];
    for (i, payload) in field_payloads.iter().enumerate() {
        leads.push(
            json!({ "email": format!("lead{i}@inbox.test"), "fields": { "first_name": payload } }),
        );
    }
    let imported = api.add_leads(&token, campaign, Value::Array(leads)).await;
    let imported = imported.expect(200);
    let rows = rejected(imported);
    assert_eq!(
        rows.iter()
            .map(|(row, _)| *row as usize)
            .collect::<Vec<_>>(),
        (0..refused_addresses).collect::<Vec<_>>(),
        "hostile addresses are rejected rows: {imported}"
    );
    assert_eq!(imported["accepted"], json!(field_payloads.len()));

    assert_eq!(api.action_ok(&token, campaign, "start").await, "running");
    let total = field_payloads.len() as u64;
    rig.wait_for_sink(total, Duration::from_secs(60)).await;
    rig.wait_for_jobs("sent", total as i64, Duration::from_secs(30))
        .await;

    // On the wire.
    let stats = rig.sink.stats();
    assert_eq!(stats.messages_accepted, total, "no smuggled message");
    assert_eq!(stats.transactions_begun, total, "no smuggled transaction");
    let mut recipients = Vec::new();
    for message in rig.sink.messages() {
        assert_eq!(message.mail_from, "hello@sender.test");
        assert_eq!(
            message.rcpt_to.len(),
            1,
            "one recipient: {:?}",
            message.rcpt_to
        );
        recipients.push(message.rcpt_to[0].clone());
        let body = rig.sink.body(message.seq).expect("the sink keeps bodies");
        let names = header_names(&body);
        for injected in ["bcc", "x-injected", "rcpt to", "mail from"] {
            assert!(
                !names.iter().any(|n| n == injected),
                "{injected}: {names:?}"
            );
        }
        for once in ["from", "to", "subject", "message-id"] {
            assert_eq!(
                names.iter().filter(|n| *n == once).count(),
                1,
                "{once}: {names:?}"
            );
        }
        let text = String::from_utf8_lossy(&body);
        // The template's lone dots arrived as data: dot-stuffed on the wire,
        // unstuffed by the sink, DATA ended only by the real terminator.
        assert!(
            text.contains("\r\n.\r\nMAIL FROM:<evil@evil.test>\r\nRCPT TO:<victim@evil.test>\r\n"),
            "the smuggled commands are body text:\n{text}"
        );
        assert!(text.contains("\r\n.\r\n..\r\nend\r\n"), "{text}");
    }
    recipients.sort();
    let expected: Vec<String> = (0..field_payloads.len())
        .map(|i| format!("lead{i}@inbox.test"))
        .collect();
    assert_eq!(recipients, expected, "exactly one message per lead");
    rig.shutdown().await;
}
