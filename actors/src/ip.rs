//! Ip(a): one per SMTP IP of an owned tenant. Receives batches of popped jobs from
//! its Tenant, claims them `queued → sending` in one Postgres statement (only jobs
//! of running campaigns), acknowledges them in Redis, and hands the claimed ones to
//! its delivery workers (`delivery.connections_per_ip` of them, each with one SMTP
//! connection bound to the IP's address).
//!
//! Before claiming, a batch is reserved against the IP's allowance ([`Allowance`]:
//! daily volume spread over the active hours, hourly cap, Redis counters rebuilt
//! from Postgres); what the allowance refuses goes back to the tenant with the time
//! the next window opens. Workers pace messages per second ([`Pacer`]) and feed
//! the reputation breakers ([`Breakers`]); a trip pauses the IP in Postgres (and
//! at once here) or suspends/slows one provider pair.
//!
//! Deliveries are claimed in groups: a `Deliver` only adds its jobs to the
//! actor's inbox, and one claim round (a `Claim` the actor sends itself, queued
//! behind the deliveries already in its mailbox) reserves and claims everything
//! the inbox holds in one statement. However the tenant pops (one job per
//! returned credit while urgent mail waits, or a coalesced batch), a job waits
//! for at most the claim under way and its own, never for one claim per message
//! ahead of it in the mailbox, and a busy IP claims in bigger batches.
//!
//! The urgent lane: a batch is reserved and claimed most urgent first (what the
//! allowance refuses is its least urgent tail), and the work queue hands the
//! workers urgent jobs (priority ≤ 50) ahead of bulk ([`crate::priority_queue`]).
//! The order changes nothing else: every job still passes the allowance, the
//! warm-up day, the breakers and the one fenced claim.
//!
//! On (re)start it first flushes StatusWriter and returns any job still `sending`
//! on this IP to `pending`: those belonged to a previous incarnation whose workers
//! are gone. It then takes over the shaping actions (suspensions, slow-downs)
//! still in force in Postgres, and records every new one ([`crate::shaping_log`]). Workers die with the actor (their handles abort on drop). A changed
//! row (pause, warm-up day, limits) arrives as [`IpMsg::Update`], never a restart.
//!
//! Postgres and Redis are reached through [`IpPorts`] (the real adapter, or the
//! fakes of the actor tests in `ip_tests.rs`); delivery workers use the context.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use penguin_engine::control::{self, ControlEvent};
use penguin_engine::queue::Popped;
use penguin_engine::store;
use penguin_engine::store::ledger;
use penguin_engine::store::routing::IpSpec;
use penguin_engine::store::shaping_actions::ShapingAction;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;

use crate::allowance::{Allowance, AllowanceError, Grant};
use crate::breaker::{Breakers, Observed, Trip};
use crate::context::Ctx;
use crate::delivery::{ReadyQueues, WorkQueue, Worker};
use crate::greylist::GreylistCounter;
use crate::ip_ports::IpPorts;
use crate::pacer::Pacer;
use crate::shaping::Shaping;
use crate::status_writer;
use crate::tenant::TenantMsg;

pub struct IpActor;

pub struct IpArgs {
    pub ctx: Ctx,
    /// Allowance counters, calendar, claims.
    pub ports: Arc<dyn IpPorts>,
    pub spec: IpSpec,
}

pub enum IpMsg {
    /// Jobs popped for this IP by its tenant (each holds one credit): into the
    /// inbox, claimed by the next claim round.
    Deliver(Vec<Popped>),
    /// The actor's own: claim what the inbox holds (one round at a time).
    Claim,
    /// Stop taking work, release what has not started, wait for SMTP under way.
    Drain(RpcReplyPort<()>),
    /// The IP's row changed (status, warm-up day, limits); same address.
    Update(IpSpec),
    /// A complaint, or a bounce reported after delivery, about a message this
    /// IP sent (to `provider`, when known): counted in the rolling health.
    Reported {
        provider: Option<String>,
        observed: Observed,
    },
    /// Health breakers fired on an outcome (sent by a worker).
    Tripped(Vec<Trip>),
    /// A reply rule acted on a shaping unit (sent by a worker): record it.
    Shaped(ShapingAction),
    /// A worker released `n` claimed jobs of the hour starting at `hour_start`
    /// before SMTP: their sends return to the allowance.
    Released {
        hour_start: time::OffsetDateTime,
        n: u32,
    },
}

