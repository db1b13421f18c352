//! Campaign templates and the RFC 5322 message built from them for one lead.
//!
//! A [`CampaignTemplate`] is compiled once per campaign (subject, text and
//! optional HTML, minijinja syntax: `{{ first_name }}`), then
//! [`CampaignTemplate::render`] is called by the delivery path for every job with
//! that lead's fields. Guarantees:
//! - an unknown field is an error ([`TemplateError::MissingField`]), never an empty
//!   string in a sent mail;
//! - the HTML part is auto-escaped, subject and text are not (they are not HTML);
//! - no header injection: CR, LF and NUL in the rendered subject become spaces,
//!   and every other header value (addresses, Message-ID, unsubscribe URLs,
//!   Feedback-ID) is rejected with [`TemplateError::InvalidHeader`] when it holds
//!   a control character;
//! - every message carries From, To, Subject, Date, Message-ID,
//!   List-Unsubscribe, List-Unsubscribe-Post (RFC 8058 one-click) and Feedback-ID.
//!
//! Template variables: every lead field, plus `email` (the recipient) and
//! `unsubscribe_url`, which win over lead fields of the same name.
//! With [`RenderContext::tracking`], the rendered HTML part gets the open pixel
//! and click redirects ([`crate::tracking_html`]); the text part never does.
//! DKIM signing happens later, on the bytes returned here.

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::url::URL;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value, context};
use uuid::Uuid;

use crate::tracking_html::HtmlTracking;

const SUBJECT: &str = "subject";
const TEXT: &str = "text";
const HTML: &str = "html";

/// Which template a [`TemplateError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplatePart {
    Subject,
    Text,
    Html,
}

impl TemplatePart {
    fn name(self) -> &'static str {
        match self {
            TemplatePart::Subject => SUBJECT,
            TemplatePart::Text => TEXT,
            TemplatePart::Html => HTML,
        }
    }
}

impl std::fmt::Display for TemplatePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The campaign's template does not parse (caught at campaign creation).
    #[error("{part} template is invalid: {source}")]
    Syntax {
        part: TemplatePart,
        #[source]
        source: minijinja::Error,
    },
    /// The lead lacks a field the template uses: permanent for this lead.
    #[error("{part} template uses a field the lead does not have: {source}")]
    MissingField {
        part: TemplatePart,
        #[source]
        source: minijinja::Error,
    },
    /// Any other rendering failure (bad filter argument, type error…).
    #[error("{part} template failed to render: {source}")]
    Render {
        part: TemplatePart,
        #[source]
        source: minijinja::Error,
    },
    /// A header value that would break the header block (CR, LF, NUL, `<`, `>`…).
    #[error("invalid value for header {header}")]
    InvalidHeader { header: &'static str },
    /// Writing the message out failed (does not happen with an in-memory buffer).
    #[error("building the message failed: {0}")]
    Build(#[from] std::io::Error),
}

/// What varies per message.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// The lead's address: the To header, and `{{ email }}` in templates.
    pub recipient: &'a str,
    /// The lead's template fields.
    pub fields: &'a serde_json::Map<String, serde_json::Value>,
    /// Without angle brackets; written as `<id>` (see [`new_message_id`]).
    pub message_id: &'a str,
    /// The one-click unsubscribe URL (RFC 8058 wants https).
    pub unsubscribe_url: &'a str,
    /// Optional `mailto:` alternative; the `mailto:` prefix is added if missing.
    pub unsubscribe_mailto: Option<&'a str>,
    /// The Feedback-ID header value (e.g. `campaign:tenant:penguin`).
    pub feedback_id: &'a str,
    /// Open pixel and click redirects for the HTML part; `None` sends it as rendered.
    pub tracking: Option<HtmlTracking<'a>>,
}

/// A campaign's compiled templates and sender; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct CampaignTemplate {
    env: Environment<'static>,
    from_address: String,
    from_name: Option<String>,
    has_html: bool,
}

