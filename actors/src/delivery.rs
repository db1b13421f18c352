//! Delivery workers of one Ip actor: each worker owns at most one SMTP connection
//! bound to the IP's source address and takes claimed jobs (already `sending` in
//! Postgres) from the IP's work queue, one at a time, most urgent first
//! ([`crate::priority_queue`]).
//!
//! For every job it renders the message (off the runtime, under the node's
//! template budget: [`crate::render`]), finds the destination (a configured
//! route, else the domain's best five MX hosts in order: [`site::resolve`]), asks the shaping of its
//! (IP, unit) pair for admission — the unit is the named provider, or for the
//! `default` provider the destination's MX site or route host
//! ([`penguin_engine::site::ShapingUnit`]) — reuses or opens a connection (within the provider's connection
//! and per-connection caps, falling back to the next MX on connection failure;
//! addresses resolved by the node's resolver and never one that is not globally
//! routable unless a route names its host — a job left with only such addresses
//! ends `failed` naming them, see [`penguin_engine::dns::addresses`]), runs
//! one SMTP transaction and reports the outcome straight to StatusWriter (job state)
//! and Analytics (event with bounce class and provider; hard bounces suppress the
//! address), applies matching reply rules to the pair, then returns one credit to
//! the tenant. A job of a campaign paused meanwhile, or met while draining, is
//! released to `pending` without any SMTP; a job the pair cannot take now is
//! postponed to Postgres with a later `run_at`. Workers are tasks owned by the Ip
//! actor and aborted with it.
//!
//! Everything from the claim to the end of DATA happens by the job's attempt
//! deadline (`[delivery] attempt_timeout_ms`, below `queue.sending_timeout_ms`):
//! a job whose deadline passed before SMTP is released unattempted, and no SMTP
//! stage waits past it. The outcome carries the job's claim id, and is handed to
//! StatusWriter however long that takes (an error logged on every failure past
//! the first few; one still unhanded when the worker is aborted is logged).
//!
//! Before each SMTP transaction a worker waits for the IP's per-second pace; each
//! server verdict feeds the IP's health breakers (a warning rate halves that
//! pace, or the pair's, until it clears), and a job released before SMTP returns its send to the
//! IP's allowance. A retry that comes due past the job's maximum age (`[delivery.retry]
//! max_age_secs` since its first attempt) fails without SMTP. The records an outcome leaves are built
//! in [`crate::outcome`].
//!
//! A greylisting deferral ([`penguin_engine::greylist`]) feeds neither the
//! reply rules nor the breakers: it only counts towards its unit's greylisting
//! ([`crate::greylist`]), and when that turns into throttling the reply rule it
//! matches applies to that unit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use penguin_engine::dns::{Refused, vetted_addresses};
use penguin_engine::domain::email_domain;
use penguin_engine::greylist::is_greylisting;
use penguin_engine::message::new_message_id;
use penguin_engine::payload::JobV1;
use penguin_engine::route::Destination;
use penguin_engine::site::{self, ShapingUnit};
use penguin_engine::smtp::transport::TlsMode;
use penguin_engine::smtp::{DeliveryOutcome, SmtpConnection, Stage, should_suppress};
use penguin_engine::store::fences::Epoch;
use penguin_engine::store::ledger::ClaimId;
use penguin_engine::store::routing::IpSpec;
use time::OffsetDateTime;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::breaker::{Breakers, Observed};
use crate::context::Ctx;
use crate::greylist::GreylistCounter;
use crate::ip::IpMsg;
use crate::metrics::Metrics;
use crate::outcome::{
    Finish, address_lookup_outcome, dns_outcome, outcome_records, past_max_age, refusal_reason,
};
use crate::pacer::Pacer;
use crate::priority_queue::PriorityQueue;
pub use crate::ready::ReadyQueues;
use crate::render::RenderJob;
use crate::shaping::{Admission, Shaping};
use crate::signers::SignerError;
use crate::tenant::TenantMsg;
use crate::{analytics, status_writer};

/// How long a job waits when its domain's DKIM key cannot be opened on this
/// node (an operator's configuration to fix; the job is never sent unsigned).
const DKIM_RETRY: time::Duration = time::Duration::minutes(5);

