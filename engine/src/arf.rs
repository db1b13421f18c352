//! Abuse Reporting Format (ARF, RFC 5965) feedback reports, as mailbox providers'
//! feedback loops send them: which message was reported, and as what.
//!
//! Pure parsing, called by the control API's `POST /v1/complaints`. [`parse`]
//! takes the request's `Content-Type` and body and accepts:
//!
//! - `multipart/report; report-type=feedback-report; boundary=…`: the report
//!   itself (a human-readable part, a `message/feedback-report` part, and the
//!   original message as `message/rfc822` or its headers as `text/rfc822-headers`);
//! - `message/feedback-report` alone: the report fields, optionally followed
//!   (after a blank line) by the original message's headers;
//! - `message/rfc822`: a whole feedback-loop email whose own `Content-Type` is one
//!   of the above (what a mailbox that receives the reports holds).
//!
//! It returns the reported message's `Message-ID` (normalised by
//! [`normalize_message_id`]) and the `Feedback-Type` (`abuse` when absent). CRLF
//! and LF line endings, folded headers, quoted parameters and base64 or
//! quoted-printable parts are understood; anything else is an [`ArfError`] that
//! says what is missing. Only the few MIME rules ARF needs are implemented here:
//! the full parser of the mail-parser family needs a newer compiler than ours
//! (see CRATES.md), and a report is headers, not content.

use thiserror::Error;

use crate::mime::{self, ContentType, split_headers, split_multipart};

/// What a feedback report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackReport {
    /// Lower-cased `Feedback-Type`: `abuse` (the default), `fraud`, `virus`,
    /// `other`, `not-spam`, …
    pub feedback_type: String,
    /// The reported message's `Message-ID`, without angle brackets, lower-cased.
    pub message_id: String,
}

impl FeedbackReport {
    /// Whether the report counts against the sender (everything but `not-spam`).
    pub fn is_complaint(&self) -> bool {
        self.feedback_type != "not-spam"
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ArfError {
    #[error(
        "content type {0:?} is not a feedback report (expected multipart/report; \
         report-type=feedback-report, message/feedback-report or message/rfc822)"
    )]
    NotAReport(String),
    #[error("multipart/report has no boundary parameter")]
    MissingBoundary,
    #[error("the report has no message/feedback-report part")]
    NoFeedbackPart,
    #[error("the report carries no original message (message/rfc822 or text/rfc822-headers part)")]
    NoOriginalMessage,
    #[error("the reported message has no Message-ID header")]
    MissingMessageId,
    #[error("Message-ID {0:?} is not of the form <left@right>")]
    BadMessageId(String),
    #[error("Feedback-Type {0:?} is not a feedback type")]
    BadFeedbackType(String),
    #[error("a part's {0} content does not decode")]
    BadEncoding(String),
    #[error("the report nests messages more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// Most message levels a report may nest (an email holding the report is 2).
const MAX_DEPTH: usize = 3;
/// Longest Message-ID accepted (an RFC 5322 line).
const MAX_MESSAGE_ID: usize = 998;

/// Parses a feedback report sent with `content_type`.
pub fn parse(content_type: &str, body: &[u8]) -> Result<FeedbackReport, ArfError> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    parse_entity(&ContentType::parse(content_type), &text, 0)
}

/// A `Message-ID` as the engine stores it (`send_jobs.message_id`): the part
/// inside the angle brackets (which are optional), trimmed and lower-cased (the
/// engine's ids are `<job uuid>@<domain>`, all lower case). It must look like
/// `left@right` without spaces or control characters.
pub fn normalize_message_id(value: &str) -> Result<String, ArfError> {
    let trimmed = value.trim();
    let inner = match trimmed.find('<') {
        Some(open) => {
            let rest = &trimmed[open + 1..];
            let close = rest
                .find('>')
                .ok_or_else(|| ArfError::BadMessageId(trimmed.to_string()))?;
            &rest[..close]
        }
        None => trimmed,
    };
    let bad = || ArfError::BadMessageId(trimmed.chars().take(100).collect());
    let well_formed = inner.len() <= MAX_MESSAGE_ID
        && inner
            .split_once('@')
            .is_some_and(|(left, right)| !left.is_empty() && !right.is_empty())
        && inner
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>'));
    if !well_formed {
        return Err(bad());
    }
    Ok(inner.to_ascii_lowercase())
}