impl CampaignTemplate {
    /// Compiles the templates once. Fails on a syntax error or on a sender that
    /// cannot go into a header.
    pub fn compile(
        from_address: &str,
        from_name: Option<&str>,
        subject: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<CampaignTemplate, TemplateError> {
        if !is_header_token(from_address) || !from_address.contains('@') {
            return Err(TemplateError::InvalidHeader { header: "From" });
        }
        if from_name.is_some_and(|name| name.chars().any(char::is_control)) {
            return Err(TemplateError::InvalidHeader { header: "From" });
        }

        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|name| {
            if name == HTML {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let parts = [
            (TemplatePart::Subject, Some(subject)),
            (TemplatePart::Text, Some(text)),
            (TemplatePart::Html, html),
        ];
        for (part, source) in parts {
            if let Some(source) = source {
                env.add_template_owned(part.name(), source.to_owned())
                    .map_err(|source| TemplateError::Syntax { part, source })?;
            }
        }

        Ok(CampaignTemplate {
            env,
            from_address: from_address.to_owned(),
            from_name: from_name.map(str::to_owned),
            has_html: html.is_some(),
        })
    }

    /// Renders the templates for one lead and builds the complete message
    /// (headers and MIME body, CRLF line ends), ready for DKIM and DATA.
    pub fn render(&self, ctx: &RenderContext<'_>) -> Result<Vec<u8>, TemplateError> {
        check_header("To", ctx.recipient, is_header_token)?;
        check_header("Message-ID", ctx.message_id, is_header_token)?;
        check_header("List-Unsubscribe", ctx.unsubscribe_url, is_header_token)?;
        if let Some(mailto) = ctx.unsubscribe_mailto {
            check_header("List-Unsubscribe", mailto, is_header_token)?;
        }
        check_header("Feedback-ID", ctx.feedback_id, |v| {
            !v.is_empty() && !v.chars().any(char::is_control)
        })?;

        // Engine-provided names first: they win over lead fields of the same name.
        let vars = context! {
            email => ctx.recipient,
            unsubscribe_url => ctx.unsubscribe_url,
            ..Value::from_serialize(ctx.fields)
        };
        let subject = single_line(&self.render_part(TemplatePart::Subject, &vars)?);
        let text = crlf(&self.render_part(TemplatePart::Text, &vars)?);
        let html = if self.has_html {
            let html = self.render_part(TemplatePart::Html, &vars)?;
            Some(crlf(&match &ctx.tracking {
                Some(tracking) => tracking.apply(&html),
                None => html,
            }))
        } else {
            None
        };

        let mut unsubscribe = vec![ctx.unsubscribe_url.to_owned()];
        if let Some(mailto) = ctx.unsubscribe_mailto {
            unsubscribe.push(if mailto.starts_with("mailto:") {
                mailto.to_owned()
            } else {
                format!("mailto:{mailto}")
            });
        }

        let from = Address::new_address(self.from_name.as_deref(), self.from_address.as_str());
        let mut builder = MessageBuilder::new()
            .from(from)
            .to(ctx.recipient)
            .subject(subject)
            .message_id(MessageId::new(ctx.message_id))
            .header("List-Unsubscribe", URL::new_list(unsubscribe.into_iter()))
            .header(
                "List-Unsubscribe-Post",
                Raw::new("List-Unsubscribe=One-Click"),
            )
            .header("Feedback-ID", Raw::new(ctx.feedback_id))
            .text_body(text);
        if let Some(html) = html {
            builder = builder.html_body(html);
        }
        // Date and MIME-Version are added by the builder.
        Ok(builder.write_to_vec()?)
    }

    fn render_part(&self, part: TemplatePart, vars: &Value) -> Result<String, TemplateError> {
        let render = || self.env.get_template(part.name())?.render(vars);
        render().map_err(|source| match source.kind() {
            ErrorKind::UndefinedError => TemplateError::MissingField { part, source },
            _ => TemplateError::Render { part, source },
        })
    }
}

/// A Message-ID for a job: `<job_id>@<domain>`, written without angle brackets
/// (the builder adds them). Stable for a job, so a retry reuses the same ID.
pub fn new_message_id(job_id: Uuid, domain: &str) -> String {
    format!("{}@{}", job_id, domain.trim().to_ascii_lowercase())
}

/// CR, LF and NUL would end or corrupt the header line: they become spaces.
fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if matches!(c, '\r' | '\n' | '\0') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Bodies go out with CRLF line ends only: a lone LF or CR (from the template or
/// a field) becomes CRLF, since many receivers refuse bare line ends.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            '\0' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An address, id or URL that goes between `<` and `>`: non-empty, no
/// whitespace, control characters or angle brackets.
fn is_header_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| !(c.is_control() || c.is_whitespace() || c == '<' || c == '>'))
}

fn check_header(
    header: &'static str,
    value: &str,
    ok: impl Fn(&str) -> bool,
) -> Result<(), TemplateError> {
    if ok(value) {
        Ok(())
    } else {
        Err(TemplateError::InvalidHeader { header })
    }
}

#[cfg(test)]
mod tests {
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
}
