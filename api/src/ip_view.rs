//! An SMTP IP as the API shows it ([`IpBody`]): the stored IP plus what its
//! limits make of it right now — today's allowance, this hour's quota, what it
//! sent, the health of its day, and one `state` saying whether it sends.
//!
//! Pure: [`IpBody::new`] computes everything from a
//! [`penguin_engine::store::ips::IpView`] (one row of one query) and the config,
//! with the engine's own arithmetic ([`allowance`], [`health`]), so the API shows
//! the limits the Ip actor enforces. Used by `routes/ips.rs`.

use penguin_config::Config;
use penguin_engine::allowance::{self, DayPlan};
use penguin_engine::health::Rates;
use penguin_engine::store::ips::{IpView, WarmupDecision};
use penguin_engine::store::shaping_actions::ShapingAction;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::shaping_view::ShapingBody;

/// The IP's state: `paused`, `outside_active_hours`, `exhausted`, `sending` or
/// `retired`.
pub const STATES: [&str; 5] = [
    "paused",
    "outside_active_hours",
    "exhausted",
    "sending",
    "retired",
];

/// An SMTP IP with what its limits make of it right now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct IpBody {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub address: String,
    pub helo_name: String,
    /// `active` or `paused` (as stored).
    #[schema(schema_with = ip_status_schema)]
    pub status: String,
    pub status_reason: Option<String>,
    pub warmup_schedule: Option<String>,
    pub warmup_day: i32,
    /// The schedule's volume for the current warm-up day; null without a schedule.
    pub warmup_daily_volume: Option<i64>,
    pub timezone: String,
    pub active_hours: ActiveHoursBody,
    #[serde(with = "time::serde::rfc3339::option")]
    pub paused_until: Option<OffsetDateTime>,
    pub rate_factor: f64,
    /// Messages today may carry (warm-up volume × rate factor); null = unlimited.
    pub allowance_today: Option<u32>,
    /// Messages this IP-local hour may carry (the day spread over the active
    /// hours, capped by `limits.ip_hourly_cap`); null = unlimited.
    pub hourly_quota: Option<u32>,
    /// Sends reserved this IP-local hour and day.
    pub sent_this_hour: i64,
    pub sent_today: i64,
    pub health: HealthBody,
    /// Whether it sends now: `paused`, `outside_active_hours`, `exhausted` or
    /// `sending`; `state_reason` says why not.
    #[schema(schema_with = state_schema)]
    pub state: &'static str,
    pub state_reason: Option<String>,
    pub last_warmup_decision: Option<WarmupBody>,
    /// Every suspension or slow-down in force on the IP's shaping units, with
    /// its rule, effective hourly rate and reason.
    pub shaping: Vec<ShapingBody>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The IP-local hours it sends in, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ActiveHoursBody {
    pub start: u8,
    pub end: u8,
}

/// Today's outcomes (the IP-local day) and their verdict.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HealthBody {
    pub sent: u64,
    pub bounced: u64,
    pub deferred: u64,
    pub complaints: u64,
    pub bounce_rate: f64,
    pub deferral_rate: f64,
    pub complaint_rate: f64,
    /// `healthy`, `warning` or `critical`.
    #[schema(schema_with = health_schema)]
    pub status: &'static str,
    pub reason: Option<String>,
}

/// The last day-end warm-up decision about the IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WarmupBody {
    /// The IP-local day judged, `YYYY-MM-DD`.
    pub day: String,
    pub decision: String,
    pub from_day: i32,
    pub to_day: i32,
    pub sent: i64,
    pub allowance: Option<i64>,
    pub reason: String,
}

fn ip_status_schema() -> utoipa::openapi::schema::Object {
    crate::openapi::string_enum(["active", "paused", "retired"])
}

fn state_schema() -> utoipa::openapi::schema::Object {
    crate::openapi::string_enum(STATES)
}

fn health_schema() -> utoipa::openapi::schema::Object {
    crate::openapi::string_enum(["healthy", "warning", "critical"])
}

