//! The allowance of one Ip actor: turns its spec (warm-up day, schedule, rate
//! factor, active hours), the `[limits]` config and its current health into a
//! [`DayPlan`] for the IP-local day, and reserves sends against it in Redis
//! (the IP's counters, through [`IpPorts`]), rebuilding missing counters from
//! Postgres first.
//!
//! Redis and Postgres can disagree without Redis losing anything: a node killed
//! between its reservation and its claim's commit leaves sends reserved that
//! no claim counts, and a claim whose outcome is unknown (its connection cut
//! at commit) keeps its reservation rather than risk giving back a send that
//! happened. So the first reservation of an actor compares the counters with
//! Postgres, and so does a reservation that comes up short while this actor
//! holds reservations in doubt (a claim whose commit is unknown, a give-back
//! that failed) or last compared [`RECHECK`] ago; counters that differ are
//! reset to Postgres' totals. A leak costs the hour nothing, and an overshoot
//! is impossible because Postgres counts every claim.
//!
//! A batch gets at most what the hour and the day still allow; the rest is
//! refused with the time the next window opens, so the tenant can route it to
//! another IP or leave it waiting in Postgres until then. Counters that Redis
//! loses again while they are rebuilt (a flush or a restart under way) refuse
//! nothing: the reservation fails, and the jobs wait in Redis for the next try.

use penguin_engine::allowance::{DayPlan, daily_allowance};
use penguin_engine::queue::QueueError;
use penguin_engine::queue::counters::{Reserved, Slot};
use penguin_engine::store::ledger::UsageMark;
use penguin_engine::store::routing::IpSpec;
use penguin_engine::store::usage::LocalHour;
use time::OffsetDateTime;

use crate::context::Ctx;
use crate::ip_ports::IpPorts;

/// The outcome of one reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub n: u32,
    /// The counters' epoch the sends were reserved in (see
    /// [`penguin_engine::queue::counters`]).
    pub epoch: i64,
    /// Where the granted sends count.
    pub mark: UsageMark,
    /// When fewer than wanted were granted: when this IP may send again.
    pub next_window: Option<OffsetDateTime>,
}

#[derive(Default)]
pub struct Allowance {
    local: Option<LocalHour>,
    /// Reservations of the current hour released before SMTP, not yet taken off
    /// the Postgres copy (they already were in Redis).
    given_back: u32,
    /// When the counters were last compared with Postgres.
    checked_at: Option<OffsetDateTime>,
    /// Sends reserved in Redis that neither a claim nor a give-back is known
    /// to have settled since then.
    in_doubt: u32,
}

/// Without reservations in doubt, a short reservation compares the counters
/// with Postgres at most this often (a leak from outside this actor, such as
/// a paused node's, is rare).
pub const RECHECK: time::Duration = time::Duration::seconds(60);

#[derive(Debug, thiserror::Error)]
pub enum AllowanceError {
    #[error(transparent)]
    Store(#[from] penguin_engine::db::StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("warm-up verdict: {0:#}")]
    Warmup(anyhow::Error),
    /// Redis lost the counters again between their rebuild and the
    /// reservation (a flush or a restart under way): nothing is known of the
    /// hour, so nothing is granted and nothing refused.
    #[error("the ip's counters vanished from redis while they were rebuilt")]
    CountersLost,
}

/// The plan of `spec` for one of its days. `health_factor` is 0.5 while a
/// warning threshold is crossed, else 1.
pub fn plan(ctx: &Ctx, spec: &IpSpec, health_factor: f64) -> DayPlan {
    let limits = &ctx.config.limits;
    DayPlan {
        daily: daily_allowance(
            spec.daily_volumes.as_deref(),
            spec.warmup_day,
            limits.warm_daily_volume,
            spec.rate_factor * health_factor,
        ),
        active_start: spec.active_hours_start,
        active_end: spec.active_hours_end,
        hourly_cap: (limits.ip_hourly_cap > 0).then_some(limits.ip_hourly_cap),
    }
}

impl Allowance {
    /// The IP-local hour of `now`, asked of Postgres once per hour.
    pub async fn local_hour(
        &mut self,
        ports: &dyn IpPorts,
        spec: &IpSpec,
        now: OffsetDateTime,
    ) -> Result<LocalHour, AllowanceError> {
        match self.local {
            Some(local) if local.contains(now) => Ok(local),
            _ => {
                let local = ports.local_hour(&spec.timezone, now).await?;
                self.local = Some(local);
                self.given_back = 0; // earlier hours' give-backs stay counted
                Ok(local)
            }
        }
    }

