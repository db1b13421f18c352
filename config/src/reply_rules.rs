//! `[[delivery.reply_rules]]`: SMTP reply patterns that slow down or suspend an
//! (IP, provider) pair, and the rules shipped by default.
//!
//! Parsed and validated here; `penguin_engine::reply_rules` compiles them into a
//! matcher and the IP actors apply the actions. A pattern is a case-insensitive
//! substring of the reply (runs of whitespace count as one space, and a
//! multi-line `421-` reads like `421 `), so `"421 4.7.0 [TSS04]"` matches both
//! `421 4.7.0 [TSS04] Messages from …` and `421-4.7.0 [TSS04] …`. The first
//! matching rule wins, in list order. Setting the key in a file replaces the
//! whole default list.
//!
//! # Where the defaults come from
//! Commonly observed deferral and block replies of the big mailbox providers, as
//! described in their public sender guidance (Yahoo Sender Hub "SMTP error
//! codes", Google Workspace "SMTP errors and codes", Microsoft "Outlook.com
//! postmaster" and Exchange Online NDR reference) and in the default
//! traffic-shaping rules MTAs such as KumoMTA ship. The bracketed `[TS01]`…
//! `[TSS09]` tokens are Yahoo's (also used by AOL, which shares its
//! infrastructure); they are specific enough to apply to any provider.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, positive};

/// The longest a rule may slow down or suspend a pair: one week.
pub const MAX_RULE_DURATION_SECS: u64 = 7 * 24 * 3600;

/// One `[[delivery.reply_rules]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyRule {
    /// A short label for logs, events and metrics (`[a-z0-9_]`); the pattern
    /// stands in when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Case-insensitive substring of the SMTP reply.
    pub pattern: String,
    /// Only for destinations of this provider (e.g. `"google"`); any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub action: ReplyAction,
    /// For `slow_down`: the pair's send rate is multiplied by this, in (0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// How long the action lasts, in seconds.
    pub duration_secs: u64,
}

/// What a matching reply does to the (IP, provider) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyAction {
    /// Send at `factor` × the current rate for `duration_secs`.
    SlowDown,
    /// Send nothing for `duration_secs`.
    Suspend,
}

impl ReplyRule {
    /// Checks one rule; `index` is its position in `delivery.reply_rules`, used in
    /// the key the error names.
    pub fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let key = |field: &str| format!("delivery.reply_rules[{index}].{field}");
        if let Some(name) = &self.name {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(ConfigError::invalid(key("name"), "must match [a-z0-9_]+"));
            }
        }
        if self.pattern.trim().is_empty() {
            return Err(ConfigError::invalid(key("pattern"), "must not be empty"));
        }
        if let Some(provider) = &self.provider
            && provider.trim().is_empty()
        {
            return Err(ConfigError::invalid(
                key("provider"),
                "must not be empty (leave it out to match every provider)",
            ));
        }
        match (self.action, self.factor) {
            (ReplyAction::SlowDown, Some(factor))
                if factor.is_finite() && factor > 0.0 && factor < 1.0 => {}
            (ReplyAction::SlowDown, _) => {
                return Err(ConfigError::invalid(
                    key("factor"),
                    "slow_down needs a factor greater than 0 and less than 1",
                ));
            }
            (ReplyAction::Suspend, Some(_)) => {
                return Err(ConfigError::invalid(
                    key("factor"),
                    "only slow_down takes a factor",
                ));
            }
            (ReplyAction::Suspend, None) => {}
        }
        positive(&key("duration_secs"), self.duration_secs)?;
        if self.duration_secs > MAX_RULE_DURATION_SECS {
            return Err(ConfigError::invalid(
                key("duration_secs"),
                format!("must be at most {MAX_RULE_DURATION_SECS} (one week)"),
            ));
        }
        Ok(())
    }

    /// The label for logs and events: the name, or the pattern.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.pattern)
    }
}