/// Aborts a task when dropped, so workers never outlive their actor.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct IpState {
    pub(crate) ctx: Ctx,
    pub(crate) ports: Arc<dyn IpPorts>,
    pub(crate) spec: Arc<IpSpec>,
    /// Claimed jobs for the workers, urgent first; `None` once draining.
    pub(crate) work: Option<WorkQueue>,
    /// Delivered jobs the next claim round takes, all at once.
    inbox: Vec<Popped>,
    /// A `Claim` is in the mailbox: later deliveries join its round.
    claim_planned: bool,
    workers: Vec<AbortOnDrop>,
    pub(crate) draining: Arc<AtomicBool>,
    /// The IP is paused (operator or breaker): workers release what they hold.
    pub(crate) paused: Arc<AtomicBool>,
    pub(crate) allowance: Allowance,
    /// The IP-local day whose warm-up verdicts (for the days before it) are in.
    pub(crate) judged_day: Option<time::Date>,
    pub(crate) breakers: Arc<std::sync::Mutex<Breakers>>,
    pub(crate) shaping: Arc<Shaping>,
    pub(crate) pacer: Arc<Pacer>,
}

impl IpActor {
    /// Jobs an IP may hold at once (in its queue and in SMTP): its tenant's credit.
    pub fn capacity(ctx: &Ctx) -> usize {
        ctx.config.delivery.connections_per_ip + ctx.config.delivery.ip_backlog
    }
}

/// Tells the IP's tenant that its (new) Ip actor takes work: the whole credit
/// is back. Called once the directory points to the actor — told earlier, the
/// tenant could route a batch to an IP the directory does not know yet, and
/// that batch's credit would never come back (the IP starved for good).
pub fn announce_ready(ctx: &Ctx, tenant: uuid::Uuid, ip: uuid::Uuid) {
    if let Some(actor) = ctx.directory.tenant(tenant) {
        let _ = actor.cast(TenantMsg::IpReady {
            ip,
            capacity: IpActor::capacity(ctx),
        });
    }
}

impl Actor for IpActor {
    type Msg = IpMsg;
    type State = IpState;
    type Arguments = IpArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        IpArgs { ctx, ports, spec }: IpArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        status_writer::flush(&ctx).await;
        let released = match ctx.fence(spec.tenant_id) {
            Some(epoch) => ports
                .release_sending_on_ip(spec.tenant_id, epoch, spec.id, ctx.clock.now())
                .await?
                .unwrap_or(0),
            None => 0,
        };
        if released > 0 {
            tracing::warn!(ip = %spec.address, released, "returned jobs left `sending` by a previous incarnation");
            ctx.metrics.jobs_recovered("ip_restart", released);
            crate::feeder::activate(&ctx, spec.tenant_id);
        }
        let spec = Arc::new(spec);
        let queue = WorkQueue::default();
        let draining = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(!spec.active));
        let shaping = Arc::new(Shaping::new(ctx.config.delivery.sites));
        crate::shaping_log::restore(ports.as_ref(), &spec, &shaping, ctx.clock.now()).await?;
        let ready = Arc::new(ReadyQueues::default());
        let breakers = Arc::new(std::sync::Mutex::new(
            Breakers::new(ctx.config.health.clone())
                .with_max_pairs(ctx.config.delivery.sites.max_per_ip),
        ));
        let greylist = Arc::new(std::sync::Mutex::new(GreylistCounter::new(
            &ctx.config.delivery.greylist,
            &ctx.config.delivery.sites,
        )));
        let pacer = Arc::new(Pacer::default());
        let workers = (0..ctx.config.delivery.connections_per_ip)
            .map(|_| {
                let worker = Worker {
                    ctx: ctx.clone(),
                    ip: spec.clone(),
                    queue: queue.clone(),
                    draining: draining.clone(),
                    paused: paused.clone(),
                    shaping: shaping.clone(),
                    ready: ready.clone(),
                    breakers: breakers.clone(),
                    pacer: pacer.clone(),
                    greylist: greylist.clone(),
                };
                AbortOnDrop(tokio::spawn(worker.run()))
            })
            .collect();
        // The tenant learns this actor is ready from IpSupervisor, once the
        // directory points to it ([`announce_ready`]).
        let state = IpState {
            allowance: Allowance::default(),
            judged_day: None,
            ctx,
            ports,
            spec,
            work: Some(queue),
            inbox: Vec::new(),
            claim_planned: false,
            workers,
            draining,
            paused,
            breakers,
            shaping,
            pacer,
        };
        state.set_pace();
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IpMsg::Deliver(batch) => {
                state.inbox.extend(batch);
                if !state.claim_planned && myself.cast(IpMsg::Claim).is_ok() {
                    state.claim_planned = true;
                }
            }
            IpMsg::Claim => {
                state.claim_planned = false;
                let batch = std::mem::take(&mut state.inbox);
                if !batch.is_empty() {
                    state.deliver(batch).await;
                }
            }
            IpMsg::Drain(reply) => {
                state.drain().await;
                let _ = reply.send(());
            }
            IpMsg::Update(spec) => state.update(spec),
            IpMsg::Reported { provider, observed } => {
                let now = state.ctx.clock.now();
                let trips = state.breakers.lock().expect("breakers lock").observe(
                    now,
                    provider.as_deref(),
                    observed,
                );
                tracing::info!(ip = %state.spec.address, ?provider, ?observed, "report counted");
                state.trip(trips).await;
            }
            IpMsg::Tripped(trips) => state.trip(trips).await,
            IpMsg::Shaped(action) => crate::shaping_log::record(state, &action).await,
            IpMsg::Released { hour_start, n } => {
                let ports = state.ports.as_ref();
                state
                    .allowance
                    .released(ports, &state.spec, hour_start, n)
                    .await;
            }
        }
        Ok(())
    }
}