    /// Reserves up to `wanted` sends now.
    pub async fn reserve(
        &mut self,
        ctx: &Ctx,
        ports: &dyn IpPorts,
        spec: &IpSpec,
        health_factor: f64,
        wanted: u32,
    ) -> Result<Grant, AllowanceError> {
        let now = ctx.clock.now();
        let local = self.local_hour(ports, spec, now).await?;
        let plan = plan(ctx, spec, health_factor);
        let hour_limit = plan.hour_quota(local.hour);
        let mut mark = UsageMark {
            ip: spec.id,
            hour_start: local.hour_start,
            day: local.day,
            given_back: 0,
        };
        let slot = slot(spec, &local);
        let reserve = || ports.reserve(&slot, wanted, plan.daily, hour_limit);
        let mut reserved = reserve().await?;
        if self.should_check(&reserved, wanted, now) {
            let used = ports
                .usage(spec.tenant_id, spec.id, local.day, local.hour_start)
                .await?;
            // Only a comparison that happened settles the doubt (Postgres may
            // be down: then the next reservation asks again).
            self.checked_at = Some(now);
            self.in_doubt = 0;
            // Postgres still counts this hour's sends released before SMTP.
            let given_back = i64::from(self.given_back);
            let day_total = (used.day_total - given_back).max(0);
            let hour_total = (used.hour_total - given_back).max(0);
            let rebuild = match reserved {
                Reserved::Missing => {
                    tracing::info!(ip = %spec.address, day = %local.day, sent_today = day_total, "rebuilding ip counters from postgres");
                    Some("missing")
                }
                Reserved::Granted {
                    granted, day, hour, ..
                } => {
                    // What the counters held before this grant (ours, not claimed).
                    let before = (day - i64::from(granted), hour - i64::from(granted));
                    (before != (day_total, hour_total)).then(|| {
                        tracing::warn!(ip = %spec.address, day = %local.day, redis_day = before.0, redis_hour = before.1, postgres_day = day_total, postgres_hour = hour_total, "ip counters disagreed with postgres; reset to postgres");
                        "disagreed"
                    })
                }
            };
            // Missing or wrong, the counters are written the same way: the
            // totals Postgres knows, under a new epoch.
            if let Some(reason) = rebuild {
                ctx.metrics.counters_rebuilt(reason);
                ports.reset(&slot, day_total, hour_total).await?;
                reserved = reserve().await?;
            }
        }
        // Missing after a rebuild is not an empty hour: refusing would hold the
        // jobs until the next window although the hour may have room.
        let (n, day_total, epoch) = match reserved {
            Reserved::Granted {
                granted,
                day,
                epoch,
                ..
            } => (granted, day, epoch),
            Reserved::Missing => return Err(AllowanceError::CountersLost),
        };
        mark.given_back = std::mem::take(&mut self.given_back);
        let next_window = (n < wanted).then(|| next_window(&plan, &local, day_total));
        if let Some(until) = next_window {
            tracing::debug!(ip = %spec.address, granted = n, wanted, day_total, %until, "allowance short");
        }
        Ok(Grant {
            n,
            epoch,
            mark,
            next_window,
        })
    }

