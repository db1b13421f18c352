//! Reply rules: which SMTP replies slow down or suspend an (IP, provider) pair.
//!
//! [`ReplyRules`] is built once from `[[delivery.reply_rules]]` (see
//! `penguin_config::ReplyRule` for the syntax and the shipped defaults) and asked,
//! for every non-sent reply, whether a rule matches. Pure policy: the IP actors
//! own the per-(IP, provider) state and apply the [`RuleAction`].
//!
//! Matching is a case-insensitive substring test on a normalized text (runs of
//! whitespace become one space; a multi-line `421-` reads like `421 `), in list
//! order, first match wins. No regular expressions: a pattern can neither be slow
//! nor surprise anyone.

use std::time::Duration;

use penguin_config::{ConfigError, ReplyAction, ReplyRule};

/// What a matching rule does to the (IP, provider) pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RuleAction {
    /// Multiply the pair's send rate by `factor` (in (0, 1)) for `for_`.
    SlowDown { factor: f64, for_: Duration },
    /// Send nothing to the pair for `for_`.
    Suspend { for_: Duration },
}

impl RuleAction {
    /// `"slow_down"` or `"suspend"`, for logs, events and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleAction::SlowDown { .. } => "slow_down",
            RuleAction::Suspend { .. } => "suspend",
        }
    }

    /// How long the action lasts.
    pub fn duration(&self) -> Duration {
        match self {
            RuleAction::SlowDown { for_, .. } | RuleAction::Suspend { for_ } => *for_,
        }
    }
}

/// The rule a reply matched: its action and what to name in logs and events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleMatch<'a> {
    /// The rule's name, or its pattern when it has none (a bounded set: the config).
    pub name: &'a str,
    /// The pattern as configured.
    pub pattern: &'a str,
    pub action: RuleAction,
}

/// The compiled rule list; cheap to share behind an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct ReplyRules {
    rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    name: String,
    pattern: String,
    /// `pattern`, normalized like the replies it is tested against.
    needle: String,
    /// Lower-case provider name; `None` matches every provider.
    provider: Option<String>,
    action: RuleAction,
}

impl ReplyRules {
    /// Validates and compiles `rules` (normally `config.delivery.reply_rules`, which
    /// is already valid; the check guards rules built in code).
    pub fn new(rules: &[ReplyRule]) -> Result<Self, ConfigError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            rule.validate(index)?;
            let for_ = Duration::from_secs(rule.duration_secs);
            let action = match rule.action {
                ReplyAction::Suspend => RuleAction::Suspend { for_ },
                ReplyAction::SlowDown => RuleAction::SlowDown {
                    // validate() guarantees a factor for slow_down.
                    factor: rule.factor.unwrap_or(0.5),
                    for_,
                },
            };
            compiled.push(CompiledRule {
                name: rule.label().to_owned(),
                pattern: rule.pattern.clone(),
                needle: normalize(&rule.pattern),
                provider: rule
                    .provider
                    .as_deref()
                    .map(|p| p.trim().to_ascii_lowercase()),
                action,
            });
        }
        Ok(Self { rules: compiled })
    }

    /// The first rule matching `reply` for a destination of `provider`, if any.
    pub fn matching(&self, provider: &str, reply: &str) -> Option<RuleMatch<'_>> {
        if self.rules.is_empty() {
            return None;
        }
        let text = normalize(reply);
        self.rules
            .iter()
            .filter(|rule| {
                rule.provider
                    .as_deref()
                    .is_none_or(|p| p.eq_ignore_ascii_case(provider))
            })
            .find(|rule| text.contains(&rule.needle))
            .map(|rule| RuleMatch {
                name: &rule.name,
                pattern: &rule.pattern,
                action: rule.action,
            })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Lower-case, whitespace runs collapsed to one space, and a reply code followed
/// by `-` (a multi-line reply: `421-4.7.0`) written as `421 4.7.0`.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let bytes = word.as_bytes();
        let continued_code =
            bytes.len() > 4 && bytes[..3].iter().all(u8::is_ascii_digit) && bytes[3] == b'-';
        if continued_code {
            out.push_str(&word[..3]);
            out.push(' ');
            push_lower(&mut out, &word[4..]);
        } else {
            push_lower(&mut out, word);
        }
    }
    out
}

fn push_lower(out: &mut String, word: &str) {
    out.extend(word.chars().flat_map(char::to_lowercase));
}

#[cfg(test)]
mod tests {
    use penguin_config::default_reply_rules;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn defaults() -> ReplyRules {
        ReplyRules::new(&default_reply_rules()).unwrap()
    }

    #[test]
    fn normalization() {
        assert_eq!(
            normalize("421-4.7.0  [TSS04]\r\n421-4.7.0 More"),
            "421 4.7.0 [tss04] 421 4.7.0 more"
        );
        assert_eq!(normalize("550 5.1.1"), "550 5.1.1");
        assert_eq!(normalize("123-"), "123-");
        assert_eq!(normalize(""), "");
    }

