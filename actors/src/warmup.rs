//! Warmup(s): one per warm-up schedule in use among the IPs this node owns (and
//! one for the warm IPs, which have none), started by
//! [`crate::warmup_supervisor::WarmupSupervisor`]. At each IP's local midnight it
//! judges the day that just ended ([`penguin_engine::warmup::decide`]: advance,
//! hold, step back or re-warm, plus the rate-factor recovery) and records it with
//! [`penguin_engine::store::warmup::apply`], which judges a day at most once
//! whatever the restarts and nodes. It also ends automatic (health) pauses when
//! their `paused_until` passes.
//!
//! Each pass (at start and on its timer over every IP; over the new or changed
//! ones when the set changes, so IPs added one by one cost one pass each) judges, per IP and
//! in order, every finished local day not judged yet — so days missed while the
//! engine was down are caught up, at most [`MAX_CATCH_UP_DAYS`] back — then sleeps
//! on the engine clock until the earliest next local midnight or pause end, in a
//! spawned task that casts `Tick` (no polling). Whenever an IP's warm-up day, rate
//! factor or status changed, it publishes `TenantChanged` so every node reloads the
//! tenant's IPs (the Ip actors get the new allowance in place).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use penguin_engine::control::{self, ControlEvent};
use penguin_engine::store::routing::IpSpec;
use penguin_engine::store::usage::local_hour;
use penguin_engine::store::warmup::{self as store, Applied};
use penguin_engine::warmup::{self, Policy};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use time::{Date, OffsetDateTime};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::context::Ctx;

/// How far back a catch-up reaches: older unjudged days are skipped (their idle
/// time still counts, as re-warming reads the last send from the data).
pub const MAX_CATCH_UP_DAYS: i64 = 400;

/// How often a verdict is recomputed when the IP keeps changing under it.
const STALE_RETRIES: usize = 3;

/// After a failed pass (database or Redis unavailable), try again this much later.
const RETRY_AFTER: Duration = Duration::from_secs(30);

pub struct Warmup;

pub struct WarmupArgs {
    pub ctx: Ctx,
    /// The schedule this actor serves; `None` = the warm IPs.
    pub schedule: Option<String>,
    pub ips: Vec<IpSpec>,
}

pub enum WarmupMsg {
    /// The IPs of this schedule on this node, as they stand now.
    SetIps(Vec<IpSpec>),
    /// A local midnight or a pause end came (or a retry is due): run a pass.
    Tick,
    /// A pass over the IPs that are new or changed since the last one (the
    /// `SetIps` that arrived meanwhile share it).
    PassChanged,
}

pub struct WarmupState {
    ctx: Ctx,
    schedule: Option<String>,
    ips: Vec<IpSpec>,
    /// The sleeping task that casts the next `Tick`, and when it wakes.
    timer: Option<(OffsetDateTime, JoinHandle<()>)>,
    /// IPs new or changed since the last pass; a `PassChanged` is on its way.
    changed: Vec<IpSpec>,
}

/// What one pass did.
#[derive(Default)]
struct Pass {
    /// Tenants whose IPs changed.
    changed: BTreeSet<Uuid>,
    /// The earliest instant the next pass is due.
    wake: Option<OffsetDateTime>,
    failed: bool,
}

impl Pass {
    fn wake_at(&mut self, at: OffsetDateTime) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }
}

impl Actor for Warmup {
    type Msg = WarmupMsg;
    type State = WarmupState;
    type Arguments = WarmupArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: WarmupArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(WarmupMsg::Tick)?;
        Ok(WarmupState {
            ctx: args.ctx,
            schedule: args.schedule,
            ips: args.ips,
            timer: None,
            changed: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WarmupMsg::SetIps(ips) if ips == state.ips => {}
            WarmupMsg::SetIps(ips) => {
                // Only what is new or changed needs a pass now: the others were
                // judged and their timer is armed. IPs added one by one thus cost
                // one pass each, not a pass over every IP each time.
                let fresh: Vec<IpSpec> = ips
                    .iter()
                    .filter(|ip| !state.ips.contains(ip))
                    .cloned()
                    .collect();
                state.ips = ips;
                if state.changed.is_empty() && !fresh.is_empty() {
                    myself.cast(WarmupMsg::PassChanged)?;
                }
                for ip in fresh {
                    state.changed.retain(|c| c.id != ip.id);
                    state.changed.push(ip);
                }
            }
            WarmupMsg::PassChanged => {
                let changed = std::mem::take(&mut state.changed);
                let current: Vec<IpSpec> = changed
                    .into_iter()
                    .filter(|ip| state.ips.contains(ip))
                    .collect();
                state.pass(&myself, current, false).await;
            }
            WarmupMsg::Tick => {
                let all = state.ips.clone();
                state.pass(&myself, all, true).await;
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, timer)) = state.timer.take() {
            timer.abort();
        }
        Ok(())
    }
}

impl WarmupState {
    fn name(&self) -> &str {
        self.schedule.as_deref().unwrap_or("warm")
    }

