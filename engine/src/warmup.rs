//! The warm-up verdict on one finished IP-local day (DESIGN.md §6): does the IP
//! advance to the next day of its schedule, hold, step back, or restart the ramp?
//! Pure policy: the Warmup actor reads the inputs ([`crate::store::warmup`]),
//! calls [`decide`] and writes the result back in one transaction.
//!
//! The rules, first match wins:
//!
//! 1. **Re-warm**: nothing was sent on the day, the IP has been idle for at least
//!    `warmup.idle_rewarm_days` days (counted from its last day with sends, or from
//!    its creation day if it never sent) and it is past day 1 → back to day 1.
//!    Mailbox providers forget a sender that went quiet.
//! 2. **Step back**: the day's rates (`ip_daily_stats`) reach a warning or critical
//!    `[health]` threshold → one day back (never below day 1).
//! 3. **Hold**: the IP reserved less than `warmup.advance_min_usage` of its allowance
//!    that day: a day it barely used proves nothing to the providers.
//! 4. **Advance** one day; at the end of the schedule it **holds** at the ceiling
//!    (the last volume applies forever, `warmup_day` stays at the schedule's length).
//!
//! Besides the day, a day that sent and stayed healthy doubles the IP's
//! `rate_factor` (lowered by a health pause) back towards 1; any other day leaves
//! it. An IP without a schedule (warm) only gets that recovery: its verdict is
//! always `hold`, with a reason saying why, so its history still reads as a diary.

use penguin_config::{HealthConfig, WarmupConfig};
use time::Date;

use crate::allowance::daily_allowance;
use crate::health::{Health, Rates};

/// What the verdict on day `day` of one IP is based on.
#[derive(Debug, Clone, PartialEq)]
pub struct DayInputs {
    /// The IP-local day being judged (finished).
    pub day: Date,
    /// The schedule's ramp; `None` = a warm IP.
    pub volumes: Option<Vec<i32>>,
    /// The IP's warm-up day while `day` ran (1-based).
    pub warmup_day: i32,
    /// The IP's rate factor while `day` ran, as stored (`real`).
    pub rate_factor: f32,
    /// Messages reserved on `day` (sum of `ip_hourly_usage.reserved`).
    pub reserved: i64,
    /// The day's outcomes (`ip_daily_stats`).
    pub outcome: Rates,
    /// The last day before `day` on which the IP sent anything; `None` = never.
    pub last_send_day: Option<Date>,
    /// The IP-local day the IP was created.
    pub created_day: Date,
}

/// The settings the verdict depends on.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub warmup: &'a WarmupConfig,
    pub health: &'a HealthConfig,
    /// `[limits] warm_daily_volume` (0 = unlimited), for a warm IP's allowance.
    pub warm_daily_volume: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Advance,
    Hold,
    StepBack,
    Rewarm,
}

impl Verdict {
    /// The name stored in `warmup_history.decision` and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Advance => "advance",
            Verdict::Hold => "hold",
            Verdict::StepBack => "step_back",
            Verdict::Rewarm => "rewarm",
        }
    }
}

/// The verdict on one day and the IP's position after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub from_day: i32,
    pub to_day: i32,
    pub from_factor: f32,
    pub to_factor: f32,
    /// What the day used (the reservations), as `warmup_history.sent`.
    pub sent: i64,
    /// The day's allowance; `None` = unlimited (a warm IP without a volume).
    pub allowance: Option<u32>,
    pub reason: String,
}

impl Decision {
    /// Whether the IP's warm-up day or rate factor changes (the engine must reload it).
    pub fn changes_ip(&self) -> bool {
        self.from_day != self.to_day || self.from_factor != self.to_factor
    }
}

