//! The typed result of one delivery attempt, and the pure rules that classify an
//! SMTP reply into it.
//!
//! Produced by [`super::SmtpConnection`]; consumed by the IP actors (job state,
//! retries, suppressions, reputation). Guarantees: 2xx → [`DeliveryOutcome::Sent`];
//! 4xx, a connection failure, a timeout or an unparseable reply →
//! [`DeliveryOutcome::Deferred`]; 5xx → [`DeliveryOutcome::Bounced`]. Every
//! non-sent outcome names the [`Stage`] it happened at, and carries the RFC 3463
//! enhanced status code (`x.y.z` at the start of the reply text) when present.
//! Nothing here does I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The SMTP stage an attempt reached; also the unit of the per-stage timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Opening the TCP connection (including host name lookup).
    Connect,
    /// Waiting for the server's 220 banner.
    Greeting,
    /// EHLO (or the HELO fallback).
    Ehlo,
    MailFrom,
    RcptTo,
    /// The DATA command and sending the message body.
    Data,
    /// After the final `.`: waiting for the server to accept the message.
    DataEnd,
}

impl Stage {
    /// A stable, lower-case name, fit for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "ehlo",
            Stage::MailFrom => "mail_from",
            Stage::RcptTo => "rcpt_to",
            Stage::Data => "data",
            Stage::DataEnd => "data_end",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one message on one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The server took responsibility for the message (2xx after the data).
    Sent { reply: String },
    /// Try again later: 4xx, connection failure, timeout or unparseable reply.
    /// `code` is `None` when the server gave no reply at all.
    Deferred {
        code: Option<u16>,
        enhanced: Option<String>,
        reply: String,
        stage: Stage,
    },
    /// Permanently refused (5xx).
    Bounced {
        code: u16,
        enhanced: Option<String>,
        reply: String,
        stage: Stage,
    },
}

impl DeliveryOutcome {
    /// Classifies a complete reply line such as `"550 5.1.1 user unknown"`
    /// received at `stage`. A reply without a leading 3-digit code is Deferred.
    pub fn from_reply(stage: Stage, reply: &str) -> Self {
        let reply = one_line(reply);
        match parse_code(&reply) {
            Some((code, text)) => Self::from_code(stage, code, text, reply.clone()),
            None => DeliveryOutcome::Deferred {
                code: None,
                enhanced: None,
                reply: format!("unparseable reply at {stage}: {reply}"),
                stage,
            },
        }
    }

    /// Classifies by `code`; `text` is the reply after the code (where the
    /// enhanced status code is looked for) and `reply` the whole line to keep.
    fn from_code(stage: Stage, code: u16, text: &str, reply: String) -> Self {
        let enhanced = parse_enhanced(text);
        match code {
            200..=299 => DeliveryOutcome::Sent { reply },
            500..=599 => DeliveryOutcome::Bounced {
                code,
                enhanced,
                reply,
                stage,
            },
            // 4xx, and anything else a broken server may say (1xx, 3xx where
            // not expected, 6xx…), is worth another try rather than a bounce.
            _ => DeliveryOutcome::Deferred {
                code: Some(code),
                enhanced,
                reply,
                stage,
            },
        }
    }

    /// No reply arrived within the stage's timeout.
    pub fn timeout(stage: Stage) -> Self {
        DeliveryOutcome::Deferred {
            code: None,
            enhanced: None,
            reply: format!("timeout at {stage}"),
            stage,
        }
    }

    /// The attempt's deadline (`[delivery] attempt_timeout_ms`) passed during
    /// `stage`, before the stage's own timeout.
    pub fn deadline_passed(stage: Stage) -> Self {
        DeliveryOutcome::Deferred {
            code: None,
            enhanced: None,
            reply: format!("attempt deadline passed at {stage}"),
            stage,
        }
    }

    /// The connection failed or closed (refused, reset, EOF) at `stage`.
    pub fn connection_failed(stage: Stage, detail: impl fmt::Display) -> Self {
        DeliveryOutcome::Deferred {
            code: None,
            enhanced: None,
            reply: one_line(&format!("connection failed at {stage}: {detail}")),
            stage,
        }
    }

    pub fn is_sent(&self) -> bool {
        matches!(self, DeliveryOutcome::Sent { .. })
    }

