//! Unit tests of message rendering: headers, escaping, injection and the budget.

use super::*;
use serde_json::json;

fn fields(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        _ => panic!("fields must be an object"),
    }
}

fn ctx<'a>(fields: &'a serde_json::Map<String, serde_json::Value>) -> RenderContext<'a> {
    RenderContext {
        recipient: "lead@example.com",
        fields,
        message_id: "0190abcd@mail.sender.test",
        unsubscribe_url: "https://t.sender.test/u/tok123",
        unsubscribe_mailto: Some("unsub+tok123@sender.test"),
        feedback_id: "camp1:tenant1:penguin",
        tracking: None,
        thread: &[],
    }
}

fn template(html: Option<&str>) -> CampaignTemplate {
    CampaignTemplate::compile(
        "alice@sender.test",
        Some("Alice Sender"),
        "Hi {{ first_name }}, about {{ company }}",
        "Hello {{ first_name }} ({{ email }})\nUnsubscribe: {{ unsubscribe_url }}\n",
        html,
    )
    .unwrap()
}

/// Splits the header block into (name, unfolded value) pairs, asserting the
/// RFC 5322 shape: CRLF line ends, `Name: value` lines, folded continuations.
fn headers(message: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(message).unwrap();
    let (head, _body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        assert!(!line.contains('\r') && !line.contains('\n'), "{line:?}");
        if line.starts_with([' ', '\t']) {
            let value = &mut out.last_mut().expect("continuation first").1;
            value.push(' ');
            value.push_str(line.trim_start());
            continue;
        }
        let (name, value) = line.split_once(':').expect("header line has a colon");
        assert!(name.bytes().all(|b| b.is_ascii_graphic()), "{name:?}");
        out.push((name.to_owned(), value.trim().to_owned()));
    }
    out
}

/// Enough of RFC 2047 for the tests: `=?charset?Q?…?=` words, space-joined.
fn decode_encoded_words(value: &str) -> String {
    let mut out = String::new();
    for word in value.split_whitespace() {
        let Some(inner) = word.strip_prefix("=?").and_then(|w| w.strip_suffix("?=")) else {
            out.push_str(word);
            continue;
        };
        let encoded = inner.splitn(3, '?').nth(2).unwrap();
        let mut bytes = encoded.bytes();
        while let Some(b) = bytes.next() {
            match b {
                b'_' => out.push(' '),
                b'=' => {
                    let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
                    let hex = std::str::from_utf8(&hex).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap() as char);
                }
                other => out.push(other as char),
            }
        }
    }
    out
}

/// SMTP wants CRLF everywhere: no lone CR or LF anywhere in the message.
fn no_bare_line_ends(message: &[u8]) -> bool {
    message.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => message.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && message[i - 1] == b'\r',
        _ => true,
    })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn renders_all_required_headers() {
    let fields = fields(json!({"first_name": "Bob", "company": "Acme"}));
    let message = template(None).render(&ctx(&fields)).unwrap();
    let headers = headers(&message);
    for name in [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Feedback-ID",
    ] {
        assert_eq!(header(&headers, name).len(), 1, "{name} once");
    }
    assert_eq!(header(&headers, "Subject"), ["Hi Bob, about Acme"]);
    assert_eq!(
        header(&headers, "Message-ID"),
        ["<0190abcd@mail.sender.test>"]
    );
    assert_eq!(
        header(&headers, "From"),
        ["\"Alice Sender\" <alice@sender.test>"]
    );
    assert_eq!(header(&headers, "To"), ["<lead@example.com>"]);
    assert_eq!(
        header(&headers, "List-Unsubscribe"),
        ["<https://t.sender.test/u/tok123>, <mailto:unsub+tok123@sender.test>"]
    );
    assert_eq!(
        header(&headers, "List-Unsubscribe-Post"),
        ["List-Unsubscribe=One-Click"]
    );
    assert_eq!(header(&headers, "Feedback-ID"), ["camp1:tenant1:penguin"]);
    assert!(no_bare_line_ends(&message));
    let text = String::from_utf8(message).unwrap();
    assert!(text.contains("Hello Bob (lead@example.com)\r\n"));
    assert!(text.contains("Unsubscribe: https://t.sender.test/u/tok123"));
}

#[test]
fn header_injection_in_a_field_stays_inside_the_subject() {
    let fields = fields(json!({
        "first_name": "Bob\r\nBcc: victim@evil.test\r\n\r\nbody",
        "company": "Acme\nX-Injected: 1\0",
    }));
    let message = template(None).render(&ctx(&fields)).unwrap();
    let headers = headers(&message);
    assert!(header(&headers, "Bcc").is_empty());
    assert!(header(&headers, "X-Injected").is_empty());
    let subject = header(&headers, "Subject");
    assert_eq!(subject.len(), 1);
    let subject = decode_encoded_words(subject[0]);
    assert!(subject.contains("Bcc: victim@evil.test"), "{subject:?}");
    assert!(subject.contains("X-Injected: 1"), "{subject:?}");
    assert!(no_bare_line_ends(&message));
}