    /// (provider, reply, expected rule name or None, expected action kind).
    #[test]
    fn default_rules_on_real_replies() {
        let rules = defaults();
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "yahoo",
                "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to \
                 unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
                Some("yahoo_tss04"),
            ),
            (
                "default",
                "421-4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred",
                Some("yahoo_tss04"),
            ),
            (
                "yahoo",
                "421 4.7.0 [TS03] All messages from 192.0.2.1 will be permanently deferred; \
                 Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
                Some("yahoo_ts03"),
            ),
            (
                "yahoo",
                "421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints",
                Some("yahoo_ts01"),
            ),
            (
                "yahoo",
                "421 4.7.0 [TSS09] All messages from 192.0.2.1 will be permanently deferred",
                Some("yahoo_tss09"),
            ),
            (
                "google",
                "421-4.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited \
                 mail originating from your IP address. To protect our users from spam, mail \
                 sent from your IP address has been temporarily rate limited.",
                Some("google_unusual_rate"),
            ),
            (
                "google",
                "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely \
                 unsolicited mail. To reduce the amount of spam sent to Gmail, this message \
                 has been blocked.",
                Some("google_unsolicited"),
            ),
            (
                "google",
                "421-4.7.0 [192.0.2.1] Our system has detected that this message is suspicious \
                 due to the very low reputation of the sending IP address.",
                Some("google_low_reputation"),
            ),
            (
                "google",
                "421-4.7.0 Try again later, closing connection. (EHLO)",
                Some("try_again_later"),
            ),
            (
                "outlook",
                "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact \
                 your Internet service provider since part of their network is on our block \
                 list (S3150).",
                Some("outlook_s3150"),
            ),
            (
                "outlook",
                "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due \
                 to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775)",
                Some("outlook_s775"),
            ),
            (
                "outlook",
                "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77714)",
                Some("microsoft_server_busy"),
            ),
            (
                "default",
                "550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus",
                Some("blocklisted"),
            ),
            (
                "icloud",
                "421 4.7.0 Too many connections from your IP",
                Some("too_many_connections"),
            ),
            (
                "default",
                "450 4.7.1 Rate limited, slow down",
                Some("rate_limited"),
            ),
            (
                "default",
                "451 Temporary local problem - please try again later",
                Some("try_again_later"),
            ),
            (
                "default",
                "450 4.2.0 <r@x.test>: Recipient address rejected: Greylisted, see \
                 http://postgrey.schweikert.ch/help/x.test.html",
                Some("greylisted"),
            ),
            (
                "default",
                "451 4.7.1 Graylisted, come back in 5 minutes",
                Some("graylisted"),
            ),
            // Provider-specific rules stay with their provider.
            (
                "office365",
                "451 4.7.500 Server busy",
                Some("microsoft_server_busy"),
            ),
            (
                "office365",
                "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited",
                Some("microsoft_4_7_650"),
            ),
            ("yahoo", "550 5.7.1 … on our block list (S3150)", None),
            ("default", "550 5.7.1 likely unsolicited mail", None),
            (
                "google",
                "550-5.1.1 The email account that you tried to reach does not exist.",
                None,
            ),
            ("outlook", "250 2.0.0 OK", None),
        ];
        for (provider, reply, expected) in cases {
            let got = rules.matching(provider, reply).map(|m| m.name);
            assert_eq!(got, *expected, "{provider}: {reply}");
        }
    }

    #[test]
    fn actions_and_durations() {
        let rules = defaults();
        let tss04 = rules
            .matching("yahoo", "421 4.7.0 [TSS04] deferred")
            .unwrap();
        assert_eq!(tss04.action, RuleAction::Suspend { for_: HOUR });
        assert_eq!(tss04.pattern, "[TSS04]");
        assert_eq!(tss04.action.as_str(), "suspend");
        let busy = rules
            .matching("outlook", "451 4.7.500 Server busy")
            .unwrap();
        assert_eq!(
            busy.action,
            RuleAction::SlowDown {
                factor: 0.5,
                for_: HOUR / 2
            }
        );
        assert_eq!(busy.action.as_str(), "slow_down");
        assert_eq!(busy.action.duration(), HOUR / 2);
    }

    #[test]
    fn first_match_wins_and_provider_is_case_insensitive() {
        let rule = |name: &str, pattern: &str, provider: Option<&str>, action| ReplyRule {
            name: Some(name.into()),
            pattern: pattern.into(),
            provider: provider.map(Into::into),
            action,
            factor: (action == ReplyAction::SlowDown).then_some(0.25),
            duration_secs: 60,
        };
        let rules = ReplyRules::new(&[
            rule("only_acme", "blocked", Some("Acme"), ReplyAction::Suspend),
            rule("any", "BLOCKED", None, ReplyAction::SlowDown),
        ])
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules.matching("acme", "554 Blocked").unwrap().name,
            "only_acme"
        );
        let other = rules.matching("google", "554 blocked").unwrap();
        assert_eq!(other.name, "any");
        assert_eq!(
            other.action,
            RuleAction::SlowDown {
                factor: 0.25,
                for_: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn multi_line_pattern_matches_either_form() {
        let rules = ReplyRules::new(&[ReplyRule {
            name: None,
            pattern: "421 4.7.0 [TSS04]".into(),
            provider: None,
            action: ReplyAction::Suspend,
            factor: None,
            duration_secs: 3600,
        }])
        .unwrap();
        for reply in [
            "421 4.7.0 [TSS04] x",
            "421-4.7.0 [tss04] x",
            "421  4.7.0\t[TSS04]",
        ] {
            let found = rules.matching("yahoo", reply).expect(reply);
            assert_eq!(
                found.name, "421 4.7.0 [TSS04]",
                "unnamed rules log their pattern"
            );
        }
        assert!(rules.matching("yahoo", "421 4.7.0 [TSS0").is_none());
    }

    #[test]
    fn invalid_rules_are_refused() {
        let bad = ReplyRule {
            name: None,
            pattern: "x".into(),
            provider: None,
            action: ReplyAction::SlowDown,
            factor: Some(2.0),
            duration_secs: 60,
        };
        let err = ReplyRules::new(&[bad]).unwrap_err().to_string();
        assert!(err.contains("delivery.reply_rules[0].factor"), "{err}");
        assert!(
            ReplyRules::new(&[])
                .unwrap()
                .matching("google", "anything")
                .is_none()
        );
    }
}
