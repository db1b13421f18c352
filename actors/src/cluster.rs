//! Cluster: decides what this node works on. Every `node.heartbeat_ms` it reads
//! the live nodes, shares the partitions (`node.partitions`; every tenant hashes
//! into one, `engine::partition`) among the nodes that are not draining
//! (`engine::assignment`: rendezvous hashing with quotas, counts within one of
//! even), takes or renews the leases of its share in Redis (one script call for
//! all of them), and publishes the result (the [`Ownership`] watch: partitions and
//! their tenants' IPs) to TenantSupervisor, IpSupervisor, WarmupSupervisor,
//! Feeder and Reaper. Nothing here reads or visits tenants one by one: a
//! heartbeat costs the same for 10 or 10,000 tenants.
//!
//! A partition it works but is no longer its share (a node joined, or this node
//! drains) leaves its ownership at once and is handed off ([`crate::handoff`]):
//! its tenants' IPs drain, then the lease is released for the new owner; the
//! lease is renewed until then. A draining node that owns nothing any more says
//! so (`EngineContext::drained`), and its process exits.
//!
//! Each heartbeat it also publishes this node's membership record (its owned
//! partitions, send rate and whether it drains; `engine::membership`), which
//! `GET /v1/nodes` lists and the other nodes share the partitions by.
//!
//! It also listens to control notifications (Redis pub/sub): a tenant change
//! re-reads the IPs at once; a campaign pause/cancel marks the campaign stopped
//! for the delivery workers; a start, resume or import wakes the tenant
//! (`feeder::activate`). On stop it releases its leases.
//!
//! Taking a partition raises its epoch in Postgres (`store::fences`), the fencing
//! token every job write of this node carries for the partition's tenants: once
//! another node takes the partition, whatever this node still tries to write for
//! them is refused.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use penguin_engine::assignment;
use penguin_engine::control::ControlEvent;
use penguin_engine::domain::CampaignStatus;
use penguin_engine::lease::{Ask, LeaseState, Leases};
use penguin_engine::membership::{Membership, NodeRecord};
use penguin_engine::partition::{self, Partition};
use penguin_engine::readiness::Phase;
use penguin_engine::store::routing::{self, IpSpec};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::breaker::Observed;
use crate::context::{Ctx, Ownership};
use crate::control_channel::subscribe;
use crate::ip_supervisor::IpSupMsg;
use crate::tenant_supervisor::TenantSupMsg;
use crate::warmup_supervisor::WarmupSupMsg;
use crate::{feeder, takeover, tenant_supervisor};

pub struct Cluster;

/// Heartbeats between two reads of the IPs when nothing said they changed.
const IPS_EVERY: u32 = 15;

pub struct ClusterArgs {
    pub ctx: Ctx,
    pub tenants: ActorRef<TenantSupMsg>,
    pub ips: ActorRef<IpSupMsg>,
    pub warmup: ActorRef<WarmupSupMsg>,
}

