//! Domain vocabulary shared by every layer: job and campaign states, priority bands,
//! and the validation of what tenants send us (addresses, header text).
//!
//! Pure code: no I/O, tested with plain `#[test]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The state of one send job (one email). See DESIGN.md §2 for the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Queued,
    Sending,
    Sent,
    Deferred,
    Bounced,
    Failed,
    Suppressed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 9] = [
        JobStatus::Pending,
        JobStatus::Queued,
        JobStatus::Sending,
        JobStatus::Sent,
        JobStatus::Deferred,
        JobStatus::Bounced,
        JobStatus::Failed,
        JobStatus::Suppressed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Queued => "queued",
            JobStatus::Sending => "sending",
            JobStatus::Sent => "sent",
            JobStatus::Deferred => "deferred",
            JobStatus::Bounced => "bounced",
            JobStatus::Failed => "failed",
            JobStatus::Suppressed => "suppressed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// A terminal job never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Sent
                | JobStatus::Bounced
                | JobStatus::Failed
                | JobStatus::Suppressed
                | JobStatus::Cancelled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_string()))
    }
}

/// The state of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    /// Started with a future `start_at`: its jobs exist, nothing is claimed
    /// until the owning node's Feeder turns it `running` then.
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::Scheduled => "scheduled",
            CampaignStatus::Running => "running",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Completed => "completed",
            CampaignStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CampaignStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            CampaignStatus::Draft,
            CampaignStatus::Scheduled,
            CampaignStatus::Running,
            CampaignStatus::Paused,
            CampaignStatus::Completed,
            CampaignStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| UnknownValue(s.to_string()))
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

/// The highest priority number of the urgent lane (password resets, replies):
/// a job at or below it is served ahead of bulk at every queue it meets — the
/// tenant's high list, the Tenant actor's overflow, the Ip actor's work and
/// ready queues — and is fed to Redis even when the tenant's window is full.
pub const URGENT_MAX_PRIORITY: i32 = 50;

/// Whether a job of this priority travels in the urgent lane.
pub fn is_urgent(priority: i32) -> bool {
    priority <= URGENT_MAX_PRIORITY
}

/// Priority bands: a number, lower is more urgent; ≤ 50 high (the urgent lane),
/// ≤ 150 normal, else low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Band {
    High,
    Normal,
    Low,
}

impl Band {
    /// Bands in the order they are served.
    pub const ALL: [Band; 3] = [Band::High, Band::Normal, Band::Low];

    pub fn of(priority: i32) -> Band {
        match priority {
            p if is_urgent(p) => Band::High,
            p if p <= 150 => Band::Normal,
            _ => Band::Low,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Band::High => "high",
            Band::Normal => "normal",
            Band::Low => "low",
        }
    }
}

/// Why a piece of tenant input was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InputError {
    #[error("must not be empty")]
    Empty,
    #[error("is longer than {0} bytes")]
    TooLong(usize),
    #[error("must not contain CR, LF or NUL")]
    ControlCharacter,
    #[error("is not a valid email address: {0}")]
    InvalidEmail(&'static str),
}

/// Checks text that ends up in a header line (subject, names): no CR, LF or NUL.
pub fn check_header_text(value: &str, max_len: usize) -> Result<(), InputError> {
    if value.len() > max_len {
        return Err(InputError::TooLong(max_len));
    }
    if value.chars().any(|c| matches!(c, '\r' | '\n' | '\0')) {
        return Err(InputError::ControlCharacter);
    }
    Ok(())
}

