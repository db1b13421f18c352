//! Every rule of [`super::decide`], its order and its edges.

use penguin_config::{HealthConfig, WarmupConfig};
use time::{Date, Month};

use super::*;

const RAMP: [i32; 4] = [10, 20, 40, 80];

fn date(day: u8) -> Date {
    Date::from_calendar_date(2025, Month::March, day).unwrap()
}

/// Day 2 of [`RAMP`] (allowance 20), judged on March 20, created March 1, sent
/// the day before, nothing reserved and no outcomes yet.
fn inputs() -> DayInputs {
    DayInputs {
        day: date(20),
        volumes: Some(RAMP.to_vec()),
        warmup_day: 2,
        rate_factor: 1.0,
        reserved: 0,
        outcome: Rates::default(),
        last_send_day: Some(date(19)),
        created_day: date(1),
    }
}

/// A day that reserved `n` and delivered all of it.
fn sent(mut i: DayInputs, n: i64) -> DayInputs {
    i.reserved = n;
    i.outcome = Rates {
        sent: n as u64,
        ..Rates::default()
    };
    i
}

fn decide_default(i: &DayInputs) -> Decision {
    let (warmup, health) = (WarmupConfig::default(), HealthConfig::default());
    decide(
        i,
        Policy {
            warmup: &warmup,
            health: &health,
            warm_daily_volume: 0,
        },
    )
}

#[test]
fn a_healthy_well_used_day_advances() {
    let d = decide_default(&sent(inputs(), 19));
    assert_eq!(d.verdict, Verdict::Advance);
    assert_eq!((d.from_day, d.to_day), (2, 3));
    assert_eq!((d.sent, d.allowance), (19, Some(20)));
    assert_eq!(d.reason, "healthy; sent 19 of 20 allowed (95%)");
    assert!(d.changes_ip());
}

#[test]
fn exactly_the_minimum_share_advances_and_one_less_holds() {
    assert_eq!(
        decide_default(&sent(inputs(), 18)).verdict,
        Verdict::Advance
    );
    let d = decide_default(&sent(inputs(), 17));
    assert_eq!(d.verdict, Verdict::Hold);
    assert_eq!(d.to_day, 2);
    assert_eq!(
        d.reason,
        "sent 17 of 20 allowed (85%), below the 90% needed to advance"
    );
    assert!(!d.changes_ip());
}

#[test]
fn a_quiet_day_holds() {
    let d = decide_default(&inputs());
    assert_eq!(d.verdict, Verdict::Hold);
    assert_eq!((d.from_day, d.to_day, d.sent), (2, 2, 0));
    assert!(d.reason.starts_with("sent 0 of 20"), "{}", d.reason);
}

#[test]
fn reservations_count_even_before_outcomes_arrive() {
    let mut i = inputs();
    i.reserved = 20;
    assert_eq!(decide_default(&i).verdict, Verdict::Advance);
}

#[test]
fn an_unhealthy_day_steps_back_and_names_the_rate() {
    let mut i = sent(inputs(), 20);
    i.warmup_day = 3;
    i.reserved = 40;
    i.outcome = Rates {
        sent: 36,
        bounced: 4,
        ..Rates::default()
    };
    let d = decide_default(&i);
    assert_eq!(d.verdict, Verdict::StepBack);
    assert_eq!((d.from_day, d.to_day), (3, 2));
    assert_eq!(d.reason, "critical day: bounce rate 10.00% >= 10.00%");
}

#[test]
fn a_warning_steps_back_too() {
    let mut i = sent(inputs(), 20);
    i.outcome.deferred = 8; // 8 of 28 attempts: 28.6% ≥ 25% warning, < 50%
    let d = decide_default(&i);
    assert_eq!(d.verdict, Verdict::StepBack);
    assert!(
        d.reason.starts_with("warning day: deferral rate"),
        "{}",
        d.reason
    );
}

#[test]
fn complaints_are_judged_against_delivered_messages() {
    let mut i = sent(inputs(), 20);
    i.outcome.complaints = 1;
    let d = decide_default(&i);
    assert_eq!(d.verdict, Verdict::StepBack);
    assert!(d.reason.contains("complaint rate"), "{}", d.reason);
}