/// A claimed job waiting for a worker.
pub struct Work {
    pub job: JobV1,
    pub first_attempt: OffsetDateTime,
    /// Its step in the campaign's sequence (1: the first email).
    pub step: i32,
    /// The Message-IDs of the lead's earlier steps, oldest first.
    pub thread: Vec<String>,
    /// The IP-local hour whose allowance this job's send was reserved in.
    pub hour_start: OffsetDateTime,
    /// The tenant's epoch the job was claimed `sending` under: its outcome is
    /// written only while that claim stands.
    pub fence: Epoch,
    /// The id of that claim: a later claim of the job makes this one's outcome
    /// change nothing.
    pub claim: ClaimId,
    /// The attempt ends by then, SMTP included (see the module doc).
    pub deadline: Instant,
}

/// The IP's claimed jobs waiting for a worker, urgent first
/// ([`crate::priority_queue`]).
pub type WorkQueue = Arc<PriorityQueue<Work>>;

enum Next {
    Work(Box<Work>),
    Again,
    Closed,
}

pub struct Worker {
    pub ctx: Ctx,
    pub ip: Arc<IpSpec>,
    pub queue: WorkQueue,
    pub draining: Arc<AtomicBool>,
    /// The IP is paused: release instead of sending.
    pub paused: Arc<AtomicBool>,
    pub shaping: Arc<Shaping>,
    pub ready: Arc<ReadyQueues>,
    pub breakers: Arc<std::sync::Mutex<Breakers>>,
    pub pacer: Arc<Pacer>,
    /// The IP's greylisting count per unit.
    pub greylist: Arc<std::sync::Mutex<GreylistCounter>>,
}

struct Open {
    conn: SmtpConnection,
    dest: Destination,
    unit: ShapingUnit,
    /// Most messages this connection may carry (config and provider caps).
    cap: usize,
    /// This connection's slot among the provider's connections from this IP.
    _slot: OwnedSemaphorePermit,
}

impl Worker {
    pub async fn run(self) {
        let idle = Duration::from_millis(self.ctx.config.delivery.idle_timeout_ms);
        let mut open: Option<Open> = None;
        loop {
            let work = match self.next_work(&mut open, idle).await {
                Next::Work(work) => *work,
                Next::Again => continue,
                Next::Closed => {
                    // Draining: what still waits for a slot goes back to `pending`.
                    while let Some(work) = self.ready.pop_any(|_| true) {
                        self.report(work, Finish::Released).await;
                    }
                    break;
                }
            };
            match self.attempt(&work, &mut open).await {
                Finish::HandOff(provider) => self.ready.push(provider, work),
                finish => self.report(work, finish).await,
            }
        }
        self.close(&mut open).await;
    }