/// Validates an email address for use as an SMTP envelope address and returns it
/// normalised (trimmed, lower-cased). Deliberately stricter than RFC 5322: no
/// quoted local parts, no comments, no IP literals — what cold outreach needs.
pub fn normalize_email(raw: &str) -> Result<String, InputError> {
    let email = raw.trim();
    if email.is_empty() {
        return Err(InputError::Empty);
    }
    if email.len() > 254 {
        return Err(InputError::TooLong(254));
    }
    if email.chars().any(|c| c.is_control()) {
        return Err(InputError::ControlCharacter);
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(InputError::InvalidEmail("needs exactly one @"));
    };
    if local.is_empty() || local.len() > 64 {
        return Err(InputError::InvalidEmail(
            "local part must be 1-64 characters",
        ));
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii());
    if !local_ok || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(InputError::InvalidEmail(
            "local part has invalid characters",
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(InputError::InvalidEmail("domain needs a dot"));
    }
    for label in &labels {
        let label_ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii());
        if !label_ok {
            return Err(InputError::InvalidEmail("domain has an invalid label"));
        }
    }
    Ok(email.to_lowercase())
}

/// A suppression entry normalised: an address as [`normalize_email`] makes
/// it, or a whole domain written `@example.com` (trimmed, lower-cased, the
/// domain checked as an address's would be).
pub fn normalize_suppression_entry(raw: &str) -> Result<String, InputError> {
    match raw.trim().strip_prefix('@') {
        Some(domain) => {
            let email = normalize_email(&format!("x@{domain}"))?;
            Ok(format!("@{}", email_domain(&email)))
        }
        None => normalize_email(raw),
    }
}

/// The domain part of a normalised address.
pub fn email_domain(email: &str) -> &str {
    email.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppression_entries_are_addresses_or_whole_domains() {
        assert_eq!(
            normalize_suppression_entry(" @Blocked.Example ").unwrap(),
            "@blocked.example"
        );
        assert_eq!(
            normalize_suppression_entry("Ann@Example.com").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "@",
            "@nodot",
            "@@x.example",
            "@a b.example",
            "a@b@c.example",
            "",
        ] {
            assert!(normalize_suppression_entry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn campaign_statuses_round_trip_including_scheduled() {
        for status in [
            CampaignStatus::Draft,
            CampaignStatus::Scheduled,
            CampaignStatus::Running,
            CampaignStatus::Paused,
            CampaignStatus::Completed,
            CampaignStatus::Cancelled,
        ] {
            assert_eq!(status.as_str().parse::<CampaignStatus>(), Ok(status));
        }
        assert_eq!(CampaignStatus::Scheduled.as_str(), "scheduled");
    }

    #[test]
    fn bands_follow_the_platform_convention() {
        assert_eq!(Band::of(0), Band::High);
        assert_eq!(Band::of(50), Band::High);
        assert_eq!(Band::of(51), Band::Normal);
        assert_eq!(Band::of(150), Band::Normal);
        assert_eq!(Band::of(151), Band::Low);
    }

    #[test]
    fn statuses_round_trip_and_terminality() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>().unwrap(), status);
        }
        assert!(JobStatus::Sent.is_terminal());
        assert!(!JobStatus::Deferred.is_terminal());
        assert!("bogus".parse::<JobStatus>().is_err());
    }

    #[test]
    fn emails_are_validated_and_normalised() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        assert_eq!(
            normalize_email("a.b+tag@sub.example.org").unwrap(),
            "a.b+tag@sub.example.org"
        );
        for bad in [
            "",
            "plain",
            "a@b@c.com",
            "@example.com",
            "a@",
            "a@localhost",
            "a..b@example.com",
            "a@-x.com",
            "a b@example.com",
            "a@exa mple.com",
            "a\r\n@example.com",
            "a@example.com\0",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} must be rejected");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(normalize_email(&long).is_err());
    }

    #[test]
    fn header_text_refuses_line_breaks() {
        assert!(check_header_text("Hello {{name}}", 998).is_ok());
        assert_eq!(
            check_header_text("a\r\nBcc: x@y.z", 998),
            Err(InputError::ControlCharacter)
        );
        assert_eq!(check_header_text("abc", 2), Err(InputError::TooLong(2)));
    }
}