pub enum ClusterMsg {
    Heartbeat,
    Control(ControlEvent),
    /// Re-read the IPs now and wake the tenants whose IPs changed (control
    /// notifications arriving together share one).
    IpsChanged,
    /// A hand-off finished: the partition's lease is released.
    HandedOff(Partition),
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
    /// Partitions being handed off (lease still held and renewed), with whether
    /// their hand-off task runs yet.
    leaving: HashMap<Partition, bool>,
    /// This node was asked to drain: it hands everything off.
    draining: bool,
    /// Partitions of this node's share whose lease was missing (not released)
    /// at a renewal, since when (monotonic ms).
    missing_since: HashMap<Partition, i64>,
    /// The IPs of the partitions this node works, as last read.
    known_ips: Vec<IpSpec>,
    /// An IP or tenant changed since `ips` was read.
    ips_stale: bool,
    /// Heartbeats since `ips` was read.
    beats_since_ips: u32,
    /// Tenants whose IPs changed since the last `IpsChanged` (one is on its way).
    changed_tenants: HashSet<Uuid>,
    /// Whether the membership ever showed another live node.
    saw_others: bool,
    /// Since when (monotonic ms) every membership read showed no other node.
    alone_since: Option<i64>,
    /// Live nodes the last membership read showed, itself included
    /// (`penguin_cluster_nodes`).
    live_nodes: usize,
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
        let subscriber = tokio::spawn(subscribe(args.ctx.config.redis.clone(), myself.clone()));
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
            known_ips: Vec::new(),
            ips_stale: true,
            beats_since_ips: 0,
            changed_tenants: HashSet::new(),
            saw_others: false,
            live_nodes: 0,
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
            ClusterMsg::IpsChanged => {
                state.ips_stale = true;
                state.refresh().await;
                // A tenant without IPs (one just created) has nothing to send.
                let changed = std::mem::take(&mut state.changed_tenants);
                let with_ips: HashSet<Uuid> = state
                    .known_ips
                    .iter()
                    .map(|ip| ip.tenant_id)
                    .filter(|tenant| changed.contains(tenant))
                    .collect();
                for tenant in with_ips {
                    feeder::activate(&state.ctx, tenant);
                }
            }
            ClusterMsg::HandedOff(partition) => {
                state.leaving.remove(&partition);
                // The last one settles the node's state (a drain ends here).
                if state.leaving.is_empty() {
                    state.refresh().await;
                }
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
        let Some(mine) = self.share().await else {
            return;
        };
        let node = &self.ctx.config.node;
        let before = self.ctx.owned();
        for partition in before.partitions.iter().filter(|p| !mine.contains(p)) {
            self.leaving.entry(*partition).or_insert(false);
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
        let mut leased: Vec<Partition> = mine
            .iter()
            .filter(|p| !self.leaving.contains_key(p))
            .copied()
            .collect();
        let wanted = leased.len();
        leased.extend(self.leaving.keys().copied());
        // A partition being handed off is only renewed: its hand-off task may
        // have released the lease already, and the new owner takes it from there.
        let asks: Vec<(Partition, Ask)> = leased
            .iter()
            .map(|p| {
                if self.leaving.contains_key(p) {
                    return (*p, Ask::Renew);
                }
                let long_missing = self
                    .missing_since
                    .get(p)
                    .is_some_and(|since| now - since >= ttl);
                let take_missing = before.has(*p) || long_missing || alone;
                (
                    *p,
                    if take_missing {
                        Ask::TakeMissing
                    } else {
                        Ask::Take
                    },
                )
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
        for (partition, state) in leased.iter().zip(&states) {
            if *state == LeaseState::Missing {
                self.missing_since.entry(*partition).or_insert(now);
            } else {
                self.missing_since.remove(partition);
            }
        }
        self.missing_since.retain(|p, _| mine.contains(p));
        let held: Vec<bool> = states.iter().map(|s| *s == LeaseState::Held).collect();
        // A handed-off lease reads released (or already the new owner's) once
        // the hand-off let it go; missing means it expired or Redis lost it
        // while this node may still have been sending for it.
        for (partition, state) in leased[wanted..].iter().zip(&states[wanted..]) {
            if *state == LeaseState::Missing {
                tracing::warn!(partition, "lost the lease of a partition being handed off");
            }
        }
        // A partition newly held is taken over (its epoch raised) before
        // anything works it, even if this node held it before; one whose
        // takeover failed waits for the next heartbeat.
        let mut owned: Vec<Partition> = Vec::with_capacity(wanted);
        let mut taking: Vec<Partition> = Vec::new();
        {
            let fences = self.ctx.fences.read().expect("fences lock");
            for (partition, held) in leased[..wanted].iter().zip(&held[..wanted]) {
                if !*held {
                    continue;
                }
                if before.has(*partition) && fences.contains_key(partition) {
                    owned.push(*partition);
                } else {
                    taking.push(*partition);
                }
            }
        }
        let (taken, to_wake) = takeover::take_over(&self.ctx, &taking).await;
        owned.extend(&taken);
        owned.sort_unstable();
        {
            let mut fences = self.ctx.fences.write().expect("fences lock");
            fences.retain(|p, _| owned.binary_search(p).is_ok() || self.leaving.contains_key(p));
        }
        takeover::return_abandoned(&self.ctx).await;
        let changed = owned != before.partitions;
        let mut working: Vec<Partition> = owned.clone();
        working.extend(self.leaving.keys().copied());
        working.sort_unstable();
        // The IPs are read again when the partitions change, when an IP or tenant
        // changed (a control notification) and every `IPS_EVERY` heartbeats.
        self.beats_since_ips += 1;
        if changed || self.ips_stale || self.beats_since_ips >= IPS_EVERY {
            match routing::ips_of_partitions(&self.ctx.pg, node.partitions, &working).await {
                Ok(ips) => {
                    self.known_ips = ips;
                    self.ips_stale = false;
                    self.beats_since_ips = 0;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "loading ips failed; keeping current ownership");
                    return;
                }
            }
        }
        let count = node.partitions;
        let partition_of = |tenant: Uuid| partition::of(tenant, count);
        let ips: Vec<IpSpec> = self
            .known_ips
            .iter()
            .filter(|ip| working.binary_search(&partition_of(ip.tenant_id)).is_ok())
            .cloned()
            .collect();
        // The IPs of partitions being handed off stay with IpSupervisor until
        // they are drained (`IpSupMsg::Release`); everything else sees only `owned`.
        let owned_ips: Vec<IpSpec> = ips
            .iter()
            .filter(|ip| owned.binary_search(&partition_of(ip.tenant_id)).is_ok())
            .cloned()
            .collect();
        self.ctx.metrics.owned_partitions(owned.len());
        let drained = self.draining && owned.is_empty() && self.leaving.is_empty();
        let ownership = Arc::new(Ownership {
            partitions: owned,
            ips: owned_ips.clone(),
        });
        let ownership_changed = *self.ctx.ownership.borrow() != ownership;
        self.ctx.ownership.send_replace(ownership);
        // Always told (cheap, idempotent): a restarted supervisor catches up here.
        let _ = self.warmup.cast(WarmupSupMsg::SetIps(owned_ips.clone()));
        let _ = self.tenants.cast(TenantSupMsg::SetIps(owned_ips));
        let leaving_tenants: HashSet<Uuid> = ips
            .iter()
            .filter(|ip| self.leaving.contains_key(&partition_of(ip.tenant_id)))
            .map(|ip| ip.tenant_id)
            .collect();
        let _ = self
            .ips
            .cast(IpSupMsg::SetIps(ips.clone(), leaving_tenants));
        if ownership_changed {
            feeder::wake(&self.ctx);
        }
        // A tenant taken over with `queued` jobs gets its Tenant actor now, not
        // only when the Feeder finds its lists non-empty or work due: jobs the
        // previous owner popped sit in the in-flight set, which only the Reaper
        // re-queues, and only for tenants with a Tenant actor (which stays
        // while anything of its tenant is in Redis).
        for tenant in to_wake {
            feeder::activate(&self.ctx, tenant);
            tenant_supervisor::activate(&self.ctx, tenant, false);
        }
        for (partition, started) in self.leaving.iter_mut().filter(|(_, started)| !**started) {
            *started = true;
            let partition_ips = ips
                .iter()
                .filter(|ip| partition_of(ip.tenant_id) == *partition)
                .map(|ip| ip.id)
                .collect();
            tokio::spawn(crate::handoff::hand_off(
                self.ctx.clone(),
                self.ips.clone(),
                self.myself.clone(),
                *partition,
                partition_ips,
            ));
        }
        if drained {
            tracing::info!("drained: every partition handed off");
            self.ctx.drained.send_replace(true);
        }
    }

    /// This node's share of the partitions among the live nodes that are not
    /// draining (itself included unless it drains). `None` when membership is
    /// unreadable.
    async fn share(&mut self) -> Option<Vec<Partition>> {
        let node = &self.ctx.config.node;
        match self
            .membership
            .drain_requested(&node.id, node.lease_ttl_ms)
            .await
        {
            Ok(true) if !self.draining => {
                tracing::info!("drain requested: handing every partition off");
                self.draining = true;
                self.ctx.readiness.advance(Phase::Draining);
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
        // Itself counts even before its first record shows in a read.
        self.live_nodes = live.iter().filter(|n| n.id != node.id).count() + 1;
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
        Some(assignment::share_of(node.partitions, &sharing, &node.id))
    }

    /// Publishes this node's membership record: the tenants it owns now and its
    /// send rate since the last record.
    async fn beat(&mut self) {
        let now = penguin_engine::clock::unix_ms();
        let sent = self.ctx.sent.load(std::sync::atomic::Ordering::Relaxed);
        let (sent_before, at_before) = self.last_beat;
        let minutes = (now - at_before).max(1) as f64 / 60_000.0;
        let record = NodeRecord {
            id: self.ctx.config.node.id.clone(),
            started_at_ms: self.ctx.started_at_ms,
            heartbeat_at_ms: now,
            partitions: self.ctx.owned().partitions.clone(),
            handing_off: {
                let mut leaving: Vec<Partition> = self.leaving.keys().copied().collect();
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
            Ok(()) => {
                self.last_beat = (sent, now);
                // Placed in the cluster: its record is out, its share taken.
                self.ctx.readiness.advance(if self.draining {
                    Phase::Draining
                } else {
                    Phase::Ready
                });
                let at = penguin_engine::clock::unix_ms();
                self.ctx.metrics.heartbeat(at, self.live_nodes);
            }
            Err(err) => tracing::warn!(error = %err, "publishing the membership record failed"),
        }
    }

    async fn control(&mut self, event: ControlEvent) {
        match event {
            ControlEvent::TenantChanged { tenant_id } => {
                // An IP added, paused or resumed: re-read the IPs, then wake the
                // tenant (a resumed IP may have jobs waiting for it).
                if self.ctx.owns(tenant_id) {
                    if self.changed_tenants.is_empty() {
                        let _ = self.myself.cast(ClusterMsg::IpsChanged);
                    }
                    self.changed_tenants.insert(tenant_id);
                }
            }
            ControlEvent::Complaint {
                ip_id, provider, ..
            } => {
                if let Some(ip) = self.ctx.directory.ip(ip_id) {
                    let _ = ip.cast(crate::ip::IpMsg::Reported {
                        provider,
                        observed: Observed::Complaint,
                    });
                }
            }
            ControlEvent::Bounce {
                ip_id, provider, ..
            } => {
                if let Some(ip) = self.ctx.directory.ip(ip_id) {
                    let _ = ip.cast(crate::ip::IpMsg::Reported {
                        provider,
                        observed: Observed::Bounced,
                    });
                }
            }
            ControlEvent::CampaignChanged {
                tenant_id,
                campaign_id,
                status,
            } => {
                let running = status == CampaignStatus::Running;
                self.ctx.set_stopped(campaign_id, !running);
                // Its IP pool may have changed (`PATCH /v1/campaigns/{id}`).
                self.ctx.campaigns.forget(campaign_id);
                if running && self.ctx.owns(tenant_id) {
                    feeder::activate(&self.ctx, tenant_id);
                } else if status == CampaignStatus::Scheduled && self.ctx.owns(tenant_id) {
                    // Its start time may come before the Feeder's next wake-up.
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
    let partitions = ctx.owned().partitions.clone();
    if let Err(err) = leases.release(&partitions, &ctx.config.node.id).await {
        tracing::warn!(error = %err, "releasing leases failed; they will expire");
    }
}
