//! Statistics per day, `?from=YYYY-MM-DD&to=YYYY-MM-DD` (inclusive; default the
//! last 30 days ending today, UTC; at most 400 days):
//!
//! - `GET /v1/campaigns/{id}/stats` (tenant): per UTC day the campaign's
//!   outcomes (`campaign_daily_stats`) and its complaints, unsubscribes, opens
//!   clicks and replies (counted from its delivery events), plus `totals`.
//! - `GET /v1/ips/{id}/stats` (admin, or the owning tenant): per day the IP's
//!   outcomes and complaints (`ip_daily_stats`), plus `totals`.
//! - `GET /v1/stats` (tenant): per UTC day the outcomes of all the tenant's
//!   campaigns summed, plus `totals` (no engagement: it is not rolled up, and
//!   counting it would scan every event of the tenant).
//!
//! Every day of the range has a row (zeros included), oldest first; `totals`
//! sums them. A malformed, repeated or unknown parameter, `from` after `to` or a
//! range over 400 days is 422 `invalid_request`; a foreign id is 404.

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use penguin_engine::store;
use penguin_engine::store::stats::DayCounts;
use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, TenantCaller};
use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::IdPath;
use crate::openapi::{AnyCaller, TenantOnly};

/// Days in a range when `from` is absent.
pub const DEFAULT_DAYS: i64 = 30;
/// The most days a range may span.
pub const MAX_DAYS: i64 = 400;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(campaign_stats))
        .routes(routes!(ip_stats))
        .routes(routes!(tenant_stats))
}

/// The `?from=&to=` of a stats route, validated: `from <= to`, at most
/// [`MAX_DAYS`] days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub from: Date,
    pub to: Date,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

/// A `YYYY-MM-DD` date (exactly: four, two and two digits).
fn parse_day(name: &str, text: &str) -> Result<Date, AppError> {
    let invalid = || AppError::invalid(format!("{name} must be a date YYYY-MM-DD, not {text:?}"));
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shaped {
        return Err(invalid());
    }
    let year: i32 = text[0..4].parse().map_err(|_| invalid())?;
    let month: u8 = text[5..7].parse().map_err(|_| invalid())?;
    let day: u8 = text[8..10].parse().map_err(|_| invalid())?;
    let month = Month::try_from(month).map_err(|_| invalid())?;
    Date::from_calendar_date(year, month, day).map_err(|_| invalid())
}

