//! Cluster: decides what this node works on. Every `node.heartbeat_ms` it lists the
//! tenants and the live nodes, shares the tenants among the nodes that are not
//! draining (`engine::assignment`: rendezvous hashing with quotas, counts within
//! one of even), takes or renews the leases of its share in Redis, loads the owned
//! tenants' IPs and publishes the result (the [`Ownership`] watch) to
//! TenantSupervisor, IpSupervisor, WarmupSupervisor, Feeder and Reaper.
//!
//! A tenant it works but is no longer its share (a node joined, or this node
//! drains) leaves its ownership at once and is handed off ([`crate::handoff`]):
//! its IPs drain, then the lease is released for the new owner; the lease is
//! renewed until then. A draining node that owns nothing any more says so
//! (`EngineContext::drained`), and its process exits.
//!
//! Each heartbeat it also publishes this node's membership record (its owned
//! tenants, send rate and whether it drains; `engine::membership`), which
//! `GET /v1/nodes` lists and the other nodes share the tenants by.
//!
//! It also listens to control notifications (Redis pub/sub): a tenant change
//! triggers a refresh at once; a campaign pause/cancel marks the campaign stopped
//! for the delivery workers, a start/resume wakes the Feeder. On stop it releases
//! its leases.
//!
//! Taking a tenant raises its epoch in Postgres (`store::fences`), the fencing
//! token every job write of this node carries for that tenant: once another node
//! takes the tenant, whatever this node still tries to write for it is refused.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use penguin_engine::assignment;
use penguin_engine::control::{CHANNEL, ControlEvent};
use penguin_engine::domain::CampaignStatus;
use penguin_engine::lease::{LeaseState, Leases};
use penguin_engine::membership::{Membership, NodeRecord};
use penguin_engine::store::routing;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::Duration;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::context::{Ctx, Ownership};
use crate::ip_supervisor::IpSupMsg;
use crate::tenant_supervisor::TenantSupMsg;
use crate::warmup_supervisor::WarmupSupMsg;
use crate::{feeder, takeover};

pub struct Cluster;

pub struct ClusterArgs {
    pub ctx: Ctx,
    pub tenants: ActorRef<TenantSupMsg>,
    pub ips: ActorRef<IpSupMsg>,
    pub warmup: ActorRef<WarmupSupMsg>,
}

pub enum ClusterMsg {
    Heartbeat,
    Control(ControlEvent),
    /// A hand-off finished: the tenant's lease is released.
    HandedOff(Uuid),
}

pub struct ClusterState {
    ctx: Ctx,
    leases: Leases,
    tenants: ActorRef<TenantSupMsg>,
    ips: ActorRef<IpSupMsg>,
    warmup: ActorRef<WarmupSupMsg>,
    subscriber: JoinHandle<()>,
    membership: Membership,
    /// `ctx.sent` and the wall clock at the last membership record.
    last_beat: (u64, i64),
    myself: ActorRef<ClusterMsg>,
    /// Tenants being handed off (lease still held and renewed), with whether
    /// their hand-off task runs yet.
    leaving: HashMap<Uuid, bool>,
    /// This node was asked to drain: it hands everything off.
    draining: bool,
    /// Tenants of this node's share whose lease was missing (not released) at
    /// a renewal, since when (monotonic ms).
    missing_since: HashMap<Uuid, i64>,
    /// Whether the membership ever showed another live node.
    saw_others: bool,
    /// Since when (monotonic ms) every membership read showed no other node.
    alone_since: Option<i64>,
}

