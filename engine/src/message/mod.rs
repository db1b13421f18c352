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
//!   List-Unsubscribe, List-Unsubscribe-Post (RFC 8058 one-click) and Feedback-ID;
//! - only allowlisted syntax compiles ([`TemplateError::Refused`], see
//!   `allowlist.rs`): nothing that concatenates, repeats, assigns or grows a
//!   string, since fuel counts instructions and not the bytes they allocate;
//! - every render runs under a [`RenderBudget`] (`[templates]`): at most `fuel`
//!   minijinja instructions per part ([`TemplateError::OutOfFuel`]), a subject of
//!   at most `max_subject_bytes` and text/HTML parts of at most `max_part_bytes`
//!   after rendering ([`TemplateError::TooLarge`]); output past a cap is never
//!   produced, the render stops at the first byte over it.
//!   [`CampaignTemplate::dry_run`] applies the same budget to a render with no
//!   lead fields, for the API to refuse what explodes without any lead data.
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

mod allowlist;
mod budget;

use allowlist::CheckError;
pub use allowlist::Refusal;
use budget::CappedWriter;
pub use budget::RenderBudget;

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
    /// The template uses syntax outside the allowlist (see `allowlist.rs`):
    /// caught at campaign creation, and again at send for stored templates.
    #[error("{part}: {refusal}")]
    Refused {
        part: TemplatePart,
        #[source]
        refusal: Refusal,
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
    /// The part ran its fuel out: a loop or computation too large for the budget.
    #[error("render fuel of {fuel} exhausted in the {part} template")]
    OutOfFuel { part: TemplatePart, fuel: u64 },
    /// The part's output passed its cap.
    #[error("{part} exceeds {limit} bytes after rendering")]
    TooLarge { part: TemplatePart, limit: usize },
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
    /// A follow-up step's thread: the Message-IDs (without angle brackets) of
    /// the lead's earlier steps, oldest first. `In-Reply-To` is the last,
    /// `References` all of them (RFC 5322 §3.6.4); empty: neither header.
    pub thread: &'a [String],
}

impl TemplateError {
    /// The render broke its [`RenderBudget`] (fuel or an output cap): the same
    /// template with the same data would break it again.
    pub fn is_budget(&self) -> bool {
        matches!(
            self,
            TemplateError::OutOfFuel { .. } | TemplateError::TooLarge { .. }
        )
    }

    /// The template part the error is about, when it is about one.
    pub fn part(&self) -> Option<TemplatePart> {
        match self {
            TemplateError::Syntax { part, .. }
            | TemplateError::Refused { part, .. }
            | TemplateError::MissingField { part, .. }
            | TemplateError::Render { part, .. }
            | TemplateError::OutOfFuel { part, .. }
            | TemplateError::TooLarge { part, .. } => Some(*part),
            TemplateError::InvalidHeader { .. } | TemplateError::Build(_) => None,
        }
    }
}

/// A campaign's compiled templates and sender; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct CampaignTemplate {
    env: Environment<'static>,
    budget: RenderBudget,
    from_address: String,
    from_name: Option<String>,
    has_html: bool,
}

