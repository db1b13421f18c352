//! Bounce classification: why a delivery attempt did not succeed, as one of a
//! small, fixed set of [`BounceClass`]es (the kind KumoMTA's bounce classifier
//! and PowerMTA's bounce categories produce).
//!
//! Called for every non-sent [`DeliveryOutcome`] by the delivery workers: the class
//! goes into the delivery event and metric labels, and [`BounceClass::is_hard`]
//! (through [`should_suppress`]) decides whether the recipient joins the tenant's
//! suppression list. Pure; no I/O.
//!
//! Order of evidence, most trusted first:
//! 1. a specific RFC 3463 enhanced status code (`5.1.1`, `5.2.2`, `5.7.26`, …);
//! 2. well-known reply text (`user unknown`, `mailbox full`, `blocked using`, …),
//!    which also refines the generic codes servers use for many reasons (`x.0.0`,
//!    `x.7.0`, `x.7.1`, `x.5.0`, `4.2.1`, `5.4.1`);
//! 3. the generic enhanced code's usual meaning;
//! 4. the basic reply code (`552` mailbox full, `5xx` at the greeting: policy).
//!
//! Outcomes without a reply code (our own descriptions of timeouts and connection
//! failures) are connection or DNS failures, or protocol errors for an
//! unparseable reply.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::outcome::{DeliveryOutcome, Stage};

/// Why an attempt failed; a bounded set fit for metric labels and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceClass {
    /// The mailbox does not exist (5.1.1 user unknown). Hard.
    InvalidRecipient,
    /// The recipient domain does not exist or accepts no mail (5.1.2, a null MX,
    /// NXDOMAIN). Hard.
    BadDomain,
    /// The mailbox exists but is disabled or closed (5.2.1 disabled). Hard.
    InactiveMailbox,
    /// Over quota (5.2.2). Soft: the owner may clean up.
    MailboxFull,
    /// The message is larger than the receiver accepts (5.2.3, 5.3.4).
    MessageTooLarge,
    /// The sender address is refused (5.1.7, 5.1.8): about us, not the recipient.
    InvalidSender,
    /// Blocked by policy or reputation: block lists, IP/domain reputation,
    /// unauthorized senders (5.7.1). About the sender.
    PolicyBlock,
    /// The content was judged spam, phishing or malware.
    SpamContent,
    /// SPF, DKIM, DMARC or reverse-DNS checks failed (5.7.20–5.7.27).
    AuthFailure,
    /// A DNS lookup failed (4.4.3), ours or the receiver's.
    DnsFailure,
    /// The receiver throttles us: too many messages, connections or recipients.
    RateLimited,
    /// No connection, a dropped connection or a timeout.
    ConnectionFailure,
    /// The SMTP dialogue itself went wrong: syntax, sequence, unparseable reply.
    ProtocolError,
    /// Greylisting: a new (sender, recipient) pair told to come back in a few
    /// minutes ([`crate::greylist::is_greylisting`]). Temporary, no signal.
    Greylisted,
    /// Any other temporary failure (4xx).
    Transient,
    /// Any other permanent failure.
    Other,
}

impl BounceClass {
    /// Every class, for tests and metric pre-registration.
    pub const ALL: [BounceClass; 16] = [
        BounceClass::InvalidRecipient,
        BounceClass::BadDomain,
        BounceClass::InactiveMailbox,
        BounceClass::MailboxFull,
        BounceClass::MessageTooLarge,
        BounceClass::InvalidSender,
        BounceClass::PolicyBlock,
        BounceClass::SpamContent,
        BounceClass::AuthFailure,
        BounceClass::DnsFailure,
        BounceClass::RateLimited,
        BounceClass::ConnectionFailure,
        BounceClass::ProtocolError,
        BounceClass::Greylisted,
        BounceClass::Transient,
        BounceClass::Other,
    ];

