//! Template bombs against a real `penguin serve` process. Guarantees:
//! - the subject bomb of issue 12 (10^8 loop iterations, a 100 MB subject) and
//!   an HTML part that explodes without any lead data are refused at
//!   `POST /v1/campaigns` with 422 naming the field, and so are the memory bombs
//!   fuel does not catch (`~`/`+`/`*` doubling, `set`, `namespace`, macros,
//!   `indent`, chained `replace`, `join`, `tojson`, `pprint`), naming the field
//!   and the refused construct;
//! - templates that explode only with a lead's data (a loop bounded by a lead
//!   field: out of fuel, a subject past 998 bytes, a text part past 2 MiB) end
//!   those jobs `failed` with the broken limit in the reason, never sent, never
//!   retried, while the campaign's other leads and another tenant's campaign are
//!   delivered exactly once, counted at the sink;
//! - while the bombs render, the node keeps answering `/health` within 1 s and
//!   stays under 512 MiB RSS (issue 12's bounds); both are measured and printed.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::ApiClient;
use crate::support::cluster::node_config;
use crate::support::health_probe::Probe;
use crate::support::node_process::NodeProcess;
use crate::support::rig::Rig;
use crate::support::wait_for;

/// The campaign subject from issue 12, verbatim.
const ISSUE_BOMB: &str =
    "{% for i in range(100000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}";

/// Templates harmless for ordinary leads; a lead's `spin`, `subject_x` and
/// `copies` fields make them explode.
const SUBJECT: &str = "Hi {{ first_name }}{% for i in range(subject_x|int) %}x{% endfor %}";
const TEXT: &str = "{% for i in range(spin|int) %}{% for j in range(spin|int) %}\
                    {% endfor %}{% endfor %}{% for i in range(copies|int) %}{{ big }}{% endfor %}\
                    Hello {{ first_name }}\n";

const NORMAL_LEADS: usize = 20;
/// Leads of each kind of bomb.
const BOMBS: usize = 40;

fn lead(email: String, spin: u64, subject_x: u64, copies: u64, big: &str) -> Value {
    json!({"email": email, "fields": {
        "first_name": "Pat", "spin": spin, "subject_x": subject_x, "copies": copies, "big": big,
    }})
}