impl CampaignTemplate {
    /// Compiles the templates once, under the default [`RenderBudget`].
    pub fn compile(
        from_address: &str,
        from_name: Option<&str>,
        subject: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<CampaignTemplate, TemplateError> {
        let budget = RenderBudget::default();
        Self::compile_with_budget(from_address, from_name, subject, text, html, budget)
    }

    /// Compiles the templates once; every later render runs under `budget`.
    /// Fails on a syntax error or on a sender that cannot go into a header.
    pub fn compile_with_budget(
        from_address: &str,
        from_name: Option<&str>,
        subject: &str,
        text: &str,
        html: Option<&str>,
        budget: RenderBudget,
    ) -> Result<CampaignTemplate, TemplateError> {
        let sources = [subject, text];
        Self::build(
            from_address,
            from_name,
            sources,
            html,
            budget,
            UndefinedBehavior::Strict,
        )
    }

    /// What the API checks before it stores a campaign: the templates compile,
    /// and rendered for a lead without fields (missing fields read as empty,
    /// `email` and `unsubscribe_url` as placeholders) no part breaks `budget`.
    /// Other render errors pass: real lead data may well satisfy the template.
    pub fn dry_run(
        from_address: &str,
        from_name: Option<&str>,
        subject: &str,
        text: &str,
        html: Option<&str>,
        budget: RenderBudget,
    ) -> Result<(), TemplateError> {
        Self::compile_with_budget(from_address, from_name, subject, text, html, budget)?;
        let sources = [subject, text];
        let lenient = Self::build(
            from_address,
            from_name,
            sources,
            html,
            budget,
            UndefinedBehavior::Lenient,
        )?;
        let vars = context! {
            email => "lead@example.com",
            unsubscribe_url => "https://unsubscribe.example.com/u/token",
        };
        let mut parts = vec![TemplatePart::Subject, TemplatePart::Text];
        if lenient.has_html {
            parts.push(TemplatePart::Html);
        }
        for part in parts {
            match lenient.render_part(part, &vars) {
                Err(err) if err.is_budget() => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }

    fn build(
        from_address: &str,
        from_name: Option<&str>,
        [subject, text]: [&str; 2],
        html: Option<&str>,
        budget: RenderBudget,
        undefined: UndefinedBehavior,
    ) -> Result<CampaignTemplate, TemplateError> {
        if !is_header_token(from_address) || !from_address.contains('@') {
            return Err(TemplateError::InvalidHeader { header: "From" });
        }
        if from_name.is_some_and(|name| name.chars().any(char::is_control)) {
            return Err(TemplateError::InvalidHeader { header: "From" });
        }

        let mut env = Environment::new();
        env.set_undefined_behavior(undefined);
        env.set_fuel(Some(budget.fuel));
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
                // Before minijinja compiles (and constant-folds) anything.
                allowlist::check(part.name(), source).map_err(|err| match err {
                    CheckError::Syntax(source) => TemplateError::Syntax { part, source },
                    CheckError::Refused(refusal) => TemplateError::Refused { part, refusal },
                })?;
                env.add_template_owned(part.name(), source.to_owned())
                    .map_err(|source| TemplateError::Syntax { part, source })?;
            }
        }

        Ok(CampaignTemplate {
            env,
            budget,
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
        for id in ctx.thread {
            check_header("References", id, is_header_token)?;
        }

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
            let html = match &ctx.tracking {
                Some(tracking) => tracking.apply(&html),
                None => html,
            };
            // Tracked links are longer than the originals: the cap holds for
            // the part as sent.
            if html.len() > self.budget.max_part_bytes {
                return Err(TemplateError::TooLarge {
                    part: TemplatePart::Html,
                    limit: self.budget.max_part_bytes,
                });
            }
            Some(crlf(&html))
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
        if let Some(parent) = ctx.thread.last() {
            builder = builder
                .in_reply_to(MessageId::new(parent.as_str()))
                .references(MessageId::from(ctx.thread));
        }
        if let Some(html) = html {
            builder = builder.html_body(html);
        }
        // Date and MIME-Version are added by the builder.
        Ok(builder.write_to_vec()?)
    }

    /// Renders one part into a [`CappedWriter`] sized for it: the render stops
    /// at the first byte over the cap, or when the part's fuel runs out.
    fn render_part(&self, part: TemplatePart, vars: &Value) -> Result<String, TemplateError> {
        let limit = match part {
            TemplatePart::Subject => self.budget.max_subject_bytes,
            TemplatePart::Text | TemplatePart::Html => self.budget.max_part_bytes,
        };
        let mut out = CappedWriter::new(limit);
        let rendered = self
            .env
            .get_template(part.name())
            .and_then(|template| template.render_captured_to(vars, &mut out).map(drop));
        match rendered {
            Ok(_) => Ok(out.into_string()),
            Err(_) if out.exceeded() => Err(TemplateError::TooLarge { part, limit }),
            Err(source) => Err(match source.kind() {
                ErrorKind::OutOfFuel => TemplateError::OutOfFuel {
                    part,
                    fuel: self.budget.fuel,
                },
                ErrorKind::UndefinedError => TemplateError::MissingField { part, source },
                _ => TemplateError::Render { part, source },
            }),
        }
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
mod tests;