#[test]
fn stepping_back_never_goes_below_day_one() {
    let mut i = sent(inputs(), 10);
    i.warmup_day = 1;
    i.outcome.bounced = 10;
    let d = decide_default(&i);
    assert_eq!(d.verdict, Verdict::StepBack);
    assert_eq!((d.from_day, d.to_day), (1, 1));
}

#[test]
fn a_single_bad_attempt_is_judged() {
    // The daily verdict judges from the first attempt on (min_attempts 1).
    let mut i = inputs();
    i.reserved = 1;
    i.outcome.bounced = 1;
    assert_eq!(decide_default(&i).verdict, Verdict::StepBack);
}

#[test]
fn unhealthy_beats_low_volume() {
    let mut i = inputs();
    i.reserved = 2;
    i.outcome = Rates {
        sent: 1,
        bounced: 1,
        ..Rates::default()
    };
    assert_eq!(decide_default(&i).verdict, Verdict::StepBack);
}

#[test]
fn the_ceiling_holds() {
    let mut i = sent(inputs(), 80);
    i.warmup_day = 4;
    let d = decide_default(&i);
    assert_eq!(d.verdict, Verdict::Hold);
    assert_eq!((d.from_day, d.to_day), (4, 4));
    assert_eq!(
        d.reason,
        "at the schedule's ceiling (day 4 of 4); sent 80 of 80 allowed (100%)"
    );
}

#[test]
fn a_day_past_a_shortened_schedule_counts_as_its_ceiling() {
    let mut i = sent(inputs(), 80);
    i.warmup_day = 9;
    let d = decide_default(&i);
    assert_eq!((d.verdict, d.allowance), (Verdict::Hold, Some(80)));
    i.outcome.bounced = 40;
    let d = decide_default(&i);
    assert_eq!((d.verdict, d.from_day, d.to_day), (Verdict::StepBack, 9, 3));
}

#[test]
fn a_long_idle_ip_rewarms_from_day_one() {
    let mut i = inputs();
    i.warmup_day = 10;
    i.volumes = Some((1..=30).map(|d| d * 100).collect());
    i.last_send_day = Some(date(20) - time::Duration::days(31));
    let d = decide_default(&i);
    assert_eq!(d.verdict, Verdict::Rewarm);
    assert_eq!((d.from_day, d.to_day), (10, 1));
    assert_eq!(
        d.reason,
        "idle for 31 days (re-warm after 30): the schedule restarts at day 1"
    );
}

#[test]
fn idle_days_start_at_the_last_send() {
    let mut i = inputs();
    i.last_send_day = Some(date(20) - time::Duration::days(30));
    assert_eq!(decide_default(&i).verdict, Verdict::Rewarm, "30 idle days");
    i.last_send_day = Some(date(20) - time::Duration::days(29));
    assert_eq!(decide_default(&i).verdict, Verdict::Hold, "29 idle days");
}

#[test]
fn an_ip_that_never_sent_counts_idle_days_from_its_creation() {
    let mut i = inputs();
    i.last_send_day = None;
    i.created_day = date(20) - time::Duration::days(29); // 30 days including both
    assert_eq!(decide_default(&i).verdict, Verdict::Rewarm);
    i.created_day = date(20) - time::Duration::days(28);
    assert_eq!(decide_default(&i).verdict, Verdict::Hold);
}

#[test]
fn day_one_is_never_rewarmed() {
    let mut i = inputs();
    i.warmup_day = 1;
    i.last_send_day = None;
    let d = decide_default(&i);
    assert_eq!((d.verdict, d.to_day), (Verdict::Hold, 1));
}

#[test]
fn a_day_that_sent_is_never_idle() {
    let mut i = sent(inputs(), 1);
    i.last_send_day = None;
    assert_eq!(decide_default(&i).verdict, Verdict::Hold);
}