    pub fn is_deferred(&self) -> bool {
        matches!(self, DeliveryOutcome::Deferred { .. })
    }

    pub fn is_bounced(&self) -> bool {
        matches!(self, DeliveryOutcome::Bounced { .. })
    }

    /// The SMTP reply code, when the server gave one.
    pub fn code(&self) -> Option<u16> {
        match self {
            DeliveryOutcome::Sent { reply } => parse_code(reply).map(|(code, _)| code),
            DeliveryOutcome::Deferred { code, .. } => *code,
            DeliveryOutcome::Bounced { code, .. } => Some(*code),
        }
    }

    /// The RFC 3463 enhanced status code (`"5.1.1"`), when the reply had one.
    pub fn enhanced(&self) -> Option<&str> {
        match self {
            DeliveryOutcome::Sent { .. } => None,
            DeliveryOutcome::Deferred { enhanced, .. }
            | DeliveryOutcome::Bounced { enhanced, .. } => enhanced.as_deref(),
        }
    }

    /// The reply text (or our description of the failure).
    pub fn reply(&self) -> &str {
        match self {
            DeliveryOutcome::Sent { reply }
            | DeliveryOutcome::Deferred { reply, .. }
            | DeliveryOutcome::Bounced { reply, .. } => reply,
        }
    }

    /// The stage a non-sent outcome happened at.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            DeliveryOutcome::Sent { .. } => None,
            DeliveryOutcome::Deferred { stage, .. } | DeliveryOutcome::Bounced { stage, .. } => {
                Some(*stage)
            }
        }
    }

    /// A bounce that says the address itself is bad (RFC 3463 class 5,
    /// subject 1: `5.1.x`, e.g. 5.1.1 user unknown), the kind that belongs on the
    /// suppression list. Policy refusals (`5.7.x`: blocked IP, spam) are bounces
    /// too but say nothing about the address, so they are not hard here.
    pub fn is_hard_bounce(&self) -> bool {
        match self {
            DeliveryOutcome::Bounced { enhanced, .. } => enhanced
                .as_deref()
                .is_some_and(|enhanced| enhanced.starts_with("5.1.")),
            _ => false,
        }
    }

    /// The server asked to close the connection (421): whatever the stage, the
    /// session is over.
    pub fn closes_connection(&self) -> bool {
        self.code() == Some(421)
    }
}