fn parse_entity(ct: &ContentType, body: &str, depth: usize) -> Result<FeedbackReport, ArfError> {
    if depth >= MAX_DEPTH {
        return Err(ArfError::TooDeep);
    }
    match ct.mime.as_str() {
        "multipart/report" => multipart_report(ct, body),
        "message/feedback-report" => {
            let (fields, rest) = split_headers(body);
            let (original, _) = split_headers(rest.trim_start_matches('\n'));
            let id = mime::header(&original, "message-id")
                .or_else(|| mime::header(&fields, "message-id"));
            report(&fields, id)
        }
        "message/rfc822" => {
            let (headers, rest) = split_headers(body);
            let inner =
                ContentType::parse(mime::header(&headers, "content-type").unwrap_or("text/plain"));
            let rest = decode(mime::header(&headers, "content-transfer-encoding"), rest)?;
            parse_entity(&inner, &rest, depth + 1)
        }
        other => Err(ArfError::NotAReport(other.to_string())),
    }
}

fn multipart_report(ct: &ContentType, body: &str) -> Result<FeedbackReport, ArfError> {
    if let Some(kind) = ct.param("report-type")
        && !kind.eq_ignore_ascii_case("feedback-report")
    {
        return Err(ArfError::NotAReport(format!(
            "multipart/report; report-type={kind}"
        )));
    }
    let boundary = ct.param("boundary").ok_or(ArfError::MissingBoundary)?;
    let mut fields = None;
    let mut original = None;
    for part in split_multipart(body, boundary) {
        let (headers, content) = split_headers(part);
        let part_type =
            ContentType::parse(mime::header(&headers, "content-type").unwrap_or("text/plain"));
        let is_feedback = part_type.mime == "message/feedback-report";
        let is_original = matches!(
            part_type.mime.as_str(),
            "message/rfc822" | "text/rfc822-headers" | "message/global" | "message/global-headers"
        );
        if !(is_feedback || is_original) {
            continue;
        }
        let content = decode(mime::header(&headers, "content-transfer-encoding"), content)?;
        let (part_headers, _) = split_headers(content.trim_start_matches('\n'));
        if is_feedback && fields.is_none() {
            fields = Some(part_headers);
        } else if is_original && original.is_none() {
            original = Some(part_headers);
        }
    }
    let fields = fields.ok_or(ArfError::NoFeedbackPart)?;
    let original = original.ok_or(ArfError::NoOriginalMessage)?;
    report(&fields, mime::header(&original, "message-id"))
}

fn report(
    fields: &[(String, String)],
    message_id: Option<&str>,
) -> Result<FeedbackReport, ArfError> {
    let feedback_type = match mime::header(fields, "feedback-type") {
        None => "abuse".to_string(),
        Some(value) => {
            let value = value.trim().to_ascii_lowercase();
            let ok = !value.is_empty()
                && value.len() <= 32
                && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                return Err(ArfError::BadFeedbackType(value));
            }
            value
        }
    };
    let message_id = normalize_message_id(message_id.ok_or(ArfError::MissingMessageId)?)?;
    Ok(FeedbackReport {
        feedback_type,
        message_id,
    })
}

/// Undoes a part's `Content-Transfer-Encoding`.
fn decode(encoding: Option<&str>, content: &str) -> Result<String, ArfError> {
    mime::decode(encoding, content).map_err(|mime::BadEncoding(e)| ArfError::BadEncoding(e))
}

#[cfg(test)]
mod tests;