    /// The next job: first one waiting for this worker's open connection, else the
    /// IP's queue, else (without a connection) one waiting for a free slot. While
    /// waiting, a hand-off wakes the worker; an idle connection is closed. A
    /// worker with no connection and nothing handed off waits without a timer:
    /// an idle IP costs no wake-up.
    async fn next_work(&self, open: &mut Option<Open>, idle: Duration) -> Next {
        // Registered before the ready queues are looked at, so a hand-off racing
        // with this look still wakes the worker.
        let handed_off = self.ready.wake.notified();
        tokio::pin!(handed_off);
        handed_off.as_mut().enable();
        if let Some(provider) = open.as_ref().map(|o| o.unit.key.clone()) {
            if let Some(work) = self.ready.pop(&provider) {
                return Next::Work(Box::new(work));
            }
        } else if let Some(work) = self.ready.pop_any(|p| self.shaping.has_free_slot(p)) {
            return Next::Work(Box::new(work));
        }
        // Work waiting for a free slot is looked at again shortly; an open
        // connection is closed once idle; otherwise no timer at all.
        let recheck = if !self.ready.is_empty() {
            Some(Duration::from_millis(50))
        } else if open.is_some() {
            Some(idle)
        } else {
            None
        };
        let timer = async {
            match recheck {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = self.queue.recv() => match next {
                Some(work) => Next::Work(Box::new(work)),
                None => Next::Closed,
            },
            _ = handed_off => Next::Again,
            _ = timer => {
                if recheck == Some(idle) {
                    self.close(open).await;
                }
                Next::Again
            }
        }
    }

    /// Closes the connection; if jobs wait for its pair, wakes a worker to take the
    /// freed slot.
    async fn close(&self, open: &mut Option<Open>) {
        if let Some(old) = open.take() {
            let provider = old.unit.key.clone();
            old.conn.quit().await;
            drop(old._slot);
            if self.ready.has_work(&provider) {
                self.ready.wake.notify_waiters();
            }
        }
    }

    async fn attempt(&self, work: &Work, open: &mut Option<Open>) -> Finish {
        let (job, deadline) = (&work.job, work.deadline);
        if !self.ctx.lease_valid() {
            return Finish::Abandoned;
        }
        if self.draining.load(Ordering::Acquire)
            || self.paused.load(Ordering::Acquire)
            || self.ctx.is_stopped(job.campaign_id)
        {
            return Finish::Released;
        }
        if let Some(expired) = past_max_age(&self.ctx, work, self.ctx.clock.now()) {
            return expired;
        }
        let campaign = match self
            .ctx
            .campaigns
            .get(&self.ctx.pg, job.tenant_id, job.campaign_id)
            .await
        {
            Ok(campaign) => campaign,
            Err(err) => {
                tracing::warn!(error = %err, "campaign unavailable; job released");
                return Finish::Released;
            }
        };
        let signers = match self
            .ctx
            .signers
            .get(&self.ctx.pg, job.tenant_id, &campaign.domain)
            .await
        {
            Ok(signers) => signers,
            // Postgres could not be read: released like an unavailable
            // campaign, tried again as soon as the store answers.
            Err(err @ SignerError::Store(_)) => {
                tracing::warn!(error = %err, "DKIM keys unreadable; job released");
                return Finish::Released;
            }
            Err(err @ SignerError::Key(_)) => {
                tracing::error!(error = %err, tenant = %job.tenant_id, "DKIM key unavailable; job postponed");
                let until = self.ctx.clock.now() + DKIM_RETRY;
                return Finish::Postponed {
                    until,
                    why: "dkim_key_unavailable",
                };
            }
        };
        let message_id = new_message_id(job.job_id, &campaign.domain);
        let config = self.ctx.config.clone();
        let input = RenderJob::new(
            &config,
            job,
            message_id.clone(),
            work.step,
            work.thread.clone(),
        );
        let signed = !signers.is_empty();
        let body = match self
            .ctx
            .renderer
            .render(config, campaign.clone(), input, signers)
            .await
        {
            Ok(body) => body,
            Err(reason) => return Finish::Failed(reason),
        };
        self.ctx.metrics.dkim(signed);

        if let Some(late) = too_late(&self.ctx.metrics, job, deadline) {
            return late;
        }
        let domain = email_domain(&job.recipient);
        let lookup = site::resolve(&self.ctx.routes, &*self.ctx.resolver, domain);
        let Ok(found) = tokio::time::timeout_at(deadline, lookup).await else {
            self.ctx.metrics.attempt_deadline("in_smtp");
            return Finish::Smtp {
                outcome: DeliveryOutcome::deadline_passed(Stage::Connect),
                message_id,
                provider: None,
            };
        };
        let resolved = match found {
            Ok(resolved) if !resolved.dests.is_empty() => resolved,
            Ok(_) => {
                return Finish::Smtp {
                    outcome: dns_outcome(None),
                    message_id,
                    provider: None,
                };
            }
            Err(err) => {
                return Finish::Smtp {
                    outcome: dns_outcome(Some(&err)),
                    message_id,
                    provider: None,
                };
            }
        };
        let dests = &resolved.dests;
        let provider = self.ctx.providers.classify(&dests[0].host);
        let default = &self.ctx.providers.default_provider().name;
        let unit = ShapingUnit::of(provider, default, &resolved);
        let now = self.ctx.clock.now();
        if let Admission::NotBefore { at, why } = self.shaping.admit(&unit, now) {
            return Finish::Postponed { until: at, why };
        }
        let reusable = open.as_ref().is_some_and(|o| {
            // Same unit too: a host shared by two sites counts against each apart.
            o.unit.key == unit.key
                && dests.contains(&o.dest)
                && o.conn.is_usable()
                && o.conn.messages_sent() < o.cap
        });
        if !reusable {
            self.close(open).await;
            match self.open_connection(dests, &unit, deadline).await {
                Ok(fresh) => *open = Some(fresh),
                Err(Finish::Smtp { outcome, .. }) => {
                    return Finish::Smtp {
                        outcome,
                        message_id,
                        provider: Some(unit),
                    };
                }
                Err(other) => return other,
            }
        }
        // The pair's own pace first (while its health holds it below the IP's),
        // so a slowed pair does not hold slots of the IP's grid while it waits.
        self.shaping.pace(&unit.key, self.pacer.per_second()).await;
        self.pacer.pace().await;
        if let Some(late) = too_late(&self.ctx.metrics, job, deadline) {
            return late;
        }
        let conn = &mut open.as_mut().expect("connection just ensured").conn;
        conn.set_deadline(Some(deadline));
        let span = tracing::debug_span!("delivery", job = %job.job_id, ip = %self.ip.address, provider = %unit.provider.name, unit = %unit.key);
        let _entered = span.enter();
        let started = Instant::now();
        let outcome = conn
            .send(&campaign.spec.from_address, &job.recipient, &body)
            .await;
        self.ctx
            .metrics
            .smtp_transaction(started.elapsed().as_secs_f64());
        if !outcome.is_sent() && Instant::now() >= deadline {
            self.ctx.metrics.attempt_deadline("in_smtp");
        }
        Finish::Smtp {
            outcome,
            message_id,
            provider: Some(unit),
        }
    }

    /// Takes a connection slot of the provider, then connects to the first
    /// destination that answers (MX fallback on connection failures), each
    /// destination's addresses resolved by the node's resolver and vetted
    /// ([`vetted_addresses`]), all by `deadline`. Only refused addresses (no DNS
    /// trouble, nothing tried) end the job `failed`, naming them.
    async fn open_connection(
        &self,
        dests: &[Destination],
        unit: &ShapingUnit,
        deadline: Instant,
    ) -> Result<Open, Finish> {
        let config = &self.ctx.config;
        let slots = self.shaping.connections(unit, self.ctx.clock.now());
        let Ok(slot) = slots.try_acquire_owned() else {
            return Err(Finish::HandOff(unit.key.clone()));
        };
        let cap = config
            .delivery
            .messages_per_connection
            .min(unit.provider.limits.max_messages_per_connection.max(1));
        let smtp_failure = |outcome| Finish::Smtp {
            outcome,
            message_id: String::new(),
            provider: None,
        };
        let mut last = None;
        let mut refused: Vec<Refused> = Vec::new();
        for dest in dests {
            let lookup = vetted_addresses(&*self.ctx.resolver, &self.ctx.routes, dest);
            let vetted = match tokio::time::timeout_at(deadline, lookup).await {
                Err(_) => {
                    last = Some(DeliveryOutcome::deadline_passed(Stage::Connect));
                    break;
                }
                Ok(Err(err)) => {
                    last = Some(address_lookup_outcome(&err));
                    continue;
                }
                Ok(Ok(vetted)) => vetted,
            };
            for r in &vetted.refused {
                self.ctx.metrics.refused_address(r.kind.as_str());
                tracing::warn!(host = %r.host, address = %r.address, range = r.kind.as_str(), "MX address is not globally routable: not connecting");
            }
            refused.extend(vetted.refused);
            if vetted.allowed.is_empty() {
                continue;
            }
            let tls = TlsMode::from_config(&config.delivery);
            let connecting = SmtpConnection::connect_to(
                self.ip.address,
                dest,
                &vetted.allowed,
                &self.ip.helo_name,
                &config.delivery.timeouts,
                tls,
                Some(deadline),
            );
            match connecting.await {
                Ok(conn) => {
                    self.ctx.metrics.smtp_connection();
                    return Ok(Open {
                        conn,
                        dest: dest.clone(),
                        unit: unit.clone(),
                        cap,
                        _slot: slot,
                    });
                }
                // A 5xx greeting is the server's answer, not a reachability problem.
                Err(outcome @ DeliveryOutcome::Bounced { .. }) => {
                    return Err(smtp_failure(outcome));
                }
                Err(outcome) => last = Some(outcome),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        match last {
            Some(outcome) => Err(smtp_failure(outcome)),
            None if !refused.is_empty() => Err(Finish::Failed(refusal_reason(&refused))),
            None => Err(smtp_failure(dns_outcome(None))),
        }
    }

    async fn report(&self, work: Work, finish: Finish) {
        if matches!(finish, Finish::Abandoned) {
            self.ctx.metrics.lease_expired_abandoned();
            tracing::warn!(job = %work.job.job_id, "lease not surely held: job left to its tenant's owner");
            self.ctx.abandoned.lock().expect("abandoned lock").push((
                work.job.tenant_id,
                work.job.job_id,
                work.fence,
                work.claim,
            ));
            return;
        }
        let now = self.ctx.clock.now();
        let job = &work.job;
        self.apply_reply_rules(&finish, &job.recipient, now);
        self.observe_health(&work, &finish, now);
        if let Finish::Smtp { outcome, .. } = &finish
            && should_suppress(outcome)
        {
            analytics::suppress(&self.ctx, job.tenant_id, job.recipient.clone());
        }
        let (transition, event) = outcome_records(&self.ctx, &self.ip, &work, finish, now);
        if let Some(event) = event {
            analytics::record(&self.ctx, vec![event]);
        }
        // (A hand-off never reaches here: the job is still this IP's.)
        status_writer::hand_over(&self.ctx, transition).await;
        if let Some(tenant) = self.ctx.directory.tenant(job.tenant_id) {
            let _ = tenant.cast(TenantMsg::Credit {
                ip: self.ip.id,
                n: 1,
            });
        }
    }

    /// Feeds the breakers with a server's verdict, and returns the allowance of a
    /// job released before SMTP.
    fn observe_health(&self, work: &Work, finish: &Finish, now: OffsetDateTime) {
        let ip = || self.ctx.directory.ip(self.ip.id);
        let observed = match finish {
            Finish::Released | Finish::Postponed { .. } => {
                if let Some(ip) = ip() {
                    let _ = ip.cast(IpMsg::Released {
                        hour_start: work.hour_start,
                        n: 1,
                    });
                }
                return;
            }
            Finish::Smtp { outcome, .. } if outcome.code().is_none() => return,
            // Greylisting says nothing about reputation.
            Finish::Smtp { outcome, .. } if is_greylisting(outcome) => return,
            Finish::Smtp { outcome, .. } => match outcome {
                DeliveryOutcome::Sent { .. } => Observed::Sent,
                DeliveryOutcome::Bounced { .. } => Observed::Bounced,
                DeliveryOutcome::Deferred { .. } => Observed::Deferred,
            },
            Finish::Failed(_) | Finish::HandOff(_) | Finish::Abandoned => return,
        };
        let provider = match finish {
            Finish::Smtp { provider, .. } => provider.as_ref().map(|u| u.key.as_str()),
            _ => None,
        };
        let trips = {
            let mut breakers = self.breakers.lock().expect("breakers lock");
            let trips = breakers.observe(now, provider, observed);
            // A warning halves the pace and its end restores it, from the next
            // slot on (set under the lock, so verdicts reach the pacer in order).
            self.pacer.set_health_factor(breakers.factor());
            if let Some(provider) = provider {
                self.shaping
                    .set_pace_factor(provider, breakers.pair_factor(provider));
            }
            trips
        };
        if trips
            .iter()
            .any(|t| matches!(t, crate::breaker::Trip::PauseIp(_)))
        {
            // Stop at once; the Ip actor records the pause in Postgres.
            self.paused.store(true, Ordering::Release);
        }
        if !trips.is_empty()
            && let Some(ip) = ip()
        {
            let _ = ip.cast(IpMsg::Tripped(trips));
        }
    }

    /// A reply that matches a rule slows down or suspends this IP's traffic to the
    /// unit (provider or site) that gave it. A greylisting reply does only once
    /// its unit's greylisting counts as throttling.
    fn apply_reply_rules(&self, finish: &Finish, recipient: &str, now: OffsetDateTime) {
        let Finish::Smtp {
            outcome,
            provider: Some(unit),
            ..
        } = finish
        else {
            return;
        };
        if outcome.is_sent() {
            return;
        }
        if is_greylisting(outcome) {
            let mut greylist = self.greylist.lock().expect("greylist lock");
            if !greylist.observe(&unit.key, recipient, now) {
                return;
            }
            tracing::warn!(ip = %self.ip.address, unit = %unit.key, "greylisting of many recipients: throttling");
        }
        let provider = &unit.provider;
        if let Some(rule) = self
            .ctx
            .reply_rules
            .matching(&provider.name, outcome.reply())
        {
            tracing::warn!(
                ip = %self.ip.address,
                provider = %provider.name,
                unit = %unit.key,
                rule = rule.name,
                action = rule.action.as_str(),
                for_secs = rule.action.duration().as_secs(),
                "reply rule matched"
            );
            self.ctx.metrics.reply_rule(rule.action.as_str());
            let applied = self.shaping.apply(unit, rule.action, now);
            // Recorded by the Ip actor, so a restart or a hand-off keeps it.
            let row = applied.row(&self.ip, rule.name, outcome.reply());
            if let Some(ip) = self.ctx.directory.ip(self.ip.id) {
                let _ = ip.cast(IpMsg::Shaped(row));
            }
        }
    }
}

/// A job whose attempt deadline passed before its SMTP transaction began is
/// released unattempted: the Reaper may soon return it anyway.
fn too_late(metrics: &Metrics, job: &JobV1, deadline: Instant) -> Option<Finish> {
    if Instant::now() < deadline {
        return None;
    }
    metrics.attempt_deadline("before_smtp");
    tracing::warn!(job = %job.job_id, "attempt deadline passed before SMTP; job released");
    Some(Finish::Released)
}