/// Splits `"550 5.1.1 text"` into `(550, "5.1.1 text")`. Accepts a space, a `-`
/// (multi-line) or nothing after the code.
fn parse_code(reply: &str) -> Option<(u16, &str)> {
    let digits = reply.get(..3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = digits.parse().ok()?;
    if !(100..=599).contains(&code) {
        return None;
    }
    let rest = &reply[3..];
    match rest.as_bytes().first() {
        None => Some((code, "")),
        Some(b' ' | b'-') => Some((code, &rest[1..])),
        Some(_) => None,
    }
}

/// The RFC 3463 enhanced status code at the start of `text`: class `2|4|5`, then
/// subject and detail of 1–3 digits each, followed by whitespace or the end.
pub fn parse_enhanced(text: &str) -> Option<String> {
    let token = text.split_whitespace().next()?;
    let mut parts = token.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !matches!(class, "2" | "4" | "5") {
        return None;
    }
    let number =
        |part: &str| (1..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    if number(subject) && number(detail) {
        Some(token.to_owned())
    } else {
        None
    }
}

/// Replies are kept on one line so they fit a log field or a database column.
fn one_line(text: &str) -> String {
    text.trim_end()
        .chars()
        .map(|c| {
            if c == '\r' || c == '\n' || c == '\0' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_are_stable() {
        let all = [
            (Stage::Connect, "connect"),
            (Stage::Greeting, "greeting"),
            (Stage::Ehlo, "ehlo"),
            (Stage::MailFrom, "mail_from"),
            (Stage::RcptTo, "rcpt_to"),
            (Stage::Data, "data"),
            (Stage::DataEnd, "data_end"),
        ];
        for (stage, name) in all {
            assert_eq!(stage.as_str(), name);
            assert_eq!(stage.to_string(), name);
            assert_eq!(
                serde_json::to_string(&stage).unwrap(),
                format!("\"{name}\"")
            );
        }
    }

    #[test]
    fn two_xx_is_sent() {
        let outcome = DeliveryOutcome::from_reply(Stage::DataEnd, "250 2.0.0 OK queued\r\n");
        assert_eq!(
            outcome,
            DeliveryOutcome::Sent {
                reply: "250 2.0.0 OK queued".into()
            }
        );
        assert_eq!(outcome.code(), Some(250));
        assert_eq!(outcome.stage(), None);
    }

    #[test]
    fn five_xx_is_bounced_with_enhanced_code() {
        let outcome = DeliveryOutcome::from_reply(Stage::RcptTo, "550 5.1.1 user unknown");
        assert_eq!(
            outcome,
            DeliveryOutcome::Bounced {
                code: 550,
                enhanced: Some("5.1.1".into()),
                reply: "550 5.1.1 user unknown".into(),
                stage: Stage::RcptTo,
            }
        );
        assert!(outcome.is_hard_bounce());
        let policy = DeliveryOutcome::from_reply(Stage::RcptTo, "554 5.7.1 blocked");
        assert!(policy.is_bounced() && !policy.is_hard_bounce());
    }

    #[test]
    fn four_xx_is_deferred() {
        let outcome = DeliveryOutcome::from_reply(Stage::MailFrom, "421 4.7.0 [TSS04] try later");
        assert!(outcome.is_deferred());
        assert_eq!(outcome.code(), Some(421));
        assert_eq!(outcome.enhanced(), Some("4.7.0"));
        assert_eq!(outcome.stage(), Some(Stage::MailFrom));
        assert!(outcome.closes_connection());
        let plain = DeliveryOutcome::from_reply(Stage::RcptTo, "450 mailbox busy");
        assert_eq!(plain.enhanced(), None);
        assert!(!plain.closes_connection());
    }

    #[test]
    fn garbage_and_odd_codes_are_deferred() {
        for reply in ["", "hello", "25", "2500 x", "099 x", "abc 5.1.1"] {
            let outcome = DeliveryOutcome::from_reply(Stage::Greeting, reply);
            assert!(outcome.is_deferred(), "{reply:?}");
            assert_eq!(outcome.code(), None, "{reply:?}");
            assert!(outcome.reply().starts_with("unparseable reply at greeting"));
        }
        let odd = DeliveryOutcome::from_reply(Stage::Data, "354 go ahead");
        assert!(odd.is_deferred());
        assert_eq!(odd.code(), Some(354));
    }

    #[test]
    fn timeout_and_connection_failure_name_the_stage() {
        let outcome = DeliveryOutcome::timeout(Stage::RcptTo);
        assert_eq!(outcome.reply(), "timeout at rcpt_to");
        assert_eq!(outcome.stage(), Some(Stage::RcptTo));
        assert_eq!(outcome.code(), None);
        let failed = DeliveryOutcome::connection_failed(Stage::Connect, "refused\r\nx");
        assert_eq!(failed.reply(), "connection failed at connect: refused  x");
        assert!(failed.is_deferred());
    }

    #[test]
    fn enhanced_code_parsing() {
        assert_eq!(
            parse_enhanced("5.1.1 user unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(parse_enhanced("4.7.28 rate").as_deref(), Some("4.7.28"));
        assert_eq!(parse_enhanced("2.0.0").as_deref(), Some("2.0.0"));
        assert_eq!(parse_enhanced("5.1.1234 x"), None);
        assert_eq!(parse_enhanced("3.1.1 x"), None);
        assert_eq!(parse_enhanced("5.1 x"), None);
        assert_eq!(parse_enhanced("5.1.1.1 x"), None);
        assert_eq!(parse_enhanced("user 5.1.1"), None);
        assert_eq!(parse_enhanced("5.1.1user"), None);
        assert_eq!(parse_enhanced(""), None);
    }

    #[test]
    fn multi_line_reply_is_flattened() {
        let outcome =
            DeliveryOutcome::from_reply(Stage::RcptTo, "550-5.7.1 first\r\n550 5.7.1 second");
        assert_eq!(outcome.enhanced(), Some("5.7.1"));
        assert!(!outcome.reply().contains('\n'));
    }
}