impl DateRange {
    /// Validates the query against `today` (the default end).
    fn new(from: Option<&str>, to: Option<&str>, today: Date) -> Result<DateRange, AppError> {
        let to = match to {
            Some(text) => parse_day("to", text)?,
            None => today,
        };
        let from = match from {
            Some(text) => parse_day("from", text)?,
            None => to - time::Duration::days(DEFAULT_DAYS - 1),
        };
        if from > to {
            return Err(AppError::invalid(format!("from {from} is after to {to}")));
        }
        if (to - from).whole_days() + 1 > MAX_DAYS {
            return Err(AppError::invalid(format!(
                "the range spans more than {MAX_DAYS} days"
            )));
        }
        Ok(DateRange { from, to })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for DateRange {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        let Query(query) = Query::<RangeQuery>::try_from_uri(&parts.uri)
            .map_err(|rejection| AppError::invalid(rejection.body_text()))?;
        let today = OffsetDateTime::now_utc().date();
        DateRange::new(query.from.as_deref(), query.to.as_deref(), today)
    }
}

/// A campaign's counts (of one day, or of the range).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, ToSchema)]
struct CampaignCounts {
    /// Messages accepted by the receiving server (`sent` outcomes).
    sent: i64,
    /// Temporary failures (a job may defer more than once).
    deferred: i64,
    bounced: i64,
    failed: i64,
    /// `complaint` events.
    complaints: i64,
    /// `unsubscribed` events.
    unsubscribes: i64,
    /// `open` events (the first open per job).
    opens: i64,
    /// `click` events (the first click per job and link).
    clicks: i64,
    /// `replied` events (`POST /v1/replies`: the first reply per lead).
    replies: i64,
}

impl CampaignCounts {
    fn of(d: &DayCounts) -> Self {
        CampaignCounts {
            sent: d.sent,
            deferred: d.deferred,
            bounced: d.bounced,
            failed: d.failed,
            complaints: d.complaints,
            unsubscribes: d.unsubscribes,
            opens: d.opens,
            clicks: d.clicks,
            replies: d.replies,
        }
    }
}

/// An IP's outcome counts (of one day, or of the range).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, ToSchema)]
struct IpCounts {
    sent: i64,
    deferred: i64,
    bounced: i64,
    failed: i64,
    /// Complaints about messages it sent.
    complaints: i64,
}

impl IpCounts {
    fn of(d: &DayCounts) -> Self {
        IpCounts {
            sent: d.sent,
            deferred: d.deferred,
            bounced: d.bounced,
            failed: d.failed,
            complaints: d.complaints,
        }
    }
}

/// A tenant's outcome counts over all its campaigns (of one day, or the range).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, ToSchema)]
struct TenantCounts {
    sent: i64,
    deferred: i64,
    bounced: i64,
    failed: i64,
}

impl TenantCounts {
    fn of(d: &DayCounts) -> Self {
        TenantCounts {
            sent: d.sent,
            deferred: d.deferred,
            bounced: d.bounced,
            failed: d.failed,
        }
    }
}

/// The sum of day rows.
fn sum(days: &[DayCounts]) -> DayCounts {
    let mut total = DayCounts {
        day: Date::MIN,
        sent: 0,
        deferred: 0,
        bounced: 0,
        failed: 0,
        complaints: 0,
        unsubscribes: 0,
        opens: 0,
        clicks: 0,
        replies: 0,
    };
    for d in days {
        total.sent += d.sent;
        total.deferred += d.deferred;
        total.bounced += d.bounced;
        total.failed += d.failed;
        total.complaints += d.complaints;
        total.unsubscribes += d.unsubscribes;
        total.opens += d.opens;
        total.clicks += d.clicks;
        total.replies += d.replies;
    }
    total
}

#[derive(Debug, Serialize, ToSchema)]
struct CampaignDay {
    /// UTC day, `YYYY-MM-DD`.
    day: String,
    #[serde(flatten)]
    counts: CampaignCounts,
}

#[derive(Debug, Serialize, ToSchema)]
struct CampaignStats {
    campaign_id: Uuid,
    /// First day, `YYYY-MM-DD`.
    from: String,
    /// Last day (inclusive), `YYYY-MM-DD`.
    to: String,
    /// One row per day of the range, oldest first.
    days: Vec<CampaignDay>,
    totals: CampaignCounts,
}

#[derive(Debug, Serialize, ToSchema)]
struct IpDay {
    /// The day of the rollup, `YYYY-MM-DD`.
    day: String,
    #[serde(flatten)]
    counts: IpCounts,
}

#[derive(Debug, Serialize, ToSchema)]
struct IpStats {
    ip_id: Uuid,
    from: String,
    to: String,
    days: Vec<IpDay>,
    totals: IpCounts,
}

#[derive(Debug, Serialize, ToSchema)]
struct TenantDay {
    /// UTC day, `YYYY-MM-DD`.
    day: String,
    #[serde(flatten)]
    counts: TenantCounts,
}

#[derive(Debug, Serialize, ToSchema)]
struct TenantStats {
    tenant_id: Uuid,
    from: String,
    to: String,
    days: Vec<TenantDay>,
    totals: TenantCounts,
}

/// A campaign's outcomes and engagement per UTC day.
///
/// Outcomes from the daily rollup; complaints, unsubscribes, opens, clicks and
/// replies counted from the campaign's delivery events by the day they happened.
#[utoipa::path(get, path = "/v1/campaigns/{id}/stats", tag = "stats",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The campaign"),
        ("from" = Option<String>, Query, description = "First day, YYYY-MM-DD (default: 29 days before `to`)"),
        ("to" = Option<String>, Query, description = "Last day, YYYY-MM-DD, inclusive (default: today, UTC)"),
    ),
    responses(
        (status = 200, description = "One row per day and the totals", body = CampaignStats),
        (status = 404, description = "No such campaign of the caller (`not_found`)", body = ErrorBody),
        (status = 422, description = "A malformed, repeated or unknown parameter, `from` after `to`, \
            or over 400 days (`invalid_request`)", body = ErrorBody),
        TenantOnly,
    ))]
async fn campaign_stats(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    range: DateRange,
) -> ApiResult<Json<CampaignStats>> {
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let rows = store::stats::campaign_days(&tx, tenant, id, range.from, range.to)
        .await
        .map_err(AppError::missing("no such campaign"))?;
    super::commit(tx).await?;
    Ok(Json(CampaignStats {
        campaign_id: id,
        from: range.from.to_string(),
        to: range.to.to_string(),
        totals: CampaignCounts::of(&sum(&rows)),
        days: rows
            .iter()
            .map(|d| CampaignDay {
                day: d.day.to_string(),
                counts: CampaignCounts::of(d),
            })
            .collect(),
    }))
}

