//! Ip(a): one per SMTP IP of an owned tenant. Receives batches of popped jobs from
//! its Tenant, claims them `queued → sending` in one Postgres statement (only jobs
//! of running campaigns), acknowledges them in Redis, and hands the claimed ones to
//! its delivery workers (`delivery.connections_per_ip` of them, each with one SMTP
//! connection bound to the IP's address).
//!
//! On (re)start it first flushes StatusWriter and returns any job still `sending`
//! on this IP to `pending`: those belonged to a previous incarnation whose workers
//! are gone. Workers die with the actor (their handles abort on drop).
//! Per-IP limits and warm-up allowances come in a later step; today the IP's
//! capacity is its worker count plus `delivery.ip_backlog`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use penguin_engine::queue::Popped;
use penguin_engine::store::events::Event;
use penguin_engine::store::jobs;
use penguin_engine::store::routing::IpSpec;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::context::Ctx;
use crate::delivery::{ReadyQueues, Work, Worker};
use crate::shaping::Shaping;
use crate::tenant::TenantMsg;
use crate::{analytics, status_writer};

pub struct IpActor;

pub struct IpArgs {
    pub ctx: Ctx,
    pub spec: IpSpec,
}

pub enum IpMsg {
    /// Jobs popped for this IP by its tenant (each holds one credit).
    Deliver(Vec<Popped>),
    /// Stop taking work, release what has not started, wait for SMTP under way.
    Drain(RpcReplyPort<()>),
    /// The IP's row changed (status, warm-up day, limits); same address.
    Update(IpSpec),
    /// A complaint about a message this IP sent (to `provider`, when known).
    Complaint { provider: Option<String> },
}

/// Aborts a task when dropped, so workers never outlive their actor.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct IpState {
    ctx: Ctx,
    spec: Arc<IpSpec>,
    work: Option<mpsc::UnboundedSender<Work>>,
    workers: Vec<AbortOnDrop>,
    draining: Arc<AtomicBool>,
}

impl IpActor {
    /// Jobs an IP may hold at once (in its queue and in SMTP): its tenant's credit.
    pub fn capacity(ctx: &Ctx) -> usize {
        ctx.config.delivery.connections_per_ip + ctx.config.delivery.ip_backlog
    }
}

impl Actor for IpActor {
    type Msg = IpMsg;
    type State = IpState;
    type Arguments = IpArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        IpArgs { ctx, spec }: IpArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        status_writer::flush(&ctx).await;
        let released =
            jobs::release_sending_on_ip(&ctx.pg, spec.tenant_id, spec.id, ctx.clock.now()).await?;
        if released > 0 {
            tracing::warn!(ip = %spec.address, released, "returned jobs left `sending` by a previous incarnation");
            crate::metrics::jobs_recovered("ip_restart", released);
        }
        let spec = Arc::new(spec);
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(rx));
        let draining = Arc::new(AtomicBool::new(false));
        let shaping = Arc::new(Shaping::default());
        let ready = Arc::new(ReadyQueues::default());
        let workers = (0..ctx.config.delivery.connections_per_ip)
            .map(|_| {
                let worker = Worker {
                    ctx: ctx.clone(),
                    ip: spec.clone(),
                    queue: queue.clone(),
                    draining: draining.clone(),
                    shaping: shaping.clone(),
                    ready: ready.clone(),
                };
                AbortOnDrop(tokio::spawn(worker.run()))
            })
            .collect();
        if let Some(tenant) = ctx.directory.tenant(spec.tenant_id) {
            let _ = tenant.cast(TenantMsg::IpReady {
                ip: spec.id,
                capacity: IpActor::capacity(&ctx),
            });
        }
        Ok(IpState {
            ctx,
            spec,
            work: Some(tx),
            workers,
            draining,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IpMsg::Deliver(batch) => state.deliver(batch).await,
            IpMsg::Drain(reply) => {
                state.drain().await;
                let _ = reply.send(());
            }
            IpMsg::Update(spec) => state.spec = Arc::new(spec),
            IpMsg::Complaint { provider } => {
                tracing::info!(ip = %state.spec.address, ?provider, "complaint received");
            }
        }
        Ok(())
    }
}

impl IpState {
    async fn deliver(&mut self, batch: Vec<Popped>) {
        let tenant = self.spec.tenant_id;
        let pairs: Vec<(Uuid, Uuid)> = batch
            .iter()
            .map(|p| (p.payload.job_id(), self.spec.id))
            .collect();
        let mut campaigns: Vec<Uuid> = batch
            .iter()
            .map(|p| p.payload.clone().into_job().campaign_id)
            .collect();
        campaigns.sort_unstable();
        campaigns.dedup();
        let claim = if self.work.is_some() {
            jobs::claim_sending(
                &self.ctx.pg,
                tenant,
                &pairs,
                &campaigns,
                self.ctx.clock.now(),
            )
            .await
        } else {
            Ok(Default::default())
        };
        let claim = match claim {
            Ok(claim) => claim,
            Err(err) => {
                // Nothing changed in Postgres; the jobs stay in Redis' in-flight set
                // and the reaper re-queues them after their deadline.
                tracing::warn!(ip = %self.spec.address, error = %err, "claiming jobs failed");
                self.return_credit(batch.len());
                return;
            }
        };
        // Postgres now holds the truth for every offered job: drop them from Redis.
        let raws: Vec<&[u8]> = batch.iter().map(|p| p.raw.as_slice()).collect();
        if let Err(err) = self.ctx.queue.ack(tenant, &raws).await {
            tracing::warn!(error = %err, "acknowledging jobs in redis failed");
        }
        if !claim.suppressed.is_empty() {
            self.record_suppressed(&batch, &claim.suppressed);
        }
        let claimed: std::collections::HashMap<Uuid, time::OffsetDateTime> =
            claim.claimed.into_iter().collect();
        let mut unclaimed = 0;
        for popped in batch {
            let job = popped.payload.into_job();
            match (claimed.get(&job.job_id), &self.work) {
                (Some(first_attempt), Some(work)) => {
                    let first_attempt = *first_attempt;
                    if work.send(Work { job, first_attempt }).is_err() {
                        unclaimed += 1;
                    }
                }
                _ => unclaimed += 1,
            }
        }
        self.return_credit(unclaimed);
    }

    /// Jobs the claim found on the suppression list: already terminal in Postgres;
    /// record the event.
    fn record_suppressed(&self, batch: &[Popped], suppressed: &[Uuid]) {
        let now = self.ctx.clock.now();
        let events = batch
            .iter()
            .map(|p| p.payload.job())
            .filter(|job| suppressed.contains(&job.job_id))
            .map(|job| {
                crate::metrics::message("suppressed");
                Event {
                    tenant_id: job.tenant_id,
                    campaign_id: job.campaign_id,
                    job_id: job.job_id,
                    ip_id: Some(self.spec.id),
                    kind: "suppressed".into(),
                    smtp_code: None,
                    enhanced_code: None,
                    class: None,
                    provider: None,
                    reply: Some("address is on the tenant's suppression list".into()),
                    at: now,
                }
            })
            .collect();
        analytics::record(&self.ctx, events);
    }

    fn return_credit(&self, n: usize) {
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
        self.work = None; // closing the channel ends each worker after its queue drains
        for worker in &mut self.workers {
            let finished = tokio::time::timeout(Duration::from_secs(60), &mut worker.0).await;
            if finished.is_err() {
                tracing::warn!(ip = %self.spec.address, "delivery worker did not finish in time");
            }
        }
        self.workers.clear(); // aborts any worker that overran
    }
}