/// Judges one finished day. See the module doc for the rules.
pub fn decide(inputs: &DayInputs, policy: Policy<'_>) -> Decision {
    let health = inputs.outcome.judge(policy.health, 1);
    let sent_anything = inputs.reserved > 0 || inputs.outcome.attempts() > 0;
    let factor = f64::from(inputs.rate_factor);
    let to_factor = if sent_anything && health == Health::Healthy {
        (inputs.rate_factor * 2.0).min(1.0)
    } else {
        inputs.rate_factor
    };
    let mut decision = Decision {
        verdict: Verdict::Hold,
        from_day: inputs.warmup_day,
        to_day: inputs.warmup_day,
        from_factor: inputs.rate_factor,
        to_factor,
        sent: inputs.reserved,
        allowance: None,
        reason: String::new(),
    };

    let Some(volumes) = inputs.volumes.as_deref() else {
        decision.allowance = daily_allowance(None, 1, policy.warm_daily_volume, factor);
        decision.reason = match health.reason() {
            Some(why) => format!("warm IP (no schedule); unhealthy day: {why}"),
            None => "warm IP (no schedule)".to_string(),
        };
        return with_factor_note(decision);
    };
    // Past the end of the ramp (a shortened schedule) the IP is at the ceiling.
    let last_day = volumes.len().max(1) as i32;
    let day = inputs.warmup_day.clamp(1, last_day);
    let allowance = daily_allowance(Some(volumes), day, 0, factor).unwrap_or(0);
    decision.allowance = Some(allowance);

    if !sent_anything && day > 1 {
        let idle = idle_days(inputs);
        if idle >= i64::from(policy.warmup.idle_rewarm_days) {
            decision.verdict = Verdict::Rewarm;
            decision.to_day = 1;
            decision.reason = format!(
                "idle for {idle} days (re-warm after {}): the schedule restarts at day 1",
                policy.warmup.idle_rewarm_days
            );
            return with_factor_note(decision);
        }
    }
    if let Some(why) = health.reason() {
        decision.verdict = Verdict::StepBack;
        decision.to_day = (day - 1).max(1);
        decision.reason = format!("{} day: {why}", health.as_str());
        return with_factor_note(decision);
    }
    let usage = usage_text(inputs.reserved, allowance);
    let needed = needed_to_advance(allowance, policy.warmup.advance_min_usage);
    if inputs.reserved < needed {
        decision.reason = format!(
            "{usage}, below the {:.0}% needed to advance",
            policy.warmup.advance_min_usage * 100.0
        );
        return with_factor_note(decision);
    }
    if day >= last_day {
        decision.reason = format!("at the schedule's ceiling (day {day} of {last_day}); {usage}");
        return with_factor_note(decision);
    }
    decision.verdict = Verdict::Advance;
    decision.to_day = day + 1;
    decision.reason = format!("healthy; {usage}");
    with_factor_note(decision)
}

/// Consecutive days without sends ending with the judged day: since the last day
/// with sends, or since (and including) the creation day.
fn idle_days(inputs: &DayInputs) -> i64 {
    match inputs.last_send_day {
        Some(last) => (inputs.day - last).whole_days(),
        None => (inputs.day - inputs.created_day).whole_days() + 1,
    }
}

/// The fewest reservations that advance the day: `ceil(share × allowance)`
/// (a hair of slack so 0.9 × 20 is 18, not 18.000000000000004).
fn needed_to_advance(allowance: u32, share: f64) -> i64 {
    (share * f64::from(allowance) - 1e-9).ceil().max(0.0) as i64
}

fn usage_text(sent: i64, allowance: u32) -> String {
    if allowance == 0 {
        return format!("sent {sent} of 0 allowed");
    }
    let percent = sent as f64 * 100.0 / f64::from(allowance);
    format!("sent {sent} of {allowance} allowed ({percent:.0}%)")
}

fn with_factor_note(mut decision: Decision) -> Decision {
    if decision.to_factor != decision.from_factor {
        decision.reason = format!(
            "{}; rate factor {} → {}",
            decision.reason, decision.from_factor, decision.to_factor
        );
    }
    decision
}

#[cfg(test)]
#[path = "warmup_tests.rs"]
mod tests;