#[test]
fn the_configured_idle_period_and_share_apply() {
    let warmup = WarmupConfig {
        advance_min_usage: 0.5,
        idle_rewarm_days: 3,
    };
    let health = HealthConfig::default();
    let policy = Policy {
        warmup: &warmup,
        health: &health,
        warm_daily_volume: 0,
    };
    assert_eq!(
        decide(&sent(inputs(), 10), policy).verdict,
        Verdict::Advance
    );
    let mut i = inputs();
    i.last_send_day = Some(date(17));
    assert_eq!(decide(&i, policy).verdict, Verdict::Rewarm);
}

#[test]
fn a_healthy_day_that_sent_doubles_the_rate_factor_towards_one() {
    let mut i = sent(inputs(), 9);
    i.rate_factor = 0.5;
    let d = decide_default(&i);
    // The allowance is the halved one: 9 of 10 is enough.
    assert_eq!((d.verdict, d.allowance), (Verdict::Advance, Some(10)));
    assert_eq!((d.from_factor, d.to_factor), (0.5, 1.0));
    assert!(d.reason.ends_with("; rate factor 0.5 → 1"), "{}", d.reason);

    i.rate_factor = 0.25;
    assert_eq!(decide_default(&i).to_factor, 0.5);
    i.rate_factor = 0.75;
    assert_eq!(decide_default(&i).to_factor, 1.0, "never above 1");
}

#[test]
fn a_low_volume_healthy_day_still_recovers_the_factor() {
    let mut i = sent(inputs(), 1);
    i.rate_factor = 0.5;
    let d = decide_default(&i);
    assert_eq!((d.verdict, d.to_factor), (Verdict::Hold, 1.0));
    assert!(d.changes_ip());
}

#[test]
fn unhealthy_or_silent_days_leave_the_factor() {
    let mut i = sent(inputs(), 10);
    i.rate_factor = 0.5;
    i.outcome.bounced = 5;
    assert_eq!(decide_default(&i).to_factor, 0.5);
    let mut quiet = inputs();
    quiet.rate_factor = 0.5;
    let d = decide_default(&quiet);
    assert_eq!(d.to_factor, 0.5);
    assert!(!d.changes_ip());
}

#[test]
fn a_warm_ip_only_recovers_its_rate_factor() {
    let mut i = sent(inputs(), 500);
    i.volumes = None;
    i.warmup_day = 1;
    i.rate_factor = 0.5;
    let d = decide_default(&i);
    assert_eq!(d.verdict, Verdict::Hold);
    assert_eq!((d.from_day, d.to_day, d.allowance), (1, 1, None));
    assert_eq!(d.reason, "warm IP (no schedule); rate factor 0.5 → 1");

    i.outcome.bounced = 100;
    let d = decide_default(&i);
    assert_eq!((d.verdict, d.to_factor), (Verdict::Hold, 0.5));
    assert!(
        d.reason.contains("unhealthy day: bounce rate"),
        "{}",
        d.reason
    );
}

#[test]
fn a_long_idle_warm_ip_is_not_rewarmed() {
    let mut i = inputs();
    i.volumes = None;
    i.warmup_day = 5;
    i.last_send_day = None;
    let d = decide_default(&i);
    assert_eq!((d.verdict, d.to_day), (Verdict::Hold, 5));
}

#[test]
fn a_warm_ip_reports_its_configured_volume() {
    let (warmup, health) = (WarmupConfig::default(), HealthConfig::default());
    let mut i = inputs();
    i.volumes = None;
    i.rate_factor = 0.5;
    let policy = Policy {
        warmup: &warmup,
        health: &health,
        warm_daily_volume: 1000,
    };
    assert_eq!(decide(&i, policy).allowance, Some(500));
}

#[test]
fn verdict_names_match_the_history_check_constraint() {
    let names: Vec<&str> = [
        Verdict::Advance,
        Verdict::Hold,
        Verdict::StepBack,
        Verdict::Rewarm,
    ]
    .iter()
    .map(|v| v.as_str())
    .collect();
    assert_eq!(names, ["advance", "hold", "step_back", "rewarm"]);
}