impl IpState {
    async fn deliver(&mut self, batch: Vec<Popped>) {
        // Draining, or the lease may be another node's by now: claim nothing
        // (the jobs stay in Redis' in-flight set for the tenant's owner).
        if self.work.is_none() || !self.ctx.lease_valid() {
            self.return_credit(batch.len());
            return;
        }
        // The urgent lane first: what the allowance refuses is the tail, bulk.
        let mut offered = batch;
        offered.sort_by_key(|p| p.payload.job().priority);
        loop {
            let grant = match self.reserve(offered.len()).await {
                Ok(grant) => grant,
                Err(err) => {
                    // Nothing was claimed; the jobs stay in Redis' in-flight set and
                    // the reaper re-queues them after their deadline.
                    tracing::warn!(ip = %self.spec.address, error = %err, "reserving allowance failed");
                    self.return_credit(offered.len());
                    return;
                }
            };
            let refused = offered.split_off(grant.n as usize);
            let claimed = self.claim(offered, &grant).await;
            // A granted job that was no longer `queued` (a stale copy, a paused
            // campaign, a suppressed address) left its send unused: offer that
            // send to the jobs the allowance refused, so the hour is used in full.
            match claimed {
                Some(claimed) if claimed < grant.n && !refused.is_empty() => offered = refused,
                _ => {
                    if !refused.is_empty() {
                        self.refuse(refused, grant.next_window);
                    }
                    return;
                }
            }
        }
    }

    /// Reserves up to `wanted` sends; a paused IP grants none until it resumes.
    async fn reserve(&mut self, wanted: usize) -> Result<Grant, AllowanceError> {
        if self.paused.load(Ordering::Acquire) {
            let now = self.ctx.clock.now();
            let until = self
                .spec
                .paused_until
                .filter(|until| *until > now)
                .unwrap_or(now + time::Duration::hours(1));
            return Ok(Grant {
                n: 0,
                epoch: 0,
                mark: ledger::UsageMark {
                    ip: self.spec.id,
                    hour_start: now,
                    day: now.date(),
                    given_back: 0,
                },
                next_window: Some(until),
            });
        }
        self.ensure_judged().await?;
        let factor = self.breakers.lock().expect("breakers lock").factor();
        self.allowance
            .reserve(
                &self.ctx,
                self.ports.as_ref(),
                &self.spec,
                factor,
                wanted as u32,
            )
            .await
    }

    /// Before the first reservation of a new IP-local day, the finished days get
    /// their warm-up verdict (the Warmup actor may be a moment late at midnight), so
    /// the new day's allowance is exact from its first send.
    async fn ensure_judged(&mut self) -> Result<(), AllowanceError> {
        let now = self.ctx.clock.now();
        let today = self
            .allowance
            .local_hour(self.ports.as_ref(), &self.spec, now)
            .await?
            .day;
        if self.judged_day == Some(today) {
            return Ok(());
        }
        self.ports
            .catch_up(&self.spec, now)
            .await
            .map_err(AllowanceError::Warmup)?;
        // Whoever judged (this actor or the Warmup actor a moment ago, whose
        // notification may still be on its way), the row now holds the new day.
        let tenant = self.spec.tenant_id;
        let fresh = self.ports.ips_of(tenant).await?;
        if let Some(spec) = fresh.into_iter().find(|ip| ip.id == self.spec.id) {
            self.update(spec);
        }
        self.judged_day = Some(today);
        Ok(())
    }

    /// Jobs the allowance refused: back to the tenant, which routes them to another
    /// IP of their pool or leaves them in Postgres until `next_window`.
    fn refuse(&self, jobs: Vec<Popped>, next_window: Option<time::OffsetDateTime>) {
        let until = next_window.unwrap_or_else(|| self.ctx.clock.now());
        tracing::debug!(ip = %self.spec.address, jobs = jobs.len(), %until, "allowance refused jobs; back to the tenant");
        // Without a tenant actor (restarting), the jobs stay in Redis' in-flight
        // set until the reaper re-queues them.
        if let Some(tenant) = self.ctx.directory.tenant(self.spec.tenant_id) {
            let _ = tenant.cast(TenantMsg::Refused {
                ip: self.spec.id,
                jobs,
                until,
            });
        }
    }

