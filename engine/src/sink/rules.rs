//! Scripted replies for the loopback sink: "answer `550 5.1.1` to `*@bounce.test`
//! at RCPT", "450 the first time, then accept", "wait 2 s before the final reply",
//! "drop the connection after the data".
//!
//! Used by the `session` module at the RCPT and end-of-data stages; set from
//! [`super::SinkConfig`], [`super::SinkHandle::set_rules`], `POST /rules` or
//! `penguin sink --rules FILE` (a JSON array of [`Rule`]). Guarantees: rules are
//! validated before use (a reply is one line starting with a 2xx–5xx code), the
//! first matching rule that still has uses left wins, and `times` counts per
//! (rule, recipient), so "fail N times then accept" is exact under concurrency.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where in the SMTP dialogue a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleStage {
    /// The reply to `RCPT TO`.
    #[serde(alias = "rcpt_to")]
    Rcpt,
    /// The reply after the final `.` of DATA (the message is recorded only when
    /// this reply is 2xx).
    DataEnd,
}

/// One scripted behaviour. JSON example:
/// `{"recipient_pattern": "*@bounce.test", "stage": "rcpt", "reply": "550 5.1.1 user unknown"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A case-insensitive substring, or a glob when it holds `*` or `?`
    /// (`*@bounce.test`); `*` alone matches every recipient.
    pub recipient_pattern: String,
    pub stage: RuleStage,
    /// The reply line, e.g. `"450 4.2.0 try again"`. `None`: the normal reply
    /// (useful with `delay_ms` alone).
    #[serde(default)]
    pub reply: Option<String>,
    /// Apply only the first N times per recipient, then fall through to the
    /// next rule (or accept). `None`: always.
    #[serde(default)]
    pub times: Option<u32>,
    /// Wait this long before replying (or dropping).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Close the connection without any reply instead of answering.
    #[serde(default)]
    pub drop_connection: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("rule {index}: empty recipient_pattern")]
    EmptyPattern { index: usize },
    #[error("rule {index}: reply must be one line starting with a 2xx-5xx code, got {reply:?}")]
    BadReply { index: usize, reply: String },
}

impl Rule {
    fn validate(&self, index: usize) -> Result<(), RuleError> {
        if self.recipient_pattern.is_empty() {
            return Err(RuleError::EmptyPattern { index });
        }
        if let Some(reply) = &self.reply {
            let code_ok = reply.len() >= 3
                && reply.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                && matches!(reply.as_bytes()[0], b'2'..=b'5')
                && matches!(reply.as_bytes().get(3), None | Some(b' '));
            if !code_ok || reply.chars().any(char::is_control) {
                return Err(RuleError::BadReply {
                    index,
                    reply: reply.clone(),
                });
            }
        }
        Ok(())
    }
}

/// What the session does instead of its normal reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Action {
    pub delay: Option<Duration>,
    pub response: Response,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response {
    /// The normal reply.
    Default,
    /// This reply line (without CRLF).
    Reply(String),
    /// Close the connection, no reply.
    Drop,
}