#[test]
fn missing_field_is_an_error() {
    let fields = fields(json!({"first_name": "Bob"}));
    let err = template(None).render(&ctx(&fields)).unwrap_err();
    assert!(
        matches!(
            err,
            TemplateError::MissingField {
                part: TemplatePart::Subject,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn syntax_error_is_caught_at_compile() {
    let err = CampaignTemplate::compile("a@b.test", None, "ok", "{{ broken", None).unwrap_err();
    assert!(matches!(
        err,
        TemplateError::Syntax {
            part: TemplatePart::Text,
            ..
        }
    ));
}

#[test]
fn html_is_escaped_text_and_subject_are_not() {
    let fields = fields(json!({"first_name": "<b>Bob</b> & co", "company": "A&B"}));
    let message = template(Some("<p>Hi {{ first_name }}</p>"))
        .render(&ctx(&fields))
        .unwrap();
    assert!(no_bare_line_ends(&message));
    let text = String::from_utf8(message).unwrap();
    let (_, html_part) = text.split_once("text/html").unwrap();
    assert!(html_part.contains("<p>Hi &lt;b&gt;Bob&lt;"), "{text}");
    assert!(html_part.contains("&amp; co</p>"), "{text}");
    assert!(!html_part.contains("<b>"), "{text}");
    assert!(text.contains("Hello <b>Bob</b> & co"), "{text}");
    assert!(text.contains("multipart/alternative"));
    let headers = headers(text.as_bytes());
    assert_eq!(
        header(&headers, "Subject"),
        ["Hi <b>Bob</b> & co, about A&B"]
    );
}

#[test]
fn email_variable_wins_over_a_lead_field() {
    let fields = fields(json!({"first_name": "B", "company": "C", "email": "x@evil.test"}));
    let message = template(None).render(&ctx(&fields)).unwrap();
    let text = String::from_utf8(message).unwrap();
    assert!(text.contains("(lead@example.com)"));
    assert!(!text.contains("x@evil.test"));
}

#[test]
fn bad_header_values_are_rejected() {
    let fields = fields(json!({"first_name": "B", "company": "C"}));
    let t = template(None);
    let mut bad = ctx(&fields);
    bad.recipient = "lead@example.com\r\nBcc: x@y";
    assert!(matches!(
        t.render(&bad),
        Err(TemplateError::InvalidHeader { header: "To" })
    ));
    let mut bad = ctx(&fields);
    bad.feedback_id = "a\r\nb";
    assert!(matches!(
        t.render(&bad),
        Err(TemplateError::InvalidHeader {
            header: "Feedback-ID"
        })
    ));
    let mut bad = ctx(&fields);
    bad.unsubscribe_url = "https://x/>\r\nBcc: y";
    assert!(t.render(&bad).is_err());
    assert!(CampaignTemplate::compile("a@b\r\n", None, "s", "t", None).is_err());
    assert!(CampaignTemplate::compile("a@b.test", Some("A\r\nB"), "s", "t", None).is_err());
}

#[test]
fn message_id_helper() {
    let id = Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
    assert_eq!(
        new_message_id(id, "Mail.Sender.test"),
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b@mail.sender.test"
    );
}

/// The campaign subject from issue 12: 10^8 loop iterations, 100 MB of output.
const ISSUE_BOMB: &str =
    "{% for i in range(100000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}";

fn budget(fuel: u64, max_part_bytes: usize) -> RenderBudget {
    RenderBudget {
        fuel,
        max_subject_bytes: 998,
        max_part_bytes,
    }
}

fn compile(
    subject: &str,
    text: &str,
    html: Option<&str>,
    budget: RenderBudget,
) -> CampaignTemplate {
    CampaignTemplate::compile_with_budget("a@sender.test", None, subject, text, html, budget)
        .unwrap()
}

#[test]
fn the_issue_bomb_runs_out_of_fuel() {
    let fields = fields(json!({}));
    let err = compile("Hi", ISSUE_BOMB, None, budget(100_000, 1 << 30))
        .render(&ctx(&fields))
        .unwrap_err();
    assert!(
        matches!(
            err,
            TemplateError::OutOfFuel {
                part: TemplatePart::Text,
                fuel: 100_000
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "render fuel of 100000 exhausted in the text template"
    );
    assert!(err.is_budget());
}

#[test]
fn a_subject_past_998_bytes_stops_at_the_cap() {
    let fields = fields(json!({"n": 999}));
    let template = compile(
        "{% for i in range(n) %}x{% endfor %}",
        "t",
        None,
        RenderBudget::default(),
    );
    let err = template.render(&ctx(&fields)).unwrap_err();
    assert_eq!(err.to_string(), "subject exceeds 998 bytes after rendering");
    // Exactly at the cap is fine.
    let fields = self::fields(json!({"n": 998}));
    let message = template.render(&ctx(&fields)).unwrap();
    let headers = headers(&message);
    // Long subjects go out folded into encoded words.
    let subject = decode_encoded_words(header(&headers, "Subject")[0]);
    assert_eq!(subject.replace(' ', ""), "x".repeat(998));
}

#[test]
fn body_parts_are_capped_after_rendering_and_tracking() {
    let fields = fields(json!({"big": "y".repeat(1000), "n": 3}));
    let template = compile(
        "s",
        "{% for i in range(n) %}{{ big }}{% endfor %}",
        None,
        budget(1_000_000, 2_048),
    );
    let err = template.render(&ctx(&fields)).unwrap_err();
    assert_eq!(err.to_string(), "text exceeds 2048 bytes after rendering");

    // 40 links of 14 bytes fit as written, not once tracked.
    let html = "<a href=https://a.test>x</a>".repeat(40);
    let template = compile("s", "t", Some(&html), budget(1_000_000, 2_048));
    assert!(template.render(&ctx(&fields)).is_ok());
    let mut tracked = ctx(&fields);
    tracked.tracking = Some(crate::tracking_html::HtmlTracking {
        base_url: "https://t.sender.test",
        secret: "0123456789abcdef",
        tenant: Uuid::from_u128(1),
        job: Uuid::from_u128(2),
        opens: true,
        clicks: true,
    });
    let err = template.render(&tracked).unwrap_err();
    assert_eq!(err.to_string(), "html exceeds 2048 bytes after rendering");
}

#[test]
fn dry_run_refuses_what_explodes_without_lead_data() {
    let budget = RenderBudget::default();
    let err =
        CampaignTemplate::dry_run("a@b.test", None, ISSUE_BOMB, "t", None, budget).unwrap_err();
    assert_eq!(err.part(), Some(TemplatePart::Subject));
    assert!(err.is_budget(), "{err:?}");
    let big_html = "{% for i in range(100000) %}<p>0123456789012345678901234</p>{% endfor %}";
    let err =
        CampaignTemplate::dry_run("a@b.test", None, "s", "t", Some(big_html), budget).unwrap_err();
    assert_eq!(
        err.to_string(),
        "html exceeds 2097152 bytes after rendering"
    );
}

#[test]
fn dry_run_accepts_templates_that_need_lead_data() {
    let budget = RenderBudget::default();
    for (subject, text) in [
        (
            "Hi {{first_name}}",
            "Hello {{ first_name }} at {{ company }}",
        ),
        (
            "{{ first_name|title }}",
            "{% if company %}{{ company }}{% endif %}",
        ),
        // Only lead data can make these large; the job's render judges them.
        ("{% for i in range(n) %}x{% endfor %}", "{{ n - 1 }}"),
        ("{{ email }}", "{{ unsubscribe_url }}"),
    ] {
        CampaignTemplate::dry_run("a@b.test", None, subject, text, None, budget)
            .unwrap_or_else(|err| panic!("{subject:?}: {err}"));
    }
    let err =
        CampaignTemplate::dry_run("a@b.test", None, "{{ broken", "t", None, budget).unwrap_err();
    assert!(matches!(err, TemplateError::Syntax { .. }));
}

#[test]
fn a_follow_up_replies_to_the_last_step_and_references_them_all() {
    let f = fields(json!({"first_name": "Ann", "company": "Acme"}));
    let thread = [
        "step1@sender.test".to_string(),
        "step2@sender.test".to_string(),
    ];
    let message = template(None)
        .render(&RenderContext {
            thread: &thread,
            ..ctx(&f)
        })
        .unwrap();
    let head = headers(&message);
    let get = |name: &str| {
        head.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("In-Reply-To").as_deref(), Some("<step2@sender.test>"));
    assert_eq!(
        get("References").as_deref(),
        Some("<step1@sender.test> <step2@sender.test>")
    );

    // Step 1: neither header.
    let first = headers(&template(None).render(&ctx(&f)).unwrap());
    assert!(
        !first
            .iter()
            .any(|(n, _)| n == "In-Reply-To" || n == "References")
    );

    // A Message-ID in the thread that would break the header is refused.
    let bad = ["a@b\r\nBcc: x@evil.test".to_string()];
    assert!(
        template(None)
            .render(&RenderContext {
                thread: &bad,
                ..ctx(&f)
            })
            .is_err()
    );
}