    /// Judges what is due among `ips`, resumes what is due, tells the nodes,
    /// re-arms the timer: for the earliest wake-up of these IPs when `all` of
    /// them were passed, else no later than it was.
    async fn pass(&mut self, myself: &ActorRef<WarmupMsg>, ips: Vec<IpSpec>, all: bool) {
        let now = self.ctx.clock.now();
        let mut pass = Pass::default();
        for ip in &ips {
            match catch_up(&self.ctx, ip, now).await {
                Ok((changed, next_midnight)) => {
                    if changed {
                        pass.changed.insert(ip.tenant_id);
                    }
                    pass.wake_at(next_midnight);
                }
                Err(err) => {
                    tracing::warn!(ip = %ip.id, schedule = self.name(), error = %err, "warm-up catch-up failed");
                    pass.failed = true;
                }
            }
            self.auto_resume(ip, now, &mut pass).await;
        }
        for tenant in &pass.changed {
            let event = ControlEvent::TenantChanged { tenant_id: *tenant };
            if let Err(err) = control::publish(self.ctx.queue.pool(), &event).await {
                // The next heartbeat of every node reloads the IPs anyway.
                tracing::warn!(%tenant, error = %err, "publishing an IP change failed");
            }
        }
        if pass.failed {
            myself.send_after(RETRY_AFTER, || WarmupMsg::Tick);
        }
        let armed = self
            .timer
            .as_ref()
            .filter(|(_, timer)| !all && !timer.is_finished())
            .map(|(at, _)| *at);
        let wake = match (armed, pass.wake) {
            (Some(armed), Some(wake)) if armed <= wake => return,
            (Some(armed), None) => Some(armed),
            (_, wake) => wake,
        };
        if let Some((_, timer)) = self.timer.take() {
            timer.abort();
        }
        if let Some(at) = wake {
            let clock = self.ctx.clock.clone();
            let me = myself.clone();
            self.timer = Some((
                at,
                tokio::spawn(async move {
                    clock.sleep_until(at).await;
                    let _ = me.cast(WarmupMsg::Tick);
                }),
            ));
        }
    }

    /// Resumes `ip` if its automatic pause has ended; otherwise wakes up for it.
    async fn auto_resume(&self, ip: &IpSpec, now: OffsetDateTime, pass: &mut Pass) {
        let Some(until) = ip.paused_until.filter(|_| !ip.active) else {
            return;
        };
        if until > now {
            pass.wake_at(until);
            return;
        }
        match store::resume_if_due(&self.ctx.pg, ip.tenant_id, ip.id, until, now).await {
            Ok(true) => {
                tracing::info!(ip = %ip.id, tenant = %ip.tenant_id, paused_until = %until, reason = ?ip.status_reason, "ip resumed: its pause ended");
                self.ctx.metrics.ip_auto_resumed();
                pass.changed.insert(ip.tenant_id);
            }
            // Resumed or paused anew by someone else: the reload shows it.
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(ip = %ip.id, error = %err, "resuming a paused ip failed");
                pass.failed = true;
            }
        }
    }
}

/// Judges every finished, unjudged local day of `ip` in order (idempotent: a day
/// is recorded once, whoever judges it — this actor at midnight, or the IP's own
/// actor before its first reservation of a new day). Returns whether
/// the IP changed, and when its current local day ends.
pub async fn catch_up(
    ctx: &Ctx,
    ip: &IpSpec,
    now: OffsetDateTime,
) -> anyhow::Result<(bool, OffsetDateTime)> {
    let pool = &ctx.pg;
    let today = local_hour(pool, &ip.timezone, now)
        .await
        .with_context(|| format!("local day in {}", ip.timezone))?;
    let mut day = store::next_day(pool, ip.tenant_id, ip.id)
        .await
        .context("next day to judge")?;
    let oldest = today.day - time::Duration::days(MAX_CATCH_UP_DAYS);
    if day < oldest {
        tracing::warn!(ip = %ip.id, from = %day, to = %oldest, "skipping warm-up days older than the catch-up bound");
        day = oldest;
    }
    let mut changed = false;
    while day < today.day {
        changed |= judge(ctx, ip, day, now).await?;
        day = day.next_day().context("calendar overflow")?;
    }
    Ok((changed, today.day_end))
}

/// Judges one day of `ip` and records it; returns whether the IP moved.
async fn judge(ctx: &Ctx, ip: &IpSpec, day: Date, now: OffsetDateTime) -> anyhow::Result<bool> {
    let config = &ctx.config;
    let policy = Policy {
        warmup: &config.warmup,
        health: &config.health,
        warm_daily_volume: config.limits.warm_daily_volume,
    };
    for _ in 0..STALE_RETRIES {
        let inputs = store::day_inputs(&ctx.pg, ip.tenant_id, ip.id, day)
            .await
            .context("reading the day's inputs")?;
        let decision = warmup::decide(&inputs, policy);
        let applied = store::apply(&ctx.pg, ip.tenant_id, ip.id, day, &decision, now)
            .await
            .context("recording the verdict")?;
        match applied {
            Applied::Applied => {
                tracing::info!(
                    ip = %ip.id,
                    tenant = %ip.tenant_id,
                    day = %day,
                    decision = decision.verdict.as_str(),
                    from = decision.from_day,
                    to = decision.to_day,
                    rate_factor = decision.to_factor,
                    reason = %decision.reason,
                    "warm-up verdict"
                );
                ctx.metrics.warmup_decision(decision.verdict.as_str());
                return Ok(decision.changes_ip());
            }
            Applied::AlreadyJudged => {
                tracing::debug!(ip = %ip.id, day = %day, "day already judged elsewhere");
                return Ok(false);
            }
            Applied::Stale => continue,
        }
    }
    anyhow::bail!("the IP kept changing while {day} was judged")
}