impl IpBody {
    pub fn new(ip: IpView, config: &Config) -> IpBody {
        let allowance_today = allowance::daily_allowance(
            ip.schedule_volumes.as_deref(),
            ip.warmup_day,
            config.limits.warm_daily_volume,
            ip.rate_factor,
        );
        let plan = DayPlan {
            daily: allowance_today,
            active_start: ip.active_hours_start,
            active_end: ip.active_hours_end,
            hourly_cap: Some(config.limits.ip_hourly_cap).filter(|cap| *cap > 0),
        };
        let hourly_quota = plan.hour_quota(ip.local_hour);
        let (state, state_reason) = state(&ip, &plan, hourly_quota);
        let health = health_body(&ip.today, config);
        IpBody {
            id: ip.id,
            tenant_id: ip.tenant_id,
            address: ip.address.to_string(),
            helo_name: ip.helo_name,
            status: ip.status,
            status_reason: ip.status_reason,
            warmup_schedule: ip.warmup_schedule,
            warmup_day: ip.warmup_day,
            warmup_daily_volume: ip
                .schedule_volumes
                .as_deref()
                .map(|volumes| i64::from(allowance::schedule_volume(volumes, ip.warmup_day))),
            timezone: ip.timezone,
            active_hours: ActiveHoursBody {
                start: ip.active_hours_start,
                end: ip.active_hours_end,
            },
            paused_until: ip.paused_until,
            rate_factor: ip.rate_factor,
            allowance_today,
            hourly_quota,
            sent_this_hour: ip.sent_this_hour,
            sent_today: ip.sent_today,
            health,
            state,
            state_reason,
            last_warmup_decision: ip.last_warmup.map(warmup_body),
            shaping: Vec::new(),
            created_at: ip.created_at,
        }
    }

    /// The same IP with the shaping actions in force (those of other IPs in
    /// `actions` are left out).
    pub fn with_shaping(mut self, actions: &[ShapingAction]) -> IpBody {
        self.shaping = actions
            .iter()
            .filter(|action| action.ip_id == self.id)
            .cloned()
            .map(ShapingBody::from)
            .collect();
        self
    }
}

/// Whether the IP sends now, and if not, why — in this order: paused by hand or
/// by health, outside its active hours, out of today's allowance or this hour's
/// quota.
fn state(ip: &IpView, plan: &DayPlan, hourly_quota: Option<u32>) -> (&'static str, Option<String>) {
    if ip.status == "retired" {
        return ("retired", ip.status_reason.clone());
    }
    if ip.status == "paused" {
        let why = ip.status_reason.as_deref().unwrap_or("paused");
        let until = ip.paused_until.and_then(|t| t.format(&Rfc3339).ok());
        let reason = match until {
            Some(until) => format!("{why} (until {until})"),
            None => why.to_string(),
        };
        return ("paused", Some(reason));
    }
    if ip.local_hour < plan.active_start || ip.local_hour >= plan.active_end {
        return (
            "outside_active_hours",
            Some(format!(
                "sends from {:02}:00 to {:02}:00 {}; it is {:02}:xx there",
                plan.active_start, plan.active_end, ip.timezone, ip.local_hour
            )),
        );
    }
    if let Some(daily) = plan.daily
        && ip.sent_today >= i64::from(daily)
    {
        return (
            "exhausted",
            Some(format!(
                "today's allowance of {daily} is used ({} sent)",
                ip.sent_today
            )),
        );
    }
    if let Some(quota) = hourly_quota
        && ip.sent_this_hour >= i64::from(quota)
    {
        let next = match plan.next_open_hour(ip.local_hour + 1) {
            Some(hour) => format!("next quota at {hour:02}:00 {}", ip.timezone),
            None => "no quota left today".to_string(),
        };
        return (
            "exhausted",
            Some(format!(
                "this hour's quota of {quota} is used ({} sent); {next}",
                ip.sent_this_hour
            )),
        );
    }
    ("sending", None)
}

/// Today's rates judged as the rolling breakers judge them (at least
/// `health.min_sends` attempts before any verdict).
fn health_body(today: &Rates, config: &Config) -> HealthBody {
    let verdict = today.judge(&config.health, u64::from(config.health.min_sends));
    HealthBody {
        sent: today.sent,
        bounced: today.bounced,
        deferred: today.deferred,
        complaints: today.complaints,
        bounce_rate: today.bounce_rate(),
        deferral_rate: today.deferral_rate(),
        complaint_rate: today.complaint_rate(),
        status: verdict.as_str(),
        reason: verdict.reason().map(str::to_string),
    }
}