    /// Whether to compare the counters with Postgres before using `reserved`:
    /// they are missing, this actor never compared them, or the grant came up
    /// short while reservations are in doubt or the last comparison is
    /// [`RECHECK`] old.
    fn should_check(&self, reserved: &Reserved, wanted: u32, now: OffsetDateTime) -> bool {
        match (reserved, self.checked_at) {
            (Reserved::Missing, _) | (_, None) => true,
            (Reserved::Granted { granted, .. }, Some(at)) => {
                *granted < wanted && (self.in_doubt > 0 || now - at >= RECHECK)
            }
        }
    }

    /// `n` reserved sends whose claim may or may not have committed: kept
    /// (never give back a send that may happen) until a comparison settles them.
    pub fn in_doubt(&mut self, n: u32) {
        self.in_doubt = self.in_doubt.saturating_add(n);
    }

    /// Returns reservations the claim did not use (Redis only: Postgres counted
    /// only what was claimed), unless the counters were reset since.
    pub async fn unused(
        &mut self,
        ports: &dyn IpPorts,
        spec: &IpSpec,
        grant: &Grant,
        claimed: u32,
    ) {
        let Some(local) = self.local else { return };
        let n = grant.n.saturating_sub(claimed);
        let slot = slot(spec, &local);
        if let Err(err) = ports.give_back(&slot, n, Some(grant.epoch)).await {
            self.in_doubt(n);
            tracing::warn!(ip = %spec.address, error = %err, "returning unused reservations failed");
        }
    }

    /// A claimed job of `hour_start` was released before SMTP: its send returns to
    /// the allowance if that hour is still the current one.
    pub async fn released(
        &mut self,
        ports: &dyn IpPorts,
        spec: &IpSpec,
        hour_start: OffsetDateTime,
        n: u32,
    ) {
        let Some(local) = self.local.filter(|l| l.hour_start == hour_start) else {
            return;
        };
        match ports.give_back(&slot(spec, &local), n, None).await {
            Ok(()) => self.given_back += n,
            Err(err) => {
                self.in_doubt(n);
                tracing::warn!(ip = %spec.address, error = %err, "returning a released send failed")
            }
        }
    }
}

fn slot(spec: &IpSpec, local: &LocalHour) -> Slot {
    Slot {
        tenant: spec.tenant_id,
        ip: spec.id,
        day: local.day,
        hour: local.hour,
    }
}

/// When an IP that could not take more may send again: the next hour with a
/// quota, or the first active hour of the next day when the day is used up.
fn next_window(plan: &DayPlan, local: &LocalHour, day_total: i64) -> OffsetDateTime {
    let day_used_up = plan.daily.is_some_and(|d| day_total >= i64::from(d));
    let later_today = (!day_used_up && local.hour < 23)
        .then(|| plan.next_open_hour(local.hour + 1))
        .flatten();
    match later_today {
        Some(hour) => local.start_of_hour(hour),
        None => local.day_end + time::Duration::hours(i64::from(plan.active_start)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn local() -> LocalHour {
        LocalHour {
            day: time::macros::date!(2026 - 12 - 01),
            hour: 10,
            hour_start: datetime!(2026-12-01 10:00 UTC),
            hour_end: datetime!(2026-12-01 11:00 UTC),
            day_start: datetime!(2026-12-01 00:00 UTC),
            day_end: datetime!(2026-12-02 00:00 UTC),
        }
    }

    fn plan(daily: Option<u32>) -> DayPlan {
        DayPlan {
            daily,
            active_start: 8,
            active_end: 18,
            hourly_cap: None,
        }
    }

    #[test]
    fn an_hour_used_up_opens_at_the_next_hour() {
        assert_eq!(
            next_window(&plan(Some(100)), &local(), 30),
            datetime!(2026-12-01 11:00 UTC)
        );
    }

    #[test]
    fn a_day_used_up_opens_at_the_next_days_first_active_hour() {
        assert_eq!(
            next_window(&plan(Some(100)), &local(), 100),
            datetime!(2026-12-02 08:00 UTC)
        );
        let mut late = local();
        late.hour = 17;
        assert_eq!(
            next_window(&plan(Some(100)), &late, 90),
            datetime!(2026-12-02 08:00 UTC),
            "no active hour left today"
        );
    }
}