    /// A stable snake_case label (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            BounceClass::InvalidRecipient => "invalid_recipient",
            BounceClass::BadDomain => "bad_domain",
            BounceClass::InactiveMailbox => "inactive_mailbox",
            BounceClass::MailboxFull => "mailbox_full",
            BounceClass::MessageTooLarge => "message_too_large",
            BounceClass::InvalidSender => "invalid_sender",
            BounceClass::PolicyBlock => "policy_block",
            BounceClass::SpamContent => "spam_content",
            BounceClass::AuthFailure => "auth_failure",
            BounceClass::DnsFailure => "dns_failure",
            BounceClass::RateLimited => "rate_limited",
            BounceClass::ConnectionFailure => "connection_failure",
            BounceClass::ProtocolError => "protocol_error",
            BounceClass::Greylisted => "greylisted",
            BounceClass::Transient => "transient",
            BounceClass::Other => "other",
        }
    }

    /// Whether a permanent failure of this class says the *address* is bad, so it
    /// belongs on the tenant's suppression list. Policy, spam and authentication
    /// refusals are about the sender; a full mailbox may empty.
    pub fn is_hard(self) -> bool {
        matches!(
            self,
            BounceClass::InvalidRecipient | BounceClass::BadDomain | BounceClass::InactiveMailbox
        )
    }
}

impl fmt::Display for BounceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of a non-sent outcome; `None` for [`DeliveryOutcome::Sent`].
pub fn classify(outcome: &DeliveryOutcome) -> Option<BounceClass> {
    let (code, enhanced, reply, stage) = match outcome {
        DeliveryOutcome::Sent { .. } => return None,
        _ if crate::greylist::is_greylisting(outcome) => return Some(BounceClass::Greylisted),
        DeliveryOutcome::Deferred {
            code,
            enhanced,
            reply,
            stage,
        } => (*code, enhanced.as_deref(), reply.as_str(), *stage),
        DeliveryOutcome::Bounced {
            code,
            enhanced,
            reply,
            stage,
        } => (Some(*code), enhanced.as_deref(), reply.as_str(), *stage),
    };
    let text = reply.to_ascii_lowercase();
    let Some(code) = code else {
        return Some(without_code(&text));
    };
    let enhanced = enhanced.and_then(Enhanced::parse);
    if let Some(Evidence::Specific(class)) = enhanced.map(Enhanced::class) {
        return Some(class);
    }
    if let Some(class) = by_text(&text) {
        return Some(class);
    }
    if let Some(Evidence::Generic(class)) = enhanced.map(Enhanced::class) {
        return Some(class);
    }
    Some(by_code(code, stage))
}

/// A bounce whose class means the recipient's address should be suppressed.
/// Deferrals never suppress, whatever their text says.
pub fn should_suppress(outcome: &DeliveryOutcome) -> bool {
    outcome.is_bounced() && classify(outcome).is_some_and(BounceClass::is_hard)
}

/// A parsed `class.subject.detail` enhanced status code.
#[derive(Debug, Clone, Copy)]
struct Enhanced {
    class: u8,
    subject: u16,
    detail: u16,
}

/// How much an enhanced code says on its own.
enum Evidence {
    /// Unambiguous: no need to read the text.
    Specific(BounceClass),
    /// Used for many reasons: the text decides, this is the fallback.
    Generic(BounceClass),
}

impl Enhanced {
    fn parse(code: &str) -> Option<Self> {
        let mut parts = code.split('.');
        let class = parts.next()?.parse().ok()?;
        let subject = parts.next()?.parse().ok()?;
        let detail = parts.next()?.parse().ok()?;
        Some(Self {
            class,
            subject,
            detail,
        })
    }

