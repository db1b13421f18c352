//! Delivery judged by an SMTP server we did not write (aiosmtpd, see
//! `support/foreign_smtp.rs`), so a misunderstanding our client shares with our
//! own sink cannot hide: what that server received is compared with Postgres
//! and with the campaign's templates.
//!
//! - outcomes: 250 → `sent` and received exactly once, 451 4.7.1 → `deferred`
//!   with that code in the delivery event, 550 5.1.1 → `bounced` (and
//!   suppressed); every transaction over STARTTLS, MAIL FROM and RCPT TO
//!   pipelined, both because the server offers them;
//! - a server offering neither gets plain, unpipelined transactions, and a
//!   UTF-8 address never reaches a server that does not offer SMTPUTF8;
//! - lines starting with `.` arrive intact after the server's un-stuffing;
//! - a UTF-8 subject and body arrive intact as Python's MIME parser decodes
//!   them, the DATA is 7-bit clean unless the client declared BODY=8BITMIME or
//!   SMTPUTF8, and a UTF-8 address goes with SMTPUTF8 declared;
//! - in every scenario the server refused no command as malformed or out of
//!   order (500-504, 555).

use std::collections::BTreeMap;
use std::time::Duration;

use penguin::scenario::Scenario;
use penguin_config::Route;
use uuid::Uuid;

use crate::support::foreign_smtp::{ForeignMessage, ForeignOptions, ForeignSmtp};
use crate::support::rig::Rig;
use crate::support::{wait_for, wait_for_showing};

const FROM: &str = "hello@e2e-1.test";
/// The HELO name `Rig::scenario` gives the IP 127.0.0.2.
const HELO: &str = "mta1.e2e-1.test";

/// A node routed to a fresh foreign server, and one started campaign of
/// `subject`/`text` to `leads` (address, first name) from 127.0.0.2.
struct Run {
    rig: Rig,
    foreign: ForeignSmtp,
    campaign: Uuid,
}

impl Run {
    async fn start(
        options: ForeignOptions,
        subject: &str,
        text: &str,
        leads: &[(&str, &str)],
    ) -> Run {
        let foreign = ForeignSmtp::start(options).await;
        let port = foreign.port();
        let rig = Rig::start(|c| {
            c.delivery.routes = vec![Route {
                domain: "*".into(),
                host: "127.0.0.1".into(),
                port,
            }];
        })
        .await;
        let scenario: Scenario = rig.scenario(vec![vec!["127.0.0.2"]], 0).await;
        let tenant = &scenario.tenants[0];
        let campaign = scenario
            .client
            .create_campaign(
                &tenant.token,
                &serde_json::json!({
                    "name": "foreign", "from": FROM, "subject": subject, "text": text,
                    "ip_ids": [tenant.ips[0].0.to_string()],
                }),
            )
            .await
            .expect("campaign created");
        let leads: Vec<serde_json::Value> = leads
            .iter()
            .map(
                |(email, name)| serde_json::json!({"email": email, "fields": {"first_name": name}}),
            )
            .collect();
        let accepted = scenario
            .client
            .add_leads(&tenant.token, campaign, &leads, 1_000)
            .await
            .expect("leads accepted");
        assert_eq!(accepted, leads.len() as u64, "every lead accepted");
        scenario
            .client
            .campaign_action(&tenant.token, campaign, "start")
            .await
            .expect("campaign started");
        Run {
            rig,
            foreign,
            campaign,
        }
    }

    /// Lead address → (job status, Message-ID, last reply).
    async fn jobs(&self) -> BTreeMap<String, (String, String, String)> {
        let sql = format!(
            "SELECT l.email, j.status, coalesce(j.message_id, ''), coalesce(j.last_reply, '') \
             FROM send_jobs j JOIN leads l ON l.id = j.lead_id WHERE j.campaign_id = '{}'",
            self.campaign
        );
        self.rig
            .env
            .psql(&sql)
            .await
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect()
    }