fn warmup_body(decision: WarmupDecision) -> WarmupBody {
    WarmupBody {
        day: decision.day.to_string(),
        decision: decision.decision,
        from_day: decision.from_day,
        to_day: decision.to_day,
        sent: decision.sent,
        allowance: decision.allowance,
        reason: decision.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn ip() -> IpView {
        IpView {
            tenant_id: Uuid::from_u128(1),
            id: Uuid::from_u128(2),
            address: "127.0.0.2".parse().unwrap(),
            helo_name: "mta.example.test".into(),
            status: "active".into(),
            status_reason: None,
            warmup_schedule: Some("ramp".into()),
            warmup_day: 2,
            schedule_volumes: Some(vec![240, 480, 960]),
            timezone: "UTC".into(),
            active_hours_start: 0,
            active_hours_end: 24,
            paused_until: None,
            rate_factor: 1.0,
            created_at: datetime!(2026-01-01 00:00 UTC),
            local_day: date!(2026 - 01 - 02),
            local_hour: 10,
            sent_today: 0,
            sent_this_hour: 0,
            today: Rates::default(),
            last_warmup: None,
        }
    }

    #[test]
    fn allowance_quota_and_state_follow_the_engine() {
        let config = Config::default();
        let body = IpBody::new(ip(), &config);
        assert_eq!(body.allowance_today, Some(480));
        assert_eq!(body.hourly_quota, Some(20), "480 over 24 hours");
        assert_eq!(body.warmup_daily_volume, Some(480));
        assert_eq!((body.state, body.state_reason), ("sending", None));

        let halved = IpView {
            rate_factor: 0.5,
            sent_this_hour: 10,
            ..ip()
        };
        let body = IpBody::new(halved, &config);
        assert_eq!(
            (body.allowance_today, body.hourly_quota),
            (Some(240), Some(10))
        );
        assert_eq!(body.state, "exhausted");
        assert!(body.state_reason.unwrap().contains("quota of 10"));

        let spent = IpView {
            sent_today: 480,
            ..ip()
        };
        let body = IpBody::new(spent, &config);
        assert_eq!(body.state, "exhausted");
        assert!(body.state_reason.unwrap().contains("allowance of 480"));
    }

    #[test]
    fn warm_ips_are_unlimited_unless_configured() {
        let mut config = Config::default();
        let warm = IpView {
            warmup_schedule: None,
            schedule_volumes: None,
            sent_this_hour: 1_000_000,
            ..ip()
        };
        let body = IpBody::new(warm.clone(), &config);
        assert_eq!((body.allowance_today, body.hourly_quota), (None, None));
        assert_eq!(body.state, "sending");
        config.limits.warm_daily_volume = 48_000;
        config.limits.ip_hourly_cap = 500;
        let body = IpBody::new(warm, &config);
        assert_eq!(
            (body.allowance_today, body.hourly_quota),
            (Some(48_000), Some(500))
        );
        assert_eq!(body.state, "exhausted");
    }

    #[test]
    fn paused_wins_then_active_hours() {
        let config = Config::default();
        let paused = IpView {
            status: "paused".into(),
            status_reason: Some("bounce rate 12.00% >= 10.00%".into()),
            paused_until: Some(datetime!(2026-01-02 16:00 UTC)),
            local_hour: 3,
            active_hours_start: 8,
            active_hours_end: 18,
            ..ip()
        };
        let body = IpBody::new(paused.clone(), &config);
        assert_eq!(body.state, "paused");
        assert_eq!(
            body.state_reason.as_deref(),
            Some("bounce rate 12.00% >= 10.00% (until 2026-01-02T16:00:00Z)")
        );
        let resting = IpView {
            status: "active".into(),
            ..paused
        };
        let body = IpBody::new(resting, &config);
        assert_eq!(body.state, "outside_active_hours");
        assert_eq!(body.hourly_quota, Some(0));
        assert_eq!(body.active_hours, ActiveHoursBody { start: 8, end: 18 });
    }

    #[test]
    fn health_is_judged_on_the_day_with_min_sends() {
        let config = Config::default();
        let few = IpView {
            today: Rates {
                sent: 10,
                bounced: 10,
                deferred: 0,
                complaints: 0,
            },
            ..ip()
        };
        assert_eq!(IpBody::new(few, &config).health.status, "healthy");
        let bad = IpView {
            today: Rates {
                sent: 90,
                bounced: 10,
                deferred: 0,
                complaints: 0,
            },
            ..ip()
        };
        let health = IpBody::new(bad, &config).health;
        assert_eq!(health.status, "critical");
        assert!((health.bounce_rate - 0.1).abs() < 1e-9);
        assert!(health.reason.unwrap().starts_with("bounce rate"));
    }
}