async fn tenant_with_ip(api: &ApiClient, name: &str, address: &str) -> (String, Uuid) {
    let (tenant, token) = api.create_tenant(name).await;
    let ip = api.add_ip(tenant, address).await;
    (token, ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn template_bombs_fail_alone_while_the_node_stays_responsive() {
    let mut rig = Rig::start(|config| {
        config.node.id = "node-rig".into();
        config.node.heartbeat_ms = 200;
        config.node.lease_ttl_ms = 2_000;
    })
    .await;
    rig.sink.keep_bodies(false);
    // Everything runs on the separate process: the rig's own node leaves.
    let node = NodeProcess::start(&node_config(&rig, "node-bombed")).await;
    if let Some(own) = rig.node.take() {
        own.shutdown().await;
    }
    let api = ApiClient::new(node.api_url());
    let (bomber, bomber_ip) = tenant_with_ip(&api, "bomber", "127.0.0.2").await;
    let (bystander, bystander_ip) = tenant_with_ip(&api, "bystander", "127.0.0.3").await;

    // Refused at creation: what explodes without lead data.
    let mut body = json!({
        "name": "bomb", "from": "hello@bomber.test", "subject": ISSUE_BOMB,
        "text": "hello", "ip_ids": [bomber_ip],
    });
    let refused = api.create_campaign_with(&bomber, &body).await;
    refused.assert_error(422, "invalid_request");
    assert!(
        refused.message().starts_with("subject:") && refused.message().contains("998 bytes"),
        "{}",
        refused.message()
    );
    body["subject"] = json!("Hi");
    body["html"] =
        json!("{% for i in range(100000) %}<p>0123456789012345678901234</p>{% endfor %}");
    let refused = api.create_campaign_with(&bomber, &body).await;
    refused.assert_error(422, "invalid_request");
    assert!(
        refused.message().starts_with("html:") && refused.message().contains("2097152 bytes"),
        "{}",
        refused.message()
    );

    // Refused at creation: memory bombs that fuel alone would let through (a
    // few instructions allocating gigabytes), named by field and construct.
    let doubling = "{% set a = a ~ a %}".repeat(30);
    let replace_chain = "|replace('x', 'xx')".repeat(30);
    for (field, bomb, construct) in [
        (
            "subject",
            format!("{{% set a = \"x\" * 99999999 %}}{doubling}{{{{ a }}}}"),
            r#"the "set" statement"#,
        ),
        (
            "subject",
            "{{ \"x\" * 99999999 }}".into(),
            r#"the "*" operator"#,
        ),
        (
            "text",
            "{% set ns = namespace(a='x') %}{% set ns.a = ns.a + ns.a %}".into(),
            r#"the "set" statement"#,
        ),
        (
            "text",
            "{{ namespace(a='x').a ~ 'x' }}".into(),
            r#"the "~" operator"#,
        ),
        (
            "text",
            "{% set a %}{{ b }}{{ b }}{% endset %}".into(),
            r#"the "set" block"#,
        ),
        (
            "html",
            "{% macro m(s) %}{{ s }}{{ s }}{% endmacro %}{{ m(m('x')) }}".into(),
            r#"the "macro" statement"#,
        ),
        (
            "html",
            "{{ 'x'|indent(99999999) }}".into(),
            r#"the "indent" filter"#,
        ),
        (
            "text",
            format!("{{{{ 'x'{replace_chain} }}}}"),
            r#"the "replace" filter"#,
        ),
        (
            "text",
            "{{ range(100000)|join('y' * 1000) }}".into(),
            r#"the "join" filter"#,
        ),
        (
            "html",
            format!("{{{{ range(100000)|join('{}') }}}}", "y".repeat(500)),
            r#"the "join" filter"#,
        ),
        (
            "text",
            "{{ [big, big]|tojson }}".into(),
            r#"the "tojson" filter"#,
        ),
        (
            "text",
            "{{ [big, big]|pprint }}".into(),
            r#"the "pprint" filter"#,
        ),
    ] {
        let mut body = json!({
            "name": "memory bomb", "from": "hello@bomber.test", "subject": "Hi",
            "text": "hello", "ip_ids": [bomber_ip],
        });
        body[field] = json!(bomb);
        let refused = api.create_campaign_with(&bomber, &body).await;
        refused.assert_error(422, "invalid_request");
        let expected = format!("{field}: {construct} is not allowed in templates (");
        assert!(
            refused.message().starts_with(&expected),
            "{bomb}: {}",
            refused.message()
        );
    }

    // Accepted: harmless until a lead's data says otherwise.
    let body = json!({
        "name": "lead bombs", "from": "hello@bomber.test", "subject": SUBJECT, "text": TEXT,
        "ip_ids": [bomber_ip],
    });
    let bombs = api.create_campaign_with(&bomber, &body).await;
    let bombs = bombs.expect(201)["id"].as_str().unwrap().parse().unwrap();
    let big = "y".repeat(60_000);
    let mut leads = Vec::new();
    for i in 0..NORMAL_LEADS {
        leads.push(lead(format!("ok{i}@bombed.test"), 0, 0, 0, ""));
    }
    for i in 0..BOMBS {
        // 10^10 empty iterations: only fuel stops them.
        leads.push(lead(format!("fuel{i}@bombed.test"), 100_000, 0, 0, ""));
        leads.push(lead(format!("subject{i}@bombed.test"), 0, 5_000, 0, ""));
        // 1,000 copies of 60 KB: 60 MB of text.
        leads.push(lead(format!("text{i}@bombed.test"), 0, 0, 1_000, &big));
    }
    api.add_leads(&bomber, bombs, Value::Array(leads))
        .await
        .expect(200);
    let plain = json!({
        "name": "plain", "from": "hello@bystander.test", "subject": "Hi {{ first_name }}",
        "text": "Hello {{ first_name }}\n", "html": "<p>Hello {{ first_name }}</p>",
        "ip_ids": [bystander_ip],
    });
    let plain = api.create_campaign_with(&bystander, &plain).await;
    let plain = plain.expect(201)["id"].as_str().unwrap().parse().unwrap();
    let plain_leads: Vec<Value> = (0..NORMAL_LEADS)
        .map(|i| json!({"email": format!("plain{i}@bystander.test"), "fields": {"first_name": "Sam"}}))
        .collect();
    api.add_leads(&bystander, plain, Value::Array(plain_leads))
        .await
        .expect(200);

    let probe = Probe::start(reqwest::Client::new(), node.api_url(), node.pid());
    assert_eq!(api.action_ok(&bomber, bombs, "start").await, "running");
    assert_eq!(api.action_ok(&bystander, plain, "start").await, "running");

    let total = (2 * NORMAL_LEADS + 3 * BOMBS) as i64;
    let terminal = "SELECT count(*) FROM send_jobs WHERE status IN \
                    ('sent', 'failed', 'bounced', 'suppressed', 'cancelled')";
    wait_for("every job terminal", Duration::from_secs(120), || async {
        let done: i64 = rig.env.psql(terminal).await[0].get(0);
        (done == total).then_some(())
    })
    .await;
    let health = probe.stop().await;

    // Each bomb failed with its limit; nothing else failed.
    let rows = rig
        .env
        .psql(
            "SELECT l.email, j.status::text, coalesce(j.last_reply, '') \
             FROM send_jobs j JOIN leads l ON l.id = j.lead_id",
        )
        .await;
    assert_eq!(rows.len() as i64, total);
    for row in &rows {
        let (email, status, reason): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        let expected = if email.starts_with("fuel") {
            Some("template: render fuel of 1000000 exhausted in the text template")
        } else if email.starts_with("subject") {
            Some("template: subject exceeds 998 bytes after rendering")
        } else if email.starts_with("text") {
            Some("template: text exceeds 2097152 bytes after rendering")
        } else {
            None
        };
        match expected {
            Some(expected) => {
                assert_eq!(
                    (status.as_str(), reason.as_str()),
                    ("failed", expected),
                    "{email}"
                );
            }
            None => assert_eq!(status, "sent", "{email}: {reason}"),
        }
    }

    // At the sink: every ordinary lead once, no bomb at all.
    let messages = rig.sink.messages();
    let mut recipients: Vec<String> = messages.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    recipients.sort();
    let mut expected: Vec<String> = (0..NORMAL_LEADS)
        .flat_map(|i| {
            [
                format!("ok{i}@bombed.test"),
                format!("plain{i}@bystander.test"),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(recipients, expected, "each ordinary lead exactly once");
    assert_eq!(rig.sink.stats().duplicate_messages, 0);

    assert!(node.is_alive(), "the node survived:\n{}", node.log_tail());
    health.assert_healthy("while template bombs rendered");
    drop(node);
    rig.shutdown().await;
}
