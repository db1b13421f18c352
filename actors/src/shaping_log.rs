//! The record of shaping actions (issue 14, item 4): every suspension or
//! slow-down an Ip actor's [`crate::shaping::Shaping`] takes — from a reply rule
//! or a health breaker — is written to Postgres (`ip_shaping_actions`, see
//! [`penguin_engine::store::shaping_actions`]) with its rule, unit key,
//! provider, factor, resulting hourly rate, reason, start and end; and a
//! starting Ip actor loads the ones still in force and applies them, so a
//! restart or a hand-off to another node does not lift them.
//!
//! [`Applied`] is what `Shaping` returns for each action (the state now in force
//! on the unit, the key being the one `Shaping` indexes its units by);
//! [`Restored`] is what it takes back. Writes go through the Ip actor's ports
//! ([`crate::ip_ports::IpPorts`]): workers send [`crate::ip::IpMsg::Shaped`].

use penguin_engine::db::StoreError;
use penguin_engine::store::routing::IpSpec;
use penguin_engine::store::shaping_actions::ShapingAction;
use time::OffsetDateTime;

use crate::ip::IpState;
use crate::ip_ports::IpPorts;
use crate::shaping::Shaping;
use crate::shaping_rate::Base;

/// `ip_shaping_actions.action` of a suspension.
pub const SUSPEND: &str = "suspend";
/// `ip_shaping_actions.action` of a slow-down.
pub const SLOW_DOWN: &str = "slow_down";
/// Longest reply kept in a reason.
const REPLY_CHARS: usize = 200;

/// An action now in force on one unit, as `Shaping` took it.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub key: String,
    pub provider: String,
    /// [`SUSPEND`] or [`SLOW_DOWN`].
    pub action: &'static str,
    pub factor: Option<f64>,
    /// Messages an hour the unit may send until `until` (0 when suspended).
    pub effective_per_hour: u32,
    /// What a slow-down multiplied.
    pub base: Option<Base>,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
}

impl Applied {
    pub fn suspend(
        key: &str,
        provider: &str,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Applied {
        Applied {
            key: key.to_owned(),
            provider: provider.to_owned(),
            action: SUSPEND,
            factor: None,
            effective_per_hour: 0,
            base: None,
            since,
            until,
        }
    }

    pub fn slow_down(
        key: &str,
        provider: &str,
        factor: f64,
        effective_per_hour: u32,
        base: Base,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Applied {
        Applied {
            key: key.to_owned(),
            provider: provider.to_owned(),
            action: SLOW_DOWN,
            factor: Some(factor),
            effective_per_hour,
            base: Some(base),
            since,
            until,
        }
    }

    /// The row to record: `rule` names what acted (a reply rule, or
    /// `health:<trip>`), `cause` is the reply or the breaker's verdict.
    pub fn row(&self, ip: &IpSpec, rule: &str, cause: &str) -> ShapingAction {
        let effect = match (self.base, self.factor) {
            (Some(base), Some(factor)) => format!(
                "{factor} × {} = {}/h",
                base.describe(),
                self.effective_per_hour
            ),
            _ => "suspended".to_owned(),
        };
        let cause: String = cause.chars().take(REPLY_CHARS).collect();
        ShapingAction {
            tenant_id: ip.tenant_id,
            ip_id: ip.id,
            key: self.key.clone(),
            action: self.action.to_owned(),
            provider: self.provider.clone(),
            rule: rule.to_owned(),
            factor: self.factor,
            effective_per_hour: self.effective_per_hour,
            reason: format!("{effect}: {rule} on \"{cause}\""),
            started_at: self.since,
            until: self.until,
        }
    }
}

/// Actions a unit takes over from Postgres when it is next used.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Restored {
    pub suspended_until: Option<OffsetDateTime>,
    /// The slowed hourly rate and its end.
    pub slowed: Option<(u32, OffsetDateTime)>,
}

impl Restored {
    /// The unit key and action of a recorded row.
    pub fn from_row(row: &ShapingAction) -> Option<(String, Restored)> {
        let restored = match row.action.as_str() {
            SUSPEND => Restored {
                suspended_until: Some(row.until),
                slowed: None,
            },
            SLOW_DOWN => Restored {
                suspended_until: None,
                slowed: Some((row.effective_per_hour, row.until)),
            },
            _ => return None,
        };
        Some((row.key.clone(), restored))
    }

    /// Adds `other`, the later end of each kind winning.
    pub fn merge(&mut self, other: Restored) {
        other.merge_into(&mut self.suspended_until, &mut self.slowed);
    }