impl Actor for Cluster {
    type Msg = ClusterMsg;
    type State = ClusterState;
    type Arguments = ClusterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ClusterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let every = Duration::from_millis(args.ctx.config.node.heartbeat_ms);
        myself.send_interval(every, || ClusterMsg::Heartbeat);
        myself.cast(ClusterMsg::Heartbeat)?;
        let subscriber = tokio::spawn(subscribe(args.ctx.config.redis.url.clone(), myself.clone()));
        let myself = myself.clone();
        Ok(ClusterState {
            leases: Leases::new(args.ctx.queue.pool().clone()),
            membership: Membership::new(args.ctx.queue.pool().clone()),
            last_beat: (0, args.ctx.started_at_ms),
            ctx: args.ctx,
            tenants: args.tenants,
            ips: args.ips,
            warmup: args.warmup,
            subscriber,
            myself,
            leaving: HashMap::new(),
            draining: false,
            missing_since: HashMap::new(),
            saw_others: false,
            alone_since: None,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ClusterMsg::Heartbeat => {
                state.refresh().await;
                state.beat().await;
            }
            ClusterMsg::Control(event) => state.control(event).await,
            ClusterMsg::HandedOff(tenant) => {
                state.leaving.remove(&tenant);
                state.refresh().await;
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.subscriber.abort();
        Ok(())
    }
}

impl ClusterState {
    async fn refresh(&mut self) {
        let all = match routing::tenant_ids(&self.ctx.pg).await {
            Ok(all) => all,
            Err(err) => {
                tracing::warn!(error = %err, "listing tenants failed; keeping current ownership");
                return;
            }
        };
        let Some(mine) = self.share(&all).await else {
            return;
        };
        let node = &self.ctx.config.node;
        let before = self.ctx.owned();
        for tenant in before.tenants.iter().filter(|t| !mine.contains(t)) {
            self.leaving.entry(*tenant).or_insert(false);
        }
        // Take or renew the leases of this node's share; renew those handed off.
        // A missing lease is taken at once if this node held it (Redis was
        // emptied), or if this node is alone: it never saw another, or every
        // membership read for a whole TTL showed none (measured between reads,
        // so a node the OS paused does not count the pause as time alone);
        // otherwise once it has been missing a whole TTL, since a live holder
        // would have renewed it by then.
        let now = self.ctx.monotonic_ms();
        let ttl = node.lease_ttl_ms as i64;
        let alone = !self.saw_others || self.alone_since.is_some_and(|since| now - since >= ttl);
        let mut leased: Vec<Uuid> = mine
            .iter()
            .filter(|t| !self.leaving.contains_key(t))
            .copied()
            .collect();
        leased.sort_unstable();
        let wanted = leased.len();
        leased.extend(self.leaving.keys().copied());
        let asks: Vec<(Uuid, bool)> = leased
            .iter()
            .map(|t| {
                let ours = before.tenants.contains(t) || self.leaving.contains_key(t);
                let long_missing = self
                    .missing_since
                    .get(t)
                    .is_some_and(|since| now - since >= ttl);
                (*t, ours || long_missing || alone)
            })
            .collect();
        let states = match self
            .leases
            .acquire_or_renew(&asks, &node.id, node.lease_ttl_ms)
            .await
        {
            Ok(states) => {
                self.ctx.leases_renewed(now);
                states
            }
            Err(err) => {
                // Without Redis nothing can be sent anyway; keep what we had so a
                // blip does not tear the actor tree down.
                tracing::warn!(error = %err, "lease renewal failed");
                return;
            }
        };
        for (tenant, state) in leased.iter().zip(&states) {
            if *state == LeaseState::Missing {
                self.missing_since.entry(*tenant).or_insert(now);
            } else {
                self.missing_since.remove(tenant);
            }
        }
        self.missing_since.retain(|t, _| mine.contains(t));
        let held: Vec<bool> = states.iter().map(|s| *s == LeaseState::Held).collect();
        for (tenant, held) in leased[wanted..].iter().zip(&held[wanted..]) {
            if !held {
                tracing::warn!(%tenant, "lost the lease of a tenant being handed off");
            }
        }
        let mut owned: Vec<Uuid> = Vec::with_capacity(wanted);
        for (tenant, held) in leased[..wanted].iter().zip(&held[..wanted]) {
            // A tenant newly held is taken over (its epoch raised) before anything
            // works it, even if this node held it before; one whose takeover
            // failed waits for the next heartbeat.
            let kept = before.tenants.contains(tenant) && self.ctx.fence(*tenant).is_some();
            if *held && (kept || takeover::take_over(&self.ctx, *tenant).await) {
                owned.push(*tenant);
            }
        }
        {
            let mut fences = self.ctx.fences.write().expect("fences lock");
            fences.retain(|t, _| owned.contains(t) || self.leaving.contains_key(t));
        }
        takeover::return_abandoned(&self.ctx).await;
        let leaving: Vec<Uuid> = self.leaving.keys().copied().collect();
        let ips = match routing::ips_of(&self.ctx.pg, &[owned.as_slice(), &leaving].concat()).await
        {
            Ok(ips) => ips,
            Err(err) => {
                tracing::warn!(error = %err, "loading ips failed; keeping current ownership");
                return;
            }
        };
        // The IPs of tenants being handed off stay with IpSupervisor until they
        // are drained (`IpSupMsg::Release`); everything else sees only `owned`.
        let owned_set: HashSet<Uuid> = owned.iter().copied().collect();
        let owned_ips: Vec<_> = ips
            .iter()
            .filter(|ip| owned_set.contains(&ip.tenant_id))
            .cloned()
            .collect();
        let mut per_tenant: HashMap<Uuid, Vec<_>> =
            owned.iter().map(|t| (*t, Vec::new())).collect();
        for ip in &owned_ips {
            per_tenant.entry(ip.tenant_id).or_default().push(ip.clone());
        }
        self.ctx.metrics.owned_tenants(owned.len());
        let drained = self.draining && owned.is_empty() && self.leaving.is_empty();
        let ownership = Arc::new(Ownership {
            tenants: owned,
            ips: owned_ips.clone(),
        });
        let changed = *self.ctx.ownership.borrow() != ownership;
        self.ctx.ownership.send_replace(ownership);
        // Always told (cheap, idempotent): a restarted supervisor catches up here.
        let _ = self.warmup.cast(WarmupSupMsg::SetIps(owned_ips));
        let _ = self.tenants.cast(TenantSupMsg::SetTenants(per_tenant));
        let leaving_set: HashSet<Uuid> = self.leaving.keys().copied().collect();
        let _ = self.ips.cast(IpSupMsg::SetIps(ips.clone(), leaving_set));
        if changed {
            feeder::wake(&self.ctx);
        }
        for (tenant, started) in self.leaving.iter_mut().filter(|(_, started)| !**started) {
            *started = true;
            let tenant_ips = ips
                .iter()
                .filter(|ip| ip.tenant_id == *tenant)
                .map(|ip| ip.id)
                .collect();
            tokio::spawn(crate::handoff::hand_off(
                self.ctx.clone(),
                self.ips.clone(),
                self.myself.clone(),
                *tenant,
                tenant_ips,
            ));
        }
        if drained {
            tracing::info!("drained: every tenant handed off");
            self.ctx.drained.send_replace(true);
        }
    }

    /// This node's share of `all` among the live nodes that are not draining
    /// (itself included unless it drains). `None` when membership is unreadable.
    async fn share(&mut self, all: &[Uuid]) -> Option<HashSet<Uuid>> {
        let node = &self.ctx.config.node;
        match self
            .membership
            .drain_requested(&node.id, node.lease_ttl_ms)
            .await
        {
            Ok(true) if !self.draining => {
                tracing::info!("drain requested: handing every tenant off");
                self.draining = true;
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "reading the drain request failed"),
        }
        let live = match self.membership.live(penguin_engine::clock::unix_ms()).await {
            Ok(live) => live,
            Err(err) => {
                tracing::warn!(error = %err, "reading the membership failed; keeping current ownership");
                return None;
            }
        };
        if live.iter().any(|n| n.id != node.id) {
            self.saw_others = true;
            self.alone_since = None;
        } else if self.alone_since.is_none() {
            self.alone_since = Some(self.ctx.monotonic_ms());
        }
        let mut sharing: Vec<String> = live
            .into_iter()
            .filter(|n| !n.draining && n.id != node.id)
            .map(|n| n.id)
            .collect();
        if !self.draining {
            sharing.push(node.id.clone());
        }
        let owners = assignment::assign(all, &sharing);
        Some(
            all.iter()
                .filter(|t| owners.get(t) == Some(&node.id))
                .copied()
                .collect(),
        )
    }

    /// Publishes this node's membership record: the tenants it owns now and its
    /// send rate since the last record.
    async fn beat(&mut self) {
        let now = penguin_engine::clock::unix_ms();
        let sent = self.ctx.sent.load(std::sync::atomic::Ordering::Relaxed);
        let (sent_before, at_before) = self.last_beat;
        let minutes = (now - at_before).max(1) as f64 / 60_000.0;
        let mut tenants = self.ctx.owned().tenants.clone();
        tenants.sort();
        let record = NodeRecord {
            id: self.ctx.config.node.id.clone(),
            started_at_ms: self.ctx.started_at_ms,
            heartbeat_at_ms: now,
            tenants,
            handing_off: {
                let mut leaving: Vec<Uuid> = self.leaving.keys().copied().collect();
                leaving.sort_unstable();
                leaving
            },
            sent_total: sent,
            sent_per_minute: (sent - sent_before) as f64 / minutes,
            draining: self.draining,
        };
        match self
            .membership
            .beat(&record, self.ctx.config.node.lease_ttl_ms)
            .await
        {
            Ok(()) => self.last_beat = (sent, now),
            Err(err) => tracing::warn!(error = %err, "publishing the membership record failed"),
        }
    }

    async fn control(&mut self, event: ControlEvent) {
        match event {
            ControlEvent::TenantChanged { .. } => self.refresh().await,
            ControlEvent::Complaint {
                ip_id, provider, ..
            } => {
                if let Some(ip) = self.ctx.directory.ip(ip_id) {
                    let _ = ip.cast(crate::ip::IpMsg::Complaint { provider });
                }
            }
            ControlEvent::CampaignChanged {
                campaign_id,
                status,
                ..
            } => {
                let running = status == CampaignStatus::Running;
                self.ctx.set_stopped(campaign_id, !running);
                if running {
                    feeder::wake(&self.ctx);
                }
            }
        }
    }
}

/// Takes this node out of the membership at once (the last step of a clean
/// shutdown, after its leases are released).
pub async fn leave(ctx: &Ctx) {
    let membership = Membership::new(ctx.queue.pool().clone());
    if let Err(err) = membership.leave(&ctx.config.node.id).await {
        tracing::warn!(error = %err, "leaving the membership failed; the record will expire");
    }
}

/// Gives up every lease this node holds (the last step of a clean shutdown).
pub async fn release_leases(ctx: &Ctx) {
    let leases = Leases::new(ctx.queue.pool().clone());
    for tenant in ctx.owned().tenants.iter() {
        if let Err(err) = leases.release(*tenant, &ctx.config.node.id).await {
            tracing::warn!(%tenant, error = %err, "releasing lease failed; it will expire");
        }
    }
}

/// Forwards control notifications to the Cluster actor, reconnecting after Redis
/// errors; after each (re)connect a heartbeat catches up on missed changes.
async fn subscribe(url: String, cluster: ActorRef<ClusterMsg>) {
    loop {
        let connected = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        match connected {
            Ok(mut pubsub) => {
                let _ = cluster.cast(ClusterMsg::Heartbeat);
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Ok(text) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Some(event) = ControlEvent::from_json(&text)
                        && cluster.cast(ClusterMsg::Control(event)).is_err()
                    {
                        return;
                    }
                }
            }
            Err(err) => tracing::debug!(error = %err, "control channel unavailable"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