/// An IP's outcomes and complaints per day (admin, or the owning tenant).
#[utoipa::path(get, path = "/v1/ips/{id}/stats", tag = "stats",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The IP"),
        ("from" = Option<String>, Query, description = "First day, YYYY-MM-DD (default: 29 days before `to`)"),
        ("to" = Option<String>, Query, description = "Last day, YYYY-MM-DD, inclusive (default: today, UTC)"),
    ),
    responses(
        (status = 200, description = "One row per day and the totals", body = IpStats),
        (status = 404, description = "No such IP of the caller (`not_found`)", body = ErrorBody),
        (status = 422, description = "A malformed, repeated or unknown parameter, `from` after `to`, \
            or over 400 days (`invalid_request`)", body = ErrorBody),
        AnyCaller,
    ))]
async fn ip_stats(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath,
    range: DateRange,
) -> ApiResult<Json<IpStats>> {
    let owner = match caller {
        Caller::Admin => None,
        Caller::Tenant(tenant) => Some(tenant),
    };
    let mut client = super::connection(&state).await?;
    let tx = super::caller_scope(&mut client, caller).await?;
    let rows = store::stats::ip_days(&tx, owner, id, range.from, range.to)
        .await
        .map_err(AppError::missing("no such IP"))?;
    super::commit(tx).await?;
    Ok(Json(IpStats {
        ip_id: id,
        from: range.from.to_string(),
        to: range.to.to_string(),
        totals: IpCounts::of(&sum(&rows)),
        days: rows
            .iter()
            .map(|d| IpDay {
                day: d.day.to_string(),
                counts: IpCounts::of(d),
            })
            .collect(),
    }))
}

/// The calling tenant's outcomes per UTC day, over all its campaigns.
#[utoipa::path(get, path = "/v1/stats", tag = "stats",
    security(("bearer" = [])),
    params(
        ("from" = Option<String>, Query, description = "First day, YYYY-MM-DD (default: 29 days before `to`)"),
        ("to" = Option<String>, Query, description = "Last day, YYYY-MM-DD, inclusive (default: today, UTC)"),
    ),
    responses(
        (status = 200, description = "One row per day and the totals", body = TenantStats),
        (status = 422, description = "A malformed, repeated or unknown parameter, `from` after `to`, \
            or over 400 days (`invalid_request`)", body = ErrorBody),
        TenantOnly,
    ))]
async fn tenant_stats(
    TenantCaller(tenant): TenantCaller,
    State(state): State<AppState>,
    range: DateRange,
) -> ApiResult<Json<TenantStats>> {
    let mut client = super::connection(&state).await?;
    let tx = super::tenant_scope(&mut client, tenant).await?;
    let rows = store::stats::tenant_days(&tx, tenant, range.from, range.to).await?;
    super::commit(tx).await?;
    Ok(Json(TenantStats {
        tenant_id: tenant,
        from: range.from.to_string(),
        to: range.to.to_string(),
        totals: TenantCounts::of(&sum(&rows)),
        days: rows
            .iter()
            .map(|d| TenantDay {
                day: d.day.to_string(),
                counts: TenantCounts::of(d),
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    const TODAY: Date = date!(2026 - 12 - 02);

    fn range(from: Option<&str>, to: Option<&str>) -> Result<DateRange, String> {
        DateRange::new(from, to, TODAY).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn the_default_range_is_the_last_30_days() {
        let r = range(None, None).unwrap();
        assert_eq!((r.from, r.to), (date!(2026 - 11 - 03), TODAY));
        let r = range(None, Some("2026-01-30")).unwrap();
        assert_eq!(r.from, date!(2026 - 01 - 01));
        let r = range(Some("2026-12-02"), None).unwrap();
        assert_eq!((r.from, r.to), (TODAY, TODAY));
    }

    #[test]
    fn ranges_are_checked() {
        for (from, to) in [
            (Some("2026-13-01"), None),
            (Some("2026-02-30"), None),
            (Some("2026-1-01"), None),
            (Some("20260101"), None),
            (Some(" 2026-01-01"), None),
            (Some("+202-01-01"), None),
            (None, Some("yesterday")),
            (Some("2026-12-03"), None),
            (Some("2026-05-02"), Some("2026-05-01")),
            (Some("2025-01-01"), Some("2026-02-05")),
        ] {
            assert!(range(from, to).is_err(), "{from:?} {to:?}");
        }
        // 400 days inclusive is the most.
        assert!(range(Some("2025-01-01"), Some("2026-02-04")).is_ok());
    }
}