/// Validates the whole list: every rule, and names unique.
pub(crate) fn validate_all(rules: &[ReplyRule]) -> Result<(), ConfigError> {
    for (index, rule) in rules.iter().enumerate() {
        rule.validate(index)?;
        let Some(name) = &rule.name else { continue };
        if rules[..index].iter().any(|r| r.name.as_ref() == Some(name)) {
            return Err(ConfigError::invalid(
                format!("delivery.reply_rules[{index}].name"),
                format!("`{name}` is used by an earlier rule"),
            ));
        }
    }
    Ok(())
}

const HOUR: u64 = 3600;

/// (name, provider, pattern, action, factor, duration_secs), in match order.
type RuleRow = (
    &'static str,
    Option<&'static str>,
    &'static str,
    ReplyAction,
    Option<f64>,
    u64,
);

/// The shipped rules: provider-specific first (suspensions before slow-downs),
/// then generic ones. `config/example.toml` lists the same, checked by a test.
#[rustfmt::skip] // one rule per line reads like the table it is
const DEFAULT_RULES: &[RuleRow] = {
    use ReplyAction::{SlowDown, Suspend};
    &[
        // Yahoo/AOL: "421 4.7.0 [TS03] All messages from x will be permanently
        // deferred; Retrying will NOT succeed", and the [TSS09] equivalent.
        ("yahoo_ts03", None, "[TS03]", Suspend, None, 4 * HOUR),
        ("yahoo_tss09", None, "[TSS09]", Suspend, None, 4 * HOUR),
        // "421 4.7.0 [TSS04] Messages from x temporarily deferred due to unexpected
        // volume or user complaints"; [TS01] and [TS02]: user complaints.
        ("yahoo_tss04", None, "[TSS04]", Suspend, None, HOUR),
        ("yahoo_ts01", None, "[TS01]", Suspend, None, HOUR),
        ("yahoo_ts02", None, "[TS02]", Suspend, None, HOUR),
        // Gmail: "421-4.7.28 … unusual rate of unsolicited mail … temporarily rate
        // limited", "550-5.7.1 … likely unsolicited mail", "421-4.7.0 … very low
        // reputation of the sending IP address".
        ("google_unusual_rate", Some("google"), "4.7.28", SlowDown, Some(0.5), HOUR),
        ("google_unsolicited", Some("google"), "unsolicited", SlowDown, Some(0.5), HOUR),
        ("google_low_reputation", Some("google"), "low reputation", SlowDown, Some(0.5), HOUR),
        ("google_rate_limited", Some("google"), "rate limit", SlowDown, Some(0.5), HOUR),
        // Outlook.com: "550 5.7.1 … part of their network is on our block list
        // (S3150)" (or S3140); "451 4.7.650 The mail server [x] has been
        // temporarily rate limited due to IP reputation. (S775)".
        ("outlook_s3150", Some("outlook"), "S3150", Suspend, None, 4 * HOUR),
        ("outlook_s3140", Some("outlook"), "S3140", Suspend, None, 4 * HOUR),
        ("outlook_s775", Some("outlook"), "S775", Suspend, None, HOUR),
        // Microsoft's own enhanced codes, the same for Outlook.com and Office 365:
        // 4.7.650 above, "451 4.7.500 Server busy. Please try again later from [x]".
        ("microsoft_4_7_650", None, "4.7.650", Suspend, None, HOUR),
        ("microsoft_server_busy", None, "4.7.500", SlowDown, Some(0.5), HOUR / 2),
        // Anyone: the IP is on a DNS block list ("… Client host [x] blocked using
        // zen.spamhaus.org"); more mail only adds bounces.
        ("blocklisted", None, "blocked using", Suspend, None, HOUR),
        ("too_many_connections", None, "too many connections", SlowDown, Some(0.5), HOUR / 4),
        ("rate_limited", None, "rate limit", SlowDown, Some(0.5), HOUR / 2),
        ("try_again_later", None, "try again later", SlowDown, Some(0.75), HOUR / 6),
        // Greylisting that says neither of the above ("450 4.2.0 <r@x>: Recipient
        // address rejected: Greylisted, see http://postgrey…"). One such reply only
        // defers its recipient; these apply once `[delivery.greylist]` counts the
        // site's greylisting as throttling.
        ("greylisted", None, "greylist", SlowDown, Some(0.75), HOUR / 6),
        ("graylisted", None, "graylist", SlowDown, Some(0.75), HOUR / 6),
    ]
};