    /// Waits (30 s at most) until every lead's job is in the state `expected`
    /// gives it; on timeout shows what the jobs are in instead.
    async fn wait_for_statuses(&self, expected: &[(&str, &str)]) {
        let expected: BTreeMap<String, String> = expected
            .iter()
            .map(|(email, status)| (email.to_string(), status.to_string()))
            .collect();
        wait_for_showing(
            &format!("job statuses {expected:?}"),
            Duration::from_secs(30),
            || async {
                let got: BTreeMap<String, String> = self
                    .jobs()
                    .await
                    .into_iter()
                    .map(|(email, (status, _, _))| (email, status))
                    .collect();
                if got == expected { Ok(()) } else { Err(got) }
            },
        )
        .await;
    }

    async fn stop(self) {
        self.rig.shutdown().await;
        self.foreign.stop();
    }
}

/// The one message the foreign server received for `rcpt`; panics when it got
/// none or several.
fn received_once<'a>(messages: &'a [ForeignMessage], rcpt: &str) -> &'a ForeignMessage {
    let found: Vec<&ForeignMessage> = messages
        .iter()
        .filter(|m| m.rcpt_tos.iter().any(|r| r == rcpt))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{rcpt} must be received exactly once: {found:#?}"
    );
    let message = found[0];
    assert_eq!(
        message.rcpt_tos,
        vec![rcpt.to_string()],
        "one recipient per transaction"
    );
    assert_eq!(message.parse_error, None, "Python parses the message");
    message
}

