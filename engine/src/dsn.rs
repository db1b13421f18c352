//! Delivery status notifications (DSN, RFC 3464): the reports a receiving
//! server sends back after it accepted a message and later failed (or delayed)
//! delivering it — bounces that arrive after the 250.
//!
//! Pure parsing, called by the control API's `POST /v1/bounces`. [`parse`] takes
//! the request's `Content-Type` and body and accepts:
//!
//! - `multipart/report; report-type=delivery-status; boundary=…`: a human-readable
//!   part, a `message/delivery-status` part, and the original message as
//!   `message/rfc822` or its headers as `text/rfc822-headers` (RFC 6533's
//!   `message/global-delivery-status` and `message/global-headers` too);
//! - `message/rfc822`: the whole bounce email whose own `Content-Type` is the
//!   above (what a bounce mailbox holds).
//!
//! It returns the original message's `Message-ID` (normalised by
//! [`crate::arf::normalize_message_id`]) and every per-recipient block of the
//! status part: `Final-Recipient`, `Action`, `Status`, `Diagnostic-Code`,
//! `Remote-MTA`. Anything else is a [`DsnError`] that says what is missing.
//! The MIME rules are `crate::mime`'s (shared with ARF); a report is headers,
//! not content. Bounded: at most [`MAX_RECIPIENTS`] recipient blocks are kept,
//! values are cut at [`MAX_VALUE`] bytes.

use thiserror::Error;

use crate::arf::normalize_message_id;
use crate::mime::{self, ContentType};
use crate::smtp::classify::{BounceClass, classify};
use crate::smtp::outcome::{DeliveryOutcome, Stage};

/// Most recipient blocks kept from one report.
pub const MAX_RECIPIENTS: usize = 100;
/// Most header blocks read from a status part (kept or skipped).
const MAX_BLOCKS: usize = 4 * MAX_RECIPIENTS;
/// Longest field value kept (a diagnostic is one SMTP reply).
pub const MAX_VALUE: usize = 1_000;
/// Most message levels a report may nest (an email holding the report is 2).
const MAX_DEPTH: usize = 3;

/// What a delivery status notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The original message's `Message-ID`, without angle brackets, lower-cased.
    pub message_id: String,
    /// The per-recipient blocks, in order (at least one).
    pub recipients: Vec<RecipientStatus>,
}