    /// RFC 3463 and the IANA "SMTP Enhanced Status Codes" registry.
    fn class(self) -> Evidence {
        use BounceClass::*;
        use Evidence::{Generic, Specific};
        let temporary = self.class == 4;
        let fallback = if temporary { Transient } else { Other };
        match (self.subject, self.detail) {
            // x.1.x: addressing.
            (1, 1 | 3 | 4 | 6) => Specific(InvalidRecipient),
            (1, 2) => Specific(BadDomain),
            // 5.1.10 is "null MX" in RFC 7505, but Exchange Online answers it for
            // unknown users ("RESOLVER.ADR.RecipientNotFound"): both are hard.
            (1, 10) => Generic(InvalidRecipient),
            (1, 7 | 8) => Specific(InvalidSender),
            (1, _) => Generic(fallback),
            // x.2.x: mailbox. Gmail's "450 4.2.1 … receiving mail too quickly" is a
            // rate limit, so 2.1 is read with its text.
            (2, 1) => Generic(InactiveMailbox),
            (2, 2) => Specific(MailboxFull),
            (2, 3) => Specific(MessageTooLarge),
            (2, _) => Generic(fallback),
            // x.3.x: mail system.
            (3, 4) => Specific(MessageTooLarge),
            (3, _) => Generic(fallback),
            // x.4.x: network and routing. Exchange Online answers "5.4.1 Recipient
            // address rejected: Access denied" for unknown users, hence Generic.
            (4, 1 | 2) => Generic(ConnectionFailure),
            (4, 3) => Specific(DnsFailure),
            (4, 4) => Generic(BadDomain),
            (4, 5) => Specific(RateLimited),
            (4, _) => Generic(fallback),
            // x.5.x: protocol. Outlook.com uses "5.5.0 … mailbox unavailable" for
            // unknown users, hence Generic.
            (5, 3) => Specific(RateLimited),
            (5, 0) => Generic(ProtocolError),
            (5, _) => Specific(ProtocolError),
            (6, _) => Specific(ProtocolError),
            // x.7.x: security and policy.
            (7, 0 | 1) => Generic(PolicyBlock),
            (7, 13) => Specific(InactiveMailbox),
            (7, 17) => Specific(InvalidRecipient),
            (7, 18) => Specific(BadDomain),
            (7, 5 | 7 | 8 | 20..=27 | 29) => Specific(AuthFailure),
            (7, 28) => Specific(RateLimited),
            (7, _) => Generic(PolicyBlock),
            _ => Generic(fallback),
        }
    }
}

/// Reply text patterns, tried in order (lower-case substrings). Order matters:
/// block-list names contain "spam", and throttling replies often say "try again".
const TEXT_PATTERNS: &[(BounceClass, &[&str])] = &[
    (BounceClass::Transient, &["greylist", "graylist"]),
    (
        BounceClass::RateLimited,
        &[
            "rate limit",
            "ratelimit",
            "rate-limit",
            "too many",
            "too fast",
            "too quickly",
            "at a rate",
            "unexpected volume",
            "throttl",
            "slow down",
            "server busy",
        ],
    ),
    (
        BounceClass::MessageTooLarge,
        &[
            "message too large",
            "message is too large",
            "message size",
            "size limit",
            "too big",
        ],
    ),
    (
        BounceClass::MailboxFull,
        &[
            "mailbox full",
            "mailbox is full",
            "over quota",
            "quota exceeded",
            "exceeded storage",
            "out of storage",
            "storage full",
            "insufficient storage",
        ],
    ),
    (
        BounceClass::BadDomain,
        &[
            "domain does not exist",
            "domain not found",
            "no such domain",
            "nxdomain",
            "null mx",
            "host or domain name not found",
        ],
    ),
    (
        BounceClass::InactiveMailbox,
        &[
            "is disabled",
            "been disabled",
            "account disabled",
            "mailbox disabled",
            "inactive",
            "deactivated",
            "account expired",
        ],
    ),
    (
        BounceClass::InvalidRecipient,
        &[
            "user unknown",
            "unknown user",
            "no such user",
            "no such mailbox",
            "does not exist",
            "doesn't exist",
            "doesn't have a",
            "unknown recipient",
            "invalid recipient",
            "invalid mailbox",
            "mailbox not found",
            "mailbox unavailable",
            "recipient not found",
            "recipient address rejected",
            "address not found",
            "not a valid mailbox",
        ],
    ),
    (
        BounceClass::AuthFailure,
        &[
            "spf",
            "dkim",
            "dmarc",
            "unauthenticated",
            "authentication",
            "ptr record",
            "reverse dns",
        ],
    ),
    (
        BounceClass::PolicyBlock,
        &[
            "blocked using",
            "spamhaus",
            "spamcop",
            "barracuda",
            "blocklist",
            "block list",
            "blacklist",
            "black list",
            "dnsbl",
            "listed at",
            "listed on",
            "reputation",
        ],
    ),
    (
        BounceClass::SpamContent,
        &[
            "spam",
            "unsolicited",
            "phish",
            "virus",
            "malware",
            "content rejected",
            "bulk mail",
        ],
    ),
    (
        BounceClass::PolicyBlock,
        &[
            "blocked",
            "policy",
            "not authorized",
            "not allowed",
            "access denied",
            "refused",
        ],
    ),
    (
        BounceClass::ProtocolError,
        &[
            "syntax error",
            "command not recognized",
            "unrecognized command",
            "bad sequence",
        ],
    ),
];