/// Template text with CRLF line ends, as a message carries it.
fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outcomes_starttls_and_pipelining_as_a_foreign_server_sees_them() {
    let sent = [
        "ann@foreign.test",
        "bob@foreign.test",
        "cy@foreign.test",
        "dee@foreign.test",
    ];
    let (deferred, bounced) = ("defer-eve@foreign.test", "bounce-fay@foreign.test");
    let mut leads: Vec<(&str, &str)> = sent.iter().map(|e| (*e, "Pat")).collect();
    leads.extend([(deferred, "Eve"), (bounced, "Fay")]);
    let options = ForeignOptions {
        starttls: true,
        pipelining: true,
        smtputf8: true,
    };
    let run = Run::start(
        options,
        "Hi {{first_name}}",
        "Hello {{first_name}}\n",
        &leads,
    )
    .await;
    let mut expected: Vec<(&str, &str)> = sent.iter().map(|e| (*e, "sent")).collect();
    expected.extend([(deferred, "deferred"), (bounced, "bounced")]);
    run.wait_for_statuses(&expected).await;
    // Nothing is due again for minutes (retry base delay 300 s): every count is final.
    run.foreign
        .wait_settled(sent.len(), leads.len(), Duration::from_secs(10))
        .await;

    let jobs = run.jobs().await;
    let messages = run.foreign.messages();
    for rcpt in sent {
        let message = received_once(&messages, rcpt);
        assert_eq!(message.mail_from, FROM);
        assert_eq!(
            message.message_id.as_deref(),
            Some(format!("<{}>", jobs[rcpt].1).as_str()),
            "the Message-ID of {rcpt}'s job"
        );
        assert!(message.tls, "STARTTLS was offered, so {rcpt} went over TLS");
        assert!(
            message.pipelined,
            "PIPELINING was offered, so MAIL FROM and RCPT TO of {rcpt} came in one go"
        );
        assert_eq!(message.ehlo.as_deref(), Some(HELO), "the IP's HELO name");
    }
    let rcpts = run.foreign.rcpts();
    for (rcpt, reply) in [(deferred, "451 4.7.1 "), (bounced, "550 5.1.1 ")] {
        let answered: Vec<_> = rcpts.iter().filter(|r| r.rcpt == rcpt).collect();
        assert_eq!(answered.len(), 1, "{rcpt} tried exactly once: {answered:?}");
        assert!(answered[0].reply.starts_with(reply), "{answered:?}");
        assert!(answered[0].tls, "{rcpt} over TLS");
        assert!(
            jobs[rcpt].2.contains(reply.trim_end()),
            "{rcpt}'s job keeps the server's reply: {}",
            jobs[rcpt].2
        );
    }

    // The delivery events carry the foreign server's codes.
    let sql = format!(
        "SELECT l.email, e.kind, e.smtp_code, e.enhanced_code, coalesce(e.class, '') \
         FROM delivery_events e JOIN send_jobs j ON j.id = e.job_id \
         JOIN leads l ON l.id = j.lead_id WHERE e.campaign_id = '{}' ORDER BY l.email",
        run.campaign
    );
    let events = wait_for("six delivery events", Duration::from_secs(10), || async {
        let rows = run.rig.env.psql(&sql).await;
        (rows.len() == leads.len()).then_some(rows)
    })
    .await;
    let events: BTreeMap<String, (String, Option<i32>, Option<String>, String)> = events
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect();
    for rcpt in sent {
        assert_eq!(events[rcpt].0, "sent", "{rcpt}: {:?}", events[rcpt]);
    }
    let deferral = &events[deferred];
    assert_eq!(
        (deferral.0.as_str(), deferral.1, deferral.2.as_deref()),
        ("deferred", Some(451), Some("4.7.1")),
        "{deferral:?}"
    );
    let bounce = &events[bounced];
    assert_eq!(
        (
            bounce.0.as_str(),
            bounce.1,
            bounce.2.as_deref(),
            bounce.3.as_str()
        ),
        ("bounced", Some(550), Some("5.1.1"), "invalid_recipient"),
        "{bounce:?}"
    );
    // The hard bounce, and only it, joins the tenant's suppression list.
    let suppressed = wait_for(
        "the bounced address suppressed",
        Duration::from_secs(10),
        || async {
            let rows = run
                .rig
                .env
                .psql("SELECT email, reason FROM suppressions")
                .await;
            (!rows.is_empty()).then_some(rows)
        },
    )
    .await;
    let suppressed: Vec<(String, String)> =
        suppressed.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        suppressed,
        vec![(bounced.to_string(), "hard_bounce".to_string())]
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_server_offering_neither_tls_pipelining_nor_smtputf8_gets_none() {
    let leads = [
        ("gil@plain.test", "Gil"),
        ("hal@plain.test", "Hal"),
        ("ida@plain.test", "Ida"),
    ];
    // RFC 6531: a UTF-8 address only goes to a server offering SMTPUTF8.
    let international = "jürgen@plain.test";
    let options = ForeignOptions {
        starttls: false,
        pipelining: false,
        smtputf8: false,
    };
    let mut all = leads.to_vec();
    all.push((international, "Jürgen"));
    let run = Run::start(options, "Hi {{first_name}}", "Hello {{first_name}}\n", &all).await;
    let mut expected: Vec<(&str, &str)> = leads.iter().map(|(e, _)| (*e, "sent")).collect();
    expected.push((international, "bounced"));
    run.wait_for_statuses(&expected).await;
    run.foreign
        .wait_settled(leads.len(), leads.len(), Duration::from_secs(10))
        .await;
    let jobs = run.jobs().await;
    assert!(
        jobs[international].2.contains("5.6.7"),
        "refused as a non-ASCII address (RFC 6531 5.6.7): {}",
        jobs[international].2
    );
    let messages = run.foreign.messages();
    for (rcpt, _) in leads {
        let message = received_once(&messages, rcpt);
        assert!(!message.tls, "no STARTTLS offered, so {rcpt} went in plain");
        assert!(
            !message.pipelined,
            "no PIPELINING offered, so RCPT TO of {rcpt} waited for the MAIL FROM reply"
        );
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lines_starting_with_a_dot_arrive_intact_at_a_foreign_server() {
    let text = "Hello {{first_name}},\n.one dot starts this line\n..two dots start this one\n.\n...\nAbove: a lone dot, then three.\n";
    let leads = [("jo@dots.test", "Jo"), ("kim@dots.test", "Kim")];
    let options = ForeignOptions {
        starttls: true,
        pipelining: true,
        smtputf8: true,
    };
    let run = Run::start(options, "Dots for {{first_name}}", text, &leads).await;
    let expected: Vec<(&str, &str)> = leads.iter().map(|(e, _)| (*e, "sent")).collect();
    run.wait_for_statuses(&expected).await;
    run.foreign
        .wait_settled(leads.len(), leads.len(), Duration::from_secs(10))
        .await;
    let messages = run.foreign.messages();
    for (rcpt, name) in leads {
        let message = received_once(&messages, rcpt);
        let rendered = crlf(&text.replace("{{first_name}}", name));
        assert_eq!(
            message.text.as_deref(),
            Some(rendered.as_str()),
            "{rcpt}: the text part as the foreign server decoded it"
        );
        // The dots stood at line starts on the wire (7-bit part, no encoding),
        // so only the client's stuffing and the server's un-stuffing kept them.
        let content = message.content();
        let dotted = crlf("\n.one dot starts this line\n..two dots start this one\n.\n...\n");
        assert!(
            content
                .windows(dotted.len())
                .any(|w| w == dotted.as_bytes()),
            "{rcpt}: the dotted lines, byte for byte (encoding {:?}):\n{}",
            message.text_cte,
            String::from_utf8_lossy(&content)
        );
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn utf8_subject_and_body_arrive_intact_at_a_foreign_server() {
    let subject = "Grüße, {{first_name}} — 日本";
    let text = "Grüße, {{first_name}} — 日本\nZweite Zeile: ½ € ✓\n";
    let leads = [("zoë@utf8.test", "Zoë"), ("pat@utf8.test", "Pat")];
    let options = ForeignOptions {
        starttls: true,
        pipelining: true,
        smtputf8: true,
    };
    let run = Run::start(options, subject, text, &leads).await;
    let expected: Vec<(&str, &str)> = leads.iter().map(|(e, _)| (*e, "sent")).collect();
    run.wait_for_statuses(&expected).await;
    run.foreign
        .wait_settled(leads.len(), leads.len(), Duration::from_secs(10))
        .await;
    let messages = run.foreign.messages();
    for (rcpt, name) in leads {
        let message = received_once(&messages, rcpt);
        assert_eq!(
            message.subject.as_deref(),
            Some(subject.replace("{{first_name}}", name).as_str()),
            "{rcpt}: the Subject as the foreign server decoded it"
        );
        let rendered = crlf(&text.replace("{{first_name}}", name));
        assert_eq!(
            message.text.as_deref(),
            Some(rendered.as_str()),
            "{rcpt}: the text part as the foreign server decoded it"
        );
        if !rcpt.is_ascii() {
            assert!(
                message.smtp_utf8,
                "{rcpt}: a UTF-8 address needs SMTPUTF8 on MAIL FROM (RFC 6531): {:?}",
                message.mail_options
            );
        }
        // 8-bit data needs BODY=8BITMIME (RFC 6152) or, for UTF-8 headers,
        // SMTPUTF8 on MAIL FROM; without them every byte must be 7-bit.
        let declared =
            message.smtp_utf8 || message.mail_options.iter().any(|o| o == "BODY=8BITMIME");
        if !declared {
            let content = message.content();
            let eight_bit = content.iter().filter(|b| **b >= 0x80).count();
            assert_eq!(
                eight_bit,
                0,
                "{rcpt}: {eight_bit} 8-bit bytes in DATA without BODY=8BITMIME \
                 (MAIL FROM options {:?}):\n{}",
                message.mail_options,
                String::from_utf8_lossy(&content)
            );
        }
    }
    run.stop().await;
}