    /// The row changed: new limits apply to the next reservation; a pause stops
    /// the workers' queued work, a resume starts with clean health.
    fn update(&mut self, spec: IpSpec) {
        let was_active = self.spec.active;
        if spec.active && !was_active {
            self.breakers.lock().expect("breakers lock").reset();
            tracing::info!(ip = %spec.address, "ip resumed");
        }
        self.paused.store(!spec.active, Ordering::Release);
        self.spec = Arc::new(spec);
        self.set_pace();
    }

    /// The per-second pace: `[limits] ip_messages_per_second` × the warm-up
    /// `rate_factor` × the health factor (the workers keep the last one current
    /// after every outcome they count).
    fn set_pace(&self) {
        let mps = f64::from(self.ctx.config.limits.ip_messages_per_second);
        self.pacer.set_rate(mps * self.spec.rate_factor);
        let breakers = self.breakers.lock().expect("breakers lock");
        self.pacer.set_health_factor(breakers.factor());
        self.shaping
            .set_pace_factors(|provider| breakers.pair_factor(provider));
    }

    /// Carries out what the breakers decided.
    async fn trip(&mut self, trips: Vec<Trip>) {
        let health = self.ctx.config.health.clone();
        let now = self.ctx.clock.now();
        let pause_for = Duration::from_secs(health.pause_secs);
        for trip in trips {
            match trip {
                Trip::PauseIp(why) => {
                    self.ctx.metrics.health_trip("pause_ip");
                    self.paused.store(true, Ordering::Release);
                    let until = now + pause_for;
                    tracing::warn!(ip = %self.spec.address, %why, %until, "health breaker paused the ip");
                    let spec = &self.spec;
                    match store::ip_state::pause_for_health(
                        &self.ctx.pg,
                        spec.tenant_id,
                        spec.id,
                        &why,
                        until,
                        health.resume_factor,
                    )
                    .await
                    {
                        Ok(_) => {
                            let event = ControlEvent::TenantChanged {
                                tenant_id: spec.tenant_id,
                            };
                            if let Err(err) = control::publish(self.ctx.queue.pool(), &event).await
                            {
                                tracing::warn!(error = %err, "publishing the ip pause failed");
                            }
                        }
                        Err(err) => {
                            tracing::error!(ip = %spec.address, error = %err, "recording the health pause failed")
                        }
                    }
                }
                Trip::SuspendPair { provider, why } => {
                    self.ctx.metrics.health_trip("suspend_pair");
                    tracing::warn!(ip = %self.spec.address, %provider, %why, "health breaker suspended the pair");
                    let applied =
                        self.shaping
                            .suspend_pair(&provider, pause_for, health.resume_factor, now);
                    for applied in applied {
                        let row = applied.row(&self.spec, "health:suspend_pair", &why);
                        crate::shaping_log::record(self, &row).await;
                    }
                }
                Trip::SlowPair { provider, why } => {
                    self.ctx.metrics.health_trip("slow_pair");
                    tracing::warn!(ip = %self.spec.address, %provider, %why, "health breaker slowed the pair");
                    if let Some(applied) = self.shaping.slow_pair(&provider, 0.5, pause_for, now) {
                        let row = applied.row(&self.spec, "health:slow_pair", &why);
                        crate::shaping_log::record(self, &row).await;
                    }
                }
            }
        }
        self.set_pace();
    }

    pub(crate) fn return_credit(&self, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(tenant) = self.ctx.directory.tenant(self.spec.tenant_id) {
            let _ = tenant.cast(TenantMsg::Credit {
                ip: self.spec.id,
                n,
            });
        }
    }

    /// Graceful stop: queued work is released to `pending` by the workers (they see
    /// `draining`), SMTP transactions under way finish, then the workers exit.
    async fn drain(&mut self) {
        self.draining.store(true, Ordering::Release);
        // Not claimed: the jobs stay in Redis' in-flight set for the tenant's owner.
        let unclaimed = std::mem::take(&mut self.inbox);
        self.return_credit(unclaimed.len());
        // Closing the queue ends each worker after the queue drains.
        if let Some(queue) = self.work.take() {
            queue.close();
        }
        for worker in &mut self.workers {
            let finished = tokio::time::timeout(Duration::from_secs(60), &mut worker.0).await;
            if finished.is_err() {
                tracing::warn!(ip = %self.spec.address, "delivery worker did not finish in time");
            }
        }
        self.workers.clear(); // aborts any worker that overran
    }
}

#[cfg(test)]
#[path = "ip_tests.rs"]
mod tests;
