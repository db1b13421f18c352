//! Webhooks: the dispatcher of one node. It delivers the webhook outbox
//! (`store::webhook_outbox`, filled by triggers in the transactions that record
//! events) of the tenants of the partitions this node owns — the same
//! ownership as the rest of a tenant's work — and only those.
//!
//! A round reads, in one query, every webhook of the owned partitions with a
//! pending delivery and when its earliest is due. Each due webhook gets a task
//! of its own ([`deliver`]): claim a batch (fenced by the node's token for the
//! tenant's partition, a lease of `timeout_ms` + [`LEASE_MARGIN`]), POST it
//! signed (`webhook_send`), record the answer; the task tells the actor when it
//! is done and whether it sent anything (then more may be due: a round follows
//! at once).
//!
//! Isolation: one request at a time per webhook, at most
//! `[webhooks] tenant_concurrency` per tenant and `concurrency` per node, each
//! cut at `timeout_ms`. A slow or dead endpoint therefore holds one slot of its
//! tenant and never the actor, another tenant's slots, the engine's sending, or
//! Postgres (no transaction is open during a request).
//!
//! Wake-ups: after a round, the actor sleeps until the earliest later due time
//! it saw, or `poll_ms` at most (events recorded on other nodes are found
//! within it); a finished task wakes it at once. Every minute a round also
//! prunes delivered and dead deliveries older than `retention_secs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use penguin_engine::store::fences::Epoch;
use penguin_engine::store::webhook_outbox::{self, Backoff};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use crate::context::Ctx;
use crate::webhook_send::Sender;

/// How much longer than a request's timeout a claim holds its batch.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How often finished deliveries are pruned, and how many at most each time.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_LIMIT: i64 = 1_000;

pub struct Webhooks;

pub enum WebhooksMsg {
    /// Look for due deliveries now.
    Round,
    /// The planned wake-up of that generation came.
    Timer(u64),
    /// A webhook's task finished; `sent`: it claimed and sent a batch (more
    /// may be due). A task that found nothing to claim (its token went stale,
    /// another claim holds the rows) waits for the next planned round instead,
    /// so a stale view never spins.
    Done {
        tenant: Uuid,
        webhook: Uuid,
        sent: bool,
    },
}

pub struct WebhooksState {
    ctx: Ctx,
    sender: Arc<Sender>,
    /// Webhooks with a task under way.
    in_flight: HashSet<Uuid>,
    /// Tasks under way per tenant.
    per_tenant: HashMap<Uuid, u32>,
    /// Dropped with the state: a stopped dispatcher's requests are aborted
    /// (their batches are due again once their lease passes).
    tasks: JoinSet<()>,
    round_queued: bool,
    timer: Option<(u64, JoinHandle<()>)>,
    generation: u64,
    pruned_at: Option<Instant>,
}

impl Drop for WebhooksState {
    fn drop(&mut self) {
        if let Some((_, timer)) = self.timer.take() {
            timer.abort();
        }
    }
}

impl Actor for Webhooks {
    type Msg = WebhooksMsg;
    type State = WebhooksState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        let sender = Sender::new(
            &ctx.config.webhooks,
            ctx.resolver.clone(),
            ctx.signers.sealer(),
        )
        .map_err(|e| ActorProcessingErr::from(format!("webhook client: {e}")))?;
        myself.cast(WebhooksMsg::Round)?;
        Ok(WebhooksState {
            ctx,
            sender: Arc::new(sender),
            in_flight: HashSet::new(),
            per_tenant: HashMap::new(),
            tasks: JoinSet::new(),
            round_queued: true,
            timer: None,
            generation: 0,
            pruned_at: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WebhooksMsg::Round => {
                state.round_queued = false;
                state.round(&myself).await;
            }
            WebhooksMsg::Timer(generation) => {
                if matches!(&state.timer, Some((g, _)) if *g == generation) {
                    state.timer = None;
                    if !state.round_queued {
                        state.round(&myself).await;
                    }
                }
            }
            WebhooksMsg::Done {
                tenant,
                webhook,
                sent,
            } => {
                state.in_flight.remove(&webhook);
                if let Some(n) = state.per_tenant.get_mut(&tenant) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        state.per_tenant.remove(&tenant);
                    }
                }
                if sent && !state.round_queued {
                    state.round_queued = true;
                    myself.cast(WebhooksMsg::Round)?;
                }
            }
        }
        Ok(())
    }
}