/// One per-recipient block of a `message/delivery-status` part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// The address of `Final-Recipient: rfc822; <address>`, lower-cased.
    pub final_recipient: Option<String>,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded` (lower-cased).
    pub action: String,
    /// The RFC 3463 status, `class.subject.detail` (e.g. `5.1.1`).
    pub status: String,
    /// `Diagnostic-Code` without its type (`smtp; 550 …` → `550 …`).
    pub diagnostic: Option<String>,
    /// `Remote-MTA` without its type.
    pub remote_mta: Option<String>,
}

/// What a report means for the message it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A permanent failure (`failed`, status 5.x.x): the message bounced.
    Permanent,
    /// A delay or a temporary failure (status 4.x.x): recorded only.
    Transient,
    /// Delivered, relayed or expanded: nothing failed.
    Success,
}

impl RecipientStatus {
    /// `failed` is permanent whatever the status (a 4.4.7 "delivery time
    /// expired" too), `delayed` transient; otherwise the status class decides.
    pub fn verdict(&self) -> Verdict {
        match (self.action.as_str(), self.status.as_bytes()[0]) {
            ("failed", _) | (_, b'5') => Verdict::Permanent,
            ("delayed", _) | (_, b'4') => Verdict::Transient,
            _ => Verdict::Success,
        }
    }

    /// The basic SMTP reply code of the diagnostic (`smtp; 550 5.1.1 …` → 550).
    pub fn smtp_code(&self) -> Option<u16> {
        let text = self.diagnostic.as_deref()?;
        let code: u16 = text.get(..3)?.parse().ok()?;
        ((200..600).contains(&code)
            && text[3..]
                .chars()
                .next()
                .is_none_or(|c| c == ' ' || c == '-'))
        .then_some(code)
    }

    /// The bounce class the SMTP path would give the same reply.
    pub fn class(&self) -> BounceClass {
        let outcome = self.as_outcome();
        classify(&outcome).unwrap_or(BounceClass::Other)
    }

    /// Whether the address itself is bad: what the SMTP path suppresses.
    pub fn is_hard(&self) -> bool {
        self.verdict() == Verdict::Permanent
            && (self.as_outcome().is_hard_bounce() || self.class().is_hard())
    }

    fn as_outcome(&self) -> DeliveryOutcome {
        let code = self.smtp_code().unwrap_or(if self.status.starts_with('4') {
            450
        } else {
            550
        });
        let reply = self.diagnostic.clone().unwrap_or_default();
        let enhanced = Some(self.status.clone());
        if self.verdict() == Verdict::Transient {
            DeliveryOutcome::Deferred {
                code: Some(code),
                enhanced,
                reply,
                stage: Stage::Data,
            }
        } else {
            DeliveryOutcome::Bounced {
                code,
                enhanced,
                reply,
                stage: Stage::Data,
            }
        }
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DsnError {
    #[error(
        "content type {0:?} is not a delivery status notification (expected multipart/report; \
         report-type=delivery-status, or message/rfc822)"
    )]
    NotAReport(String),
    #[error("multipart/report has no boundary parameter")]
    MissingBoundary,
    #[error("the report has no message/delivery-status part")]
    NoStatusPart,
    #[error("the delivery-status part has no per-recipient block with Action and Status")]
    NoRecipient,
    #[error("Status {0:?} is not an RFC 3463 status code (class.subject.detail)")]
    BadStatus(String),
    #[error("the report carries no original message (message/rfc822 or text/rfc822-headers part)")]
    NoOriginalMessage,
    #[error("the original message has no Message-ID header")]
    MissingMessageId,
    #[error("Message-ID: {0}")]
    BadMessageId(String),
    #[error("a part's {0} content does not decode")]
    BadEncoding(String),
    #[error("the report nests messages more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// Parses a delivery status notification sent with `content_type`.
pub fn parse(content_type: &str, body: &[u8]) -> Result<DeliveryReport, DsnError> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    parse_entity(&ContentType::parse(content_type), &text, 0)
}

fn parse_entity(ct: &ContentType, body: &str, depth: usize) -> Result<DeliveryReport, DsnError> {
    if depth >= MAX_DEPTH {
        return Err(DsnError::TooDeep);
    }
    match ct.mime.as_str() {
        "multipart/report" => multipart_report(ct, body),
        "message/rfc822" => {
            let (headers, rest) = mime::split_headers(body);
            let inner =
                ContentType::parse(mime::header(&headers, "content-type").unwrap_or("text/plain"));
            let rest = decode(mime::header(&headers, "content-transfer-encoding"), rest)?;
            parse_entity(&inner, &rest, depth + 1)
        }
        other => Err(DsnError::NotAReport(other.to_string())),
    }
}

fn multipart_report(ct: &ContentType, body: &str) -> Result<DeliveryReport, DsnError> {
    match ct.param("report-type") {
        Some(kind) if kind.eq_ignore_ascii_case("delivery-status") => {}
        Some(kind) => {
            return Err(DsnError::NotAReport(format!(
                "multipart/report; report-type={kind}"
            )));
        }
        None => {
            return Err(DsnError::NotAReport(
                "multipart/report without report-type".to_string(),
            ));
        }
    }
    let boundary = ct.param("boundary").ok_or(DsnError::MissingBoundary)?;
    let mut status = None;
    let mut original = None;
    for part in mime::split_multipart(body, boundary) {
        let (headers, content) = mime::split_headers(part);
        let part_type =
            ContentType::parse(mime::header(&headers, "content-type").unwrap_or("text/plain"));
        let is_status = matches!(
            part_type.mime.as_str(),
            "message/delivery-status" | "message/global-delivery-status"
        );
        let is_original = matches!(
            part_type.mime.as_str(),
            "message/rfc822" | "text/rfc822-headers" | "message/global" | "message/global-headers"
        );
        if !(is_status || is_original) {
            continue;
        }
        let content = decode(mime::header(&headers, "content-transfer-encoding"), content)?;
        if is_status && status.is_none() {
            status = Some(recipients(&content)?);
        } else if is_original && original.is_none() {
            let (original_headers, _) = mime::split_headers(content.trim_start_matches('\n'));
            original = Some(original_headers);
        }
    }
    let recipients = status.ok_or(DsnError::NoStatusPart)?;
    let original = original.ok_or(DsnError::NoOriginalMessage)?;
    let message_id = mime::header(&original, "message-id").ok_or(DsnError::MissingMessageId)?;
    let message_id =
        normalize_message_id(message_id).map_err(|e| DsnError::BadMessageId(e.to_string()))?;
    Ok(DeliveryReport {
        message_id,
        recipients,
    })
}

/// The per-recipient blocks of a `message/delivery-status` body: header
/// blocks separated by blank lines, the first being the per-message fields.
fn recipients(content: &str) -> Result<Vec<RecipientStatus>, DsnError> {
    let mut rest = content;
    let mut blocks = Vec::new();
    let mut first = true;
    // Every block read counts, kept or not: a body of a million tiny blocks
    // costs at most this many passes (each one advances `rest`).
    for _ in 0..MAX_BLOCKS {
        rest = rest.trim_start();
        if rest.is_empty() || blocks.len() >= MAX_RECIPIENTS {
            break;
        }
        let (fields, after) = mime::split_headers(rest);
        if fields.is_empty() {
            break;
        }
        rest = after;
        if std::mem::take(&mut first) && mime::header(&fields, "action").is_none() {
            continue; // the per-message fields (Reporting-MTA, Arrival-Date, …)
        }
        let (Some(action), Some(status)) = (
            mime::header(&fields, "action"),
            mime::header(&fields, "status"),
        ) else {
            continue;
        };
        blocks.push(RecipientStatus {
            final_recipient: mime::header(&fields, "final-recipient")
                .map(|v| cut(typed_value(v)).to_ascii_lowercase()),
            action: cut(action).to_ascii_lowercase(),
            status: status_code(status)?,
            diagnostic: mime::header(&fields, "diagnostic-code").map(|v| cut(typed_value(v))),
            remote_mta: mime::header(&fields, "remote-mta").map(|v| cut(typed_value(v))),
        });
    }
    if blocks.is_empty() {
        return Err(DsnError::NoRecipient);
    }
    Ok(blocks)
}

/// `rfc822; ann@example.com` → `ann@example.com` (the part after the type).
fn typed_value(value: &str) -> &str {
    value.split_once(';').map_or(value, |(_, v)| v).trim()
}

/// The value cut at [`MAX_VALUE`] bytes (on a character boundary), with
/// control characters turned into spaces.
fn cut(value: &str) -> String {
    let mut end = value.len().min(MAX_VALUE);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `5.1.1` (a comment after it is dropped): class 2, 4 or 5, then 1–3 and
/// 1–3 digits.
fn status_code(value: &str) -> Result<String, DsnError> {
    let code = value.split_whitespace().next().unwrap_or("");
    let parts: Vec<&str> = code.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(DsnError::BadStatus(value.chars().take(40).collect()));
    }
    Ok(code.to_string())
}

fn decode(encoding: Option<&str>, content: &str) -> Result<String, DsnError> {
    mime::decode(encoding, content).map_err(|mime::BadEncoding(e)| DsnError::BadEncoding(e))
}

#[cfg(test)]
mod tests;