fn by_text(text: &str) -> Option<BounceClass> {
    TEXT_PATTERNS
        .iter()
        .find(|(_, needles)| needles.iter().any(|needle| text.contains(needle)))
        .map(|(class, _)| *class)
}

/// The RFC 5321 reply code's meaning, when nothing better is known.
fn by_code(code: u16, stage: Stage) -> BounceClass {
    match code {
        500..=504 | 555 => BounceClass::ProtocolError,
        551 => BounceClass::InvalidRecipient,
        552 => BounceClass::MailboxFull,
        553 if stage == Stage::MailFrom => BounceClass::InvalidSender,
        553 => BounceClass::InvalidRecipient,
        // Refused before any envelope was given: the receiver does not want us.
        500..=599 if matches!(stage, Stage::Connect | Stage::Greeting | Stage::Ehlo) => {
            BounceClass::PolicyBlock
        }
        500..=599 => BounceClass::Other,
        _ => BounceClass::Transient,
    }
}

/// Outcomes we described ourselves: no reply code from the server.
fn without_code(text: &str) -> BounceClass {
    const DNS: &[&str] = &[
        "dns",
        "resolve",
        "lookup",
        "no record",
        "nxdomain",
        "servfail",
    ];
    if text.starts_with("unparseable reply") {
        BounceClass::ProtocolError
    } else if DNS.iter().any(|needle| text.contains(needle)) {
        BounceClass::DnsFailure
    } else {
        BounceClass::ConnectionFailure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BounceClass::*;

    fn class_of(stage: Stage, reply: &str) -> Option<BounceClass> {
        classify(&DeliveryOutcome::from_reply(stage, reply))
    }

    #[test]
    fn real_world_replies() {
        let cases: &[(&str, BounceClass)] = &[
            // Gmail
            (
                "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550-5.1.1 double-checking the recipient's email address for typos",
                InvalidRecipient,
            ),
            (
                "452-4.2.2 The email account that you tried to reach is over quota. Please direct\r\n452-4.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaTemp",
                MailboxFull,
            ),
            (
                "550-5.2.1 The email account that you tried to reach is disabled.",
                InactiveMailbox,
            ),
            (
                "450-4.2.1 The user you are trying to contact is receiving mail too quickly. Please resend your message at a later time.",
                RateLimited,
            ),
            (
                "552-5.2.3 Your message exceeded Google's message size limits.",
                MessageTooLarge,
            ),
            (
                "421-4.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address.",
                RateLimited,
            ),
            (
                "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked.",
                SpamContent,
            ),
            (
                "421-4.7.0 [192.0.2.1] Our system has detected that this message is suspicious due to the very low reputation of the sending IP address.",
                PolicyBlock,
            ),
            (
                "550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM.",
                AuthFailure,
            ),
            (
                "550-5.7.27 The sender's SPF record does not authorize this IP",
                AuthFailure,
            ),
            (
                "550-5.7.25 The IP address sending this message does not have a PTR record setup",
                AuthFailure,
            ),
            (
                "421-4.7.0 Try again later, closing connection. (EHLO)",
                PolicyBlock,
            ),
            // Yahoo / AOL
            (
                "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints",
                RateLimited,
            ),
            (
                "554 delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0] - mta1234.mail.gq1.yahoo.com",
                InvalidRecipient,
            ),
            (
                "552 1 Requested mail action aborted, mailbox not found",
                InvalidRecipient,
            ),
            (
                "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list",
                PolicyBlock,
            ),
            (
                "554 5.7.9 Message not accepted for policy reasons. See https://postmaster.yahooinc.com/error-codes",
                PolicyBlock,
            ),
            // Outlook / Exchange Online
            (
                "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302).",
                InvalidRecipient,
            ),
            (
                "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
                InvalidRecipient,
            ),
            (
                "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).",
                PolicyBlock,
            ),
            (
                "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.",
                RateLimited,
            ),
            (
                "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77714)",
                RateLimited,
            ),
            (
                "550 5.7.515 Access denied, sending domain example.com doesn't meet the required authentication level.",
                AuthFailure,
            ),
            ("554 5.4.14 Hop count exceeded - possible mail loop", Other),
            // Generic MTAs
            (
                "550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus",
                PolicyBlock,
            ),
            ("554 5.7.1 [ST01] Message rejected", PolicyBlock),
            (
                "554 5.7.1 Message rejected as spam by Content Filtering",
                SpamContent,
            ),
            (
                "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
                InvalidRecipient,
            ),
            ("556 5.1.10 Recipient address has null MX", BadDomain),
            (
                "550 5.1.8 Sender address rejected: Domain not found",
                InvalidSender,
            ),
            (
                "552 5.3.4 Message size exceeds fixed limit",
                MessageTooLarge,
            ),
            (
                "450 4.2.0 <x@example.com>: Recipient address rejected: Greylisted for 300 seconds",
                Greylisted,
            ),
            ("451 4.4.3 Temporary DNS failure", DnsFailure),
            ("452 4.5.3 Too many recipients", RateLimited),
            (
                "500 5.5.2 Syntax error, command unrecognized",
                ProtocolError,
            ),
            ("503 Bad sequence of commands", ProtocolError),
            (
                "550 Requested action not taken: mailbox unavailable",
                InvalidRecipient,
            ),
            ("550 No such user here", InvalidRecipient),
            (
                "552 Requested mail action aborted: exceeded storage allocation",
                MailboxFull,
            ),
            ("552 Sorry", MailboxFull),
            ("550 Administrative prohibition", Other),
            (
                "421 Service not available, closing transmission channel",
                Transient,
            ),
            ("450 Requested mail action not taken", Transient),
            ("554 5.0.0 Something odd", Other),
            ("451 4.0.0 Local error in processing", Transient),
        ];
        for (reply, expected) in cases {
            assert_eq!(class_of(Stage::RcptTo, reply), Some(*expected), "{reply}");
        }
    }

    #[test]
    fn stage_informs_the_basic_code() {
        assert_eq!(
            class_of(Stage::Greeting, "554 No SMTP service here"),
            Some(PolicyBlock)
        );
        assert_eq!(
            class_of(Stage::MailFrom, "553 Not permitted"),
            Some(InvalidSender)
        );
        assert_eq!(
            class_of(Stage::RcptTo, "553 Not permitted"),
            Some(InvalidRecipient)
        );
        assert_eq!(
            class_of(Stage::DataEnd, "554 Transaction failed"),
            Some(Other)
        );
    }

    #[test]
    fn outcomes_without_a_code() {
        let timeout = DeliveryOutcome::timeout(Stage::DataEnd);
        assert_eq!(classify(&timeout), Some(ConnectionFailure));
        let refused = DeliveryOutcome::connection_failed(Stage::Connect, "connection refused");
        assert_eq!(classify(&refused), Some(ConnectionFailure));
        let dns = DeliveryOutcome::connection_failed(Stage::Connect, "dns error: no record found");
        assert_eq!(classify(&dns), Some(DnsFailure));
        assert_eq!(
            class_of(Stage::Greeting, "hello there"),
            Some(ProtocolError)
        );
    }

    #[test]
    fn sent_has_no_class() {
        assert_eq!(class_of(Stage::DataEnd, "250 2.0.0 OK"), None);
    }

    #[test]
    fn suppression_only_for_hard_bounces() {
        let hard = [
            "550 5.1.1 user unknown",
            "550 5.2.1 account disabled",
            "550 5.1.2 bad domain",
        ];
        for reply in hard {
            assert!(
                should_suppress(&DeliveryOutcome::from_reply(Stage::RcptTo, reply)),
                "{reply}"
            );
        }
        let soft = [
            "452 4.1.1 temporary recipient lookup failure",
            "552 5.2.2 mailbox full",
            "550 5.7.1 blocked using Spamhaus",
            "550 5.7.26 unauthenticated",
            "250 ok",
        ];
        for reply in soft {
            assert!(
                !should_suppress(&DeliveryOutcome::from_reply(Stage::RcptTo, reply)),
                "{reply}"
            );
        }
        let hard: Vec<_> = BounceClass::ALL
            .into_iter()
            .filter(|c| c.is_hard())
            .collect();
        assert_eq!(hard, [InvalidRecipient, BadDomain, InactiveMailbox]);
    }

    #[test]
    fn labels_are_unique_snake_case_and_match_serde() {
        let mut seen = std::collections::HashSet::new();
        for class in BounceClass::ALL {
            let label = class.as_str();
            assert!(seen.insert(label), "{label}");
            assert!(label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(class.to_string(), label);
            assert_eq!(
                serde_json::to_string(&class).unwrap(),
                format!("\"{label}\"")
            );
        }
    }
}