/// The shipped rules, the default of `delivery.reply_rules`.
pub fn default_reply_rules() -> Vec<ReplyRule> {
    DEFAULT_RULES
        .iter()
        .map(
            |&(name, provider, pattern, action, factor, secs)| ReplyRule {
                name: Some(name.to_owned()),
                pattern: pattern.to_owned(),
                provider: provider.map(str::to_owned),
                action,
                factor,
                duration_secs: secs,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow_down() -> ReplyRule {
        ReplyRule {
            name: Some("x".into()),
            pattern: "rate limit".into(),
            provider: None,
            action: ReplyAction::SlowDown,
            factor: Some(0.5),
            duration_secs: 60,
        }
    }

    fn error(rule: ReplyRule) -> String {
        rule.validate(3).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let rules = default_reply_rules();
        validate_all(&rules).unwrap();
        assert!(rules.len() >= 15);
    }

    #[test]
    fn bad_rules_name_the_key() {
        let err = error(ReplyRule {
            pattern: "  ".into(),
            ..slow_down()
        });
        assert!(err.contains("delivery.reply_rules[3].pattern"), "{err}");
        for factor in [None, Some(0.0), Some(1.0), Some(f64::NAN)] {
            let err = error(ReplyRule {
                factor,
                ..slow_down()
            });
            assert!(err.contains("delivery.reply_rules[3].factor"), "{err}");
        }
        let err = error(ReplyRule {
            action: ReplyAction::Suspend,
            ..slow_down()
        });
        assert!(err.contains("only slow_down"), "{err}");
        let err = error(ReplyRule {
            duration_secs: 0,
            ..slow_down()
        });
        assert!(err.contains("duration_secs"), "{err}");
        let err = error(ReplyRule {
            duration_secs: MAX_RULE_DURATION_SECS + 1,
            ..slow_down()
        });
        assert!(err.contains("duration_secs"), "{err}");
        let err = error(ReplyRule {
            name: Some("Bad Name".into()),
            ..slow_down()
        });
        assert!(err.contains("name"), "{err}");
        let err = error(ReplyRule {
            provider: Some(String::new()),
            ..slow_down()
        });
        assert!(err.contains("provider"), "{err}");
    }

    #[test]
    fn names_are_unique() {
        let err = validate_all(&[slow_down(), slow_down()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("delivery.reply_rules[1].name"), "{err}");
        let unnamed = ReplyRule {
            name: None,
            ..slow_down()
        };
        validate_all(&[unnamed.clone(), unnamed.clone()]).unwrap();
        assert_eq!(unnamed.label(), "rate limit");
    }

    #[test]
    fn a_file_replaces_the_default_list() {
        let toml = "[[delivery.reply_rules]]\npattern = \"421 4.7.0 [TSS04]\"\n\
                    provider = \"yahoo\"\naction = \"slow_down\"\nfactor = 0.5\n\
                    duration_secs = 3600\n";
        let config = crate::Config::from_toml_str(toml).unwrap();
        assert_eq!(config.delivery.reply_rules.len(), 1);
        let rule = &config.delivery.reply_rules[0];
        assert_eq!(rule.provider.as_deref(), Some("yahoo"));
        assert_eq!(
            (rule.action, rule.factor),
            (ReplyAction::SlowDown, Some(0.5))
        );
        let err = crate::Config::from_toml_str(&toml.replace("0.5", "1.5"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("delivery.reply_rules[0].factor"), "{err}");
        let err = crate::Config::from_toml_str(&toml.replace("slow_down", "pause"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pause"), "{err}");
    }
}