    /// Writes this into a unit's fields; a later end already there stays.
    pub fn merge_into(
        self,
        suspended_until: &mut Option<OffsetDateTime>,
        slowed: &mut Option<(u32, OffsetDateTime)>,
    ) {
        if let Some(until) = self.suspended_until
            && suspended_until.is_none_or(|u| u < until)
        {
            *suspended_until = Some(until);
        }
        if let Some((rate, until)) = self.slowed
            && slowed.is_none_or(|(_, u)| u < until)
        {
            *slowed = Some((rate, until));
        }
    }
}

/// Applies to a starting Ip actor's `shaping` the actions still in force for
/// its IP (a Postgres error fails the start: the supervisor retries it, rather
/// than lifting a suspension by forgetting it).
pub async fn restore(
    ports: &dyn IpPorts,
    ip: &IpSpec,
    shaping: &Shaping,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let rows = ports.shaping_in_force(ip.tenant_id, ip.id, now).await?;
    for row in &rows {
        tracing::info!(ip = %ip.address, key = %row.key, action = %row.action, rule = %row.rule, until = %row.until, "shaping action taken over");
    }
    shaping.restore(rows.iter().filter_map(Restored::from_row));
    Ok(())
}

/// Records an action the IP's shaping took (logged, not retried, on failure:
/// the action holds in memory either way).
pub async fn record(state: &IpState, row: &ShapingAction) {
    if let Err(err) = state.ports.record_shaping(row).await {
        tracing::warn!(ip = %state.spec.address, key = %row.key, rule = %row.rule, error = %err, "recording a shaping action failed");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use penguin_config::ProviderLimits;
    use penguin_engine::provider::Provider;
    use penguin_engine::reply_rules::RuleAction;

    use penguin_engine::site::ShapingUnit;

    use super::*;
    use crate::shaping::Admission;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 - 1_700_000_000 % 3600 + secs).unwrap()
    }

    fn uncapped() -> ShapingUnit {
        ShapingUnit {
            key: "default".into(),
            provider: Provider {
                name: "default".into(),
                limits: ProviderLimits {
                    max_connections: 2,
                    max_messages_per_connection: 10,
                    max_messages_per_hour: None,
                },
            },
        }
    }

    fn ip() -> IpSpec {
        crate::fakes::ip_spec(uuid::Uuid::nil(), 2)
    }

    /// Item 3: an uncapped unit that sent 600 messages in the last five
    /// minutes (7 200 an hour) slowed by 0.75 may send 5 400 an hour, not the
    /// 45 of a nominal 60/h.
    #[test]
    fn an_uncapped_unit_is_slowed_from_its_observed_rate() {
        let shaping = Shaping::default();
        let p = uncapped();
        for i in 0..600 {
            assert_eq!(shaping.admit(&p, at(i / 3)), Admission::Go);
        }
        let slow = RuleAction::SlowDown {
            factor: 0.75,
            for_: Duration::from_secs(600),
        };
        let applied = shaping.apply(&p, slow, at(250));
        assert_eq!(applied.effective_per_hour, 5400);
        assert_eq!(applied.base, Some(Base::Observed(7200)));
        let row = applied.row(&ip(), "try_again_later", "451 4.7.1 try again later");
        assert_eq!(row.key, "default");
        assert_eq!((row.started_at, row.until), (at(250), at(850)));
        assert_eq!(
            row.reason,
            "0.75 × observed 7200/h over the last 300 s = 5400/h: try_again_later on \
             \"451 4.7.1 try again later\""
        );
        // 600 sent this hour already: 4 800 more are admitted, not one more.
        for _ in 0..4800 {
            assert_eq!(shaping.admit(&p, at(260)), Admission::Go);
        }
        assert!(matches!(
            shaping.admit(&p, at(260)),
            Admission::NotBefore { .. }
        ));
    }

    /// A unit that was nearly idle is slowed to the floor, one a minute.
    #[test]
    fn an_idle_unit_is_slowed_to_the_floor() {
        let shaping = Shaping::default();
        let p = uncapped();
        shaping.admit(&p, at(0));
        let slow = RuleAction::SlowDown {
            factor: 0.5,
            for_: Duration::from_secs(600),
        };
        assert_eq!(shaping.apply(&p, slow, at(1)).effective_per_hour, 60);
    }

    /// What one incarnation recorded, the next one applies: a suspension holds
    /// until its end, a slow-down keeps its rate.
    #[test]
    fn recorded_actions_are_restored_into_a_fresh_shaping() {
        let before = Shaping::default();
        let p = uncapped();
        let suspend = RuleAction::Suspend {
            for_: Duration::from_secs(3600),
        };
        let row = before
            .apply(&p, suspend, at(0))
            .row(&ip(), "yahoo_tss04", "421 [TSS04]");
        let after = Shaping::default();
        after.restore(Restored::from_row(&row));
        assert_eq!(
            after.admit(&p, at(1800)),
            Admission::NotBefore {
                at: at(3600),
                why: "provider suspended by a reply rule"
            }
        );
        assert_eq!(after.admit(&p, at(3600)), Admission::Go);

        let slowed = ShapingAction {
            action: SLOW_DOWN.into(),
            effective_per_hour: 2,
            until: at(7000),
            ..row
        };
        let again = Shaping::default();
        again.restore(Restored::from_row(&slowed));
        assert_eq!(again.admit(&p, at(3601)), Admission::Go);
        assert_eq!(again.admit(&p, at(3602)), Admission::Go);
        assert!(matches!(
            again.admit(&p, at(3603)),
            Admission::NotBefore { .. }
        ));
    }
}
