//! The shaping actions in force on an IP, as `GET /v1/ips` and
//! `GET /v1/ips/{id}` show them in the IP's `shaping` list ([`ShapingBody`]):
//! which unit (`key`, e.g. the provider), suspended or slowed, by which rule,
//! with what factor, at what hourly rate and why, from when until when. Read
//! from `ip_shaping_actions` ([`penguin_engine::store::shaping_actions`]),
//! which the Ip actors write when they act; used by `routes/ips.rs`.

use penguin_engine::store::shaping_actions::ShapingAction;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// One suspension or slow-down in force on one shaping unit of the IP.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ShapingBody {
    /// The shaping unit: the provider (`google`, `yahoo`, `default`, …) or,
    /// where units are finer, the destination site.
    pub key: String,
    /// The mailbox provider of the unit.
    pub provider: String,
    /// `suspend` or `slow_down`.
    #[schema(schema_with = action_schema)]
    pub action: String,
    /// The reply rule that matched (its name, or its pattern), or
    /// `health:suspend_pair` / `health:slow_pair` for a health breaker.
    pub rule: String,
    /// What a slow-down multiplied the unit's rate by; null for a suspension.
    pub factor: Option<f64>,
    /// Messages an hour the unit may send until `until` (0 while suspended).
    pub effective_per_hour: u32,
    /// How that rate was reached (the unit's cap, or its rate observed over
    /// the last five minutes, times the factor) and the reply that caused it.
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

fn action_schema() -> utoipa::openapi::schema::Object {
    crate::openapi::string_enum(["suspend", "slow_down"])
}

impl From<ShapingAction> for ShapingBody {
    fn from(action: ShapingAction) -> Self {
        ShapingBody {
            key: action.key,
            provider: action.provider,
            action: action.action,
            rule: action.rule,
            factor: action.factor,
            effective_per_hour: action.effective_per_hour,
            reason: action.reason,
            since: action.started_at,
            until: action.until,
        }
    }
}