/// The active rules and how often each was used per recipient.
#[derive(Debug, Default)]
pub(crate) struct RuleSet {
    rules: Vec<Rule>,
    /// (rule index, lower-cased recipient) → uses so far; only for rules with `times`.
    uses: HashMap<(usize, String), u32>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> Result<Self, RuleError> {
        for (index, rule) in rules.iter().enumerate() {
            rule.validate(index)?;
        }
        Ok(RuleSet {
            rules,
            uses: HashMap::new(),
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Forgets the use counts (rules stay).
    pub fn reset_uses(&mut self) {
        self.uses.clear();
    }

    /// The action for the first recipient (in order) that a usable rule matches
    /// at `stage`, counting one use of that rule.
    pub fn apply<'r>(
        &mut self,
        stage: RuleStage,
        recipients: impl IntoIterator<Item = &'r str>,
    ) -> Option<Action> {
        if self.rules.is_empty() {
            return None;
        }
        for recipient in recipients {
            let recipient = recipient.to_ascii_lowercase();
            for (index, rule) in self.rules.iter().enumerate() {
                if rule.stage != stage || !pattern_matches(&rule.recipient_pattern, &recipient) {
                    continue;
                }
                if let Some(times) = rule.times {
                    let used = self.uses.entry((index, recipient.clone())).or_insert(0);
                    if *used >= times {
                        continue;
                    }
                    *used += 1;
                }
                return Some(Action {
                    delay: rule.delay_ms.map(Duration::from_millis),
                    response: if rule.drop_connection {
                        Response::Drop
                    } else if let Some(reply) = &rule.reply {
                        Response::Reply(reply.clone())
                    } else {
                        Response::Default
                    },
                });
            }
        }
        None
    }
}

/// Substring match, or glob (`*` any run, `?` one char) when the pattern has
/// either; case-insensitive (`text` is already lower-case).
fn pattern_matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    if !pattern.contains(['*', '?']) {
        return text.contains(&pattern);
    }
    glob(pattern.as_bytes(), text.as_bytes())
}

/// Iterative glob with single backtracking point: linear for typical patterns.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, stage: RuleStage, reply: &str, times: Option<u32>) -> Rule {
        Rule {
            recipient_pattern: pattern.into(),
            stage,
            reply: Some(reply.into()),
            times,
            delay_ms: None,
            drop_connection: false,
        }
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*@bounce.test", "a@bounce.test"));
        assert!(!pattern_matches("*@bounce.test", "a@bounce.test.org"));
        assert!(pattern_matches("bounce", "a@bounce.test.org"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("A?c*@*.TEST", "abc-x@y.test"));
        assert!(!pattern_matches("a?c", "ac"));
        assert!(pattern_matches("*a*b*c", "xxaxxbxxbxc"));
    }

    #[test]
    fn times_then_fall_through_per_recipient() {
        let mut rules = RuleSet::new(vec![rule(
            "*@defer.test",
            RuleStage::Rcpt,
            "450 4.2.0 later",
            Some(1),
        )])
        .unwrap();
        let reply = Response::Reply("450 4.2.0 later".into());
        let first = rules.apply(RuleStage::Rcpt, ["a@defer.test"]).unwrap();
        assert_eq!(first.response, reply);
        assert_eq!(rules.apply(RuleStage::Rcpt, ["A@defer.test"]), None);
        // Another recipient has its own count.
        assert!(rules.apply(RuleStage::Rcpt, ["b@defer.test"]).is_some());
        // Wrong stage never matches.
        assert_eq!(rules.apply(RuleStage::DataEnd, ["c@defer.test"]), None);
        rules.reset_uses();
        assert!(rules.apply(RuleStage::Rcpt, ["a@defer.test"]).is_some());
    }

    #[test]
    fn drop_and_delay_actions() {
        let mut drop = rule("drop", RuleStage::DataEnd, "250 ok", None);
        drop.drop_connection = true;
        drop.delay_ms = Some(5);
        let mut rules = RuleSet::new(vec![drop]).unwrap();
        let action = rules
            .apply(RuleStage::DataEnd, ["x@ok.test", "y@drop.test"])
            .unwrap();
        assert_eq!(action.response, Response::Drop);
        assert_eq!(action.delay, Some(Duration::from_millis(5)));
    }

    #[test]
    fn validation_and_json() {
        let bad = rule("x", RuleStage::Rcpt, "550 a\r\nb", None);
        assert!(matches!(
            RuleSet::new(vec![bad]),
            Err(RuleError::BadReply { .. })
        ));
        let bad = rule("x", RuleStage::Rcpt, "hello", None);
        assert!(RuleSet::new(vec![bad]).is_err());
        let bad = rule("", RuleStage::Rcpt, "550 x", None);
        assert!(RuleSet::new(vec![bad]).is_err());

        let parsed: Vec<Rule> = serde_json::from_str(
            r#"[{"recipient_pattern": "*@b.test", "stage": "rcpt_to", "reply": "550 5.1.1 no"},
                {"recipient_pattern": "slow", "stage": "data_end", "delay_ms": 10}]"#,
        )
        .unwrap();
        assert_eq!(parsed[0].stage, RuleStage::Rcpt);
        assert_eq!(parsed[1].reply, None);
        assert!(RuleSet::new(parsed).is_ok());
        let unknown = serde_json::from_str::<Vec<Rule>>(
            r#"[{"recipient_pattern": "x", "stage": "rcpt", "bogus": 1}]"#,
        );
        assert!(unknown.is_err());
    }
}