impl WebhooksState {
    /// Starts a task for every due webhook that may have one, then plans the
    /// next round.
    async fn round(&mut self, myself: &ActorRef<WebhooksMsg>) {
        while self.tasks.try_join_next().is_some() {}
        let ctx = self.ctx.clone();
        let config = &ctx.config.webhooks;
        let poll = Duration::from_millis(config.poll_ms);
        if !self.ctx.lease_valid() {
            self.plan(myself, poll);
            return;
        }
        let owned = self.ctx.owned();
        let count = self.ctx.config.node.partitions;
        let mut waiting = match webhook_outbox::due(&self.ctx.pg, count, &owned.partitions).await {
            Ok(waiting) => waiting,
            Err(err) => {
                tracing::warn!(error = %err, "reading due webhook deliveries failed");
                self.plan(myself, poll);
                return;
            }
        };
        waiting.sort_by_key(|w| w.due_in_ms);
        let mut next = poll;
        for w in waiting {
            if w.due_in_ms > 0 {
                next = next.min(Duration::from_millis(w.due_in_ms as u64));
                break;
            }
            if self.in_flight.len() >= config.concurrency as usize {
                break;
            }
            if self.in_flight.contains(&w.webhook)
                || self.per_tenant.get(&w.tenant).copied().unwrap_or(0) >= config.tenant_concurrency
            {
                continue;
            }
            let Some(epoch) = self.ctx.fence(w.tenant) else {
                continue;
            };
            self.start(myself, w.tenant, w.webhook, epoch);
        }
        self.ctx.metrics.webhooks_in_flight(self.in_flight.len());
        if self.pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            self.pruned_at = Some(Instant::now());
            let retention = config.retention_secs as i64;
            match webhook_outbox::prune(
                &self.ctx.pg,
                count,
                &owned.partitions,
                retention,
                PRUNE_LIMIT,
            )
            .await
            {
                Ok(0) => {}
                Ok(n) => tracing::debug!(pruned = n, "old webhook deliveries deleted"),
                Err(err) => tracing::warn!(error = %err, "pruning webhook deliveries failed"),
            }
        }
        self.plan(myself, next);
    }

    fn start(&mut self, myself: &ActorRef<WebhooksMsg>, tenant: Uuid, webhook: Uuid, epoch: Epoch) {
        self.in_flight.insert(webhook);
        *self.per_tenant.entry(tenant).or_default() += 1;
        let ctx = self.ctx.clone();
        let sender = self.sender.clone();
        let myself = myself.clone();
        self.tasks.spawn(async move {
            let sent = deliver(&ctx, &sender, tenant, webhook, epoch).await;
            let _ = myself.cast(WebhooksMsg::Done {
                tenant,
                webhook,
                sent,
            });
        });
    }

    /// The next round after `after`, replacing any planned one.
    fn plan(&mut self, myself: &ActorRef<WebhooksMsg>, after: Duration) {
        if let Some((_, timer)) = self.timer.take() {
            timer.abort();
        }
        self.generation += 1;
        let generation = self.generation;
        let myself = myself.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = myself.cast(WebhooksMsg::Timer(generation));
        });
        self.timer = Some((generation, timer));
    }
}

/// Claims one batch of `webhook`, sends it and records the answer; whether
/// a batch was claimed.
async fn deliver(ctx: &Ctx, sender: &Sender, tenant: Uuid, webhook: Uuid, epoch: Epoch) -> bool {
    let config = &ctx.config.webhooks;
    let lease = Duration::from_millis(config.timeout_ms) + LEASE_MARGIN;
    let claimed = webhook_outbox::claim(
        &ctx.pg,
        tenant,
        webhook,
        epoch,
        i64::from(config.batch_size),
        lease.as_millis() as i64,
    )
    .await;
    let batch = match claimed {
        Ok(Some(batch)) if !batch.deliveries.is_empty() => batch,
        Ok(_) => return false,
        Err(err) => {
            tracing::warn!(%tenant, %webhook, error = %err, "claiming webhook deliveries failed");
            return false;
        }
    };
    let answer = sender.send(tenant, webhook, &batch).await;
    ctx.metrics
        .webhook_request(match (&answer.error, answer.status_code) {
            (None, _) => "ok",
            (Some(_), Some(_)) => "http_error",
            (Some(e), None) if e.starts_with("timed out") => "timeout",
            (Some(_), None) => "failed",
        });
    if let Some(error) = &answer.error {
        tracing::info!(%tenant, %webhook, events = batch.deliveries.len(), %error, "webhook delivery failed");
    }
    let ids: Vec<(Uuid, i32)> = batch
        .deliveries
        .iter()
        .map(|c| (c.delivery, c.attempt))
        .collect();
    let backoff = Backoff {
        base_ms: config.backoff_base_ms as i64,
        max_ms: config.backoff_max_ms as i64,
        max_age_secs: config.max_age_secs as i64,
    };
    match webhook_outbox::record(&ctx.pg, tenant, &ids, &answer, backoff).await {
        Ok(recorded) => {
            ctx.metrics
                .webhook_deliveries("delivered", recorded.delivered);
            ctx.metrics.webhook_deliveries("retry", recorded.retrying);
            ctx.metrics.webhook_deliveries("dead", recorded.dead);
        }
        // The claim's lease runs out and the batch is tried again.
        Err(err) => {
            tracing::warn!(%tenant, %webhook, error = %err, "recording a webhook answer failed")
        }
    }
    true
}
