//! EngineSupervisor: the root of one node's actor tree (drawn in `lib.rs`). Spawns
//! every child linked, restarts a failed child with backoff (counted in
//! `penguin_actor_restarts_total`), and owns the shutdown order:
//!
//! stop leasing, judging warm-up days, feeding, webhook requests and gauge
//! reads and retention rounds (Cluster, WarmupSupervisor, Feeder, Reaper, Webhooks, Gauges,
//! Retention: requests under way are aborted (a retention batch is one statement),
//! their batches due again once their claim's lease passes) → stop popping (Tenants) →
//! drain the Ip actors (work not started goes back to `pending`, SMTP under way
//! finishes) → flush StatusWriter and Analytics → release leases → exit.
//!
//! [`start_engine`] is the only way in; [`EngineHandle`] the only handle out.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use penguin_config::Config;
use penguin_engine::clock::SharedClock;
use penguin_engine::dns::{HickoryResolver, MxResolver};
use penguin_engine::message::RenderBudget;
use penguin_engine::provider::ProviderTable;
use penguin_engine::queue::RedisQueue;
use penguin_engine::reply_rules::ReplyRules;
use penguin_engine::route::RouteTable;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::analytics::Analytics;
use crate::campaigns::CampaignCache;
use crate::children::Children;
use crate::cluster::{Cluster, ClusterArgs, release_leases};
use crate::context::{Ctx, EngineContext, Ownership};
use crate::directory::Directory;
use crate::feeder::Feeder;
use crate::gauges::Gauges;
use crate::ip::IpMsg;
use crate::ip_supervisor::{IpSupMsg, IpSupervisor};
use crate::metrics::Metrics;
use crate::reaper::Reaper;
use crate::render::Renderer;
use crate::retention::Retention;
use crate::status_writer::StatusWriter;
use crate::tenant_supervisor::{TenantSupMsg, TenantSupervisor};
use crate::warmup_supervisor::{WarmupSupMsg, WarmupSupervisor};
use crate::webhooks::Webhooks;
use crate::{analytics, status_writer};

/// What a node needs from outside.
pub struct EngineDeps {
    pub config: Arc<Config>,
    pub pg: Pool,
    pub redis: penguin_engine::queue::RedisPool,
    pub clock: SharedClock,
    /// MX resolution; `None` builds the hickory resolver from `[delivery.dns]`.
    pub resolver: Option<Arc<dyn MxResolver>>,
    /// Where this node records its metrics (its own registry).
    pub metrics: Metrics,
    /// The node's phase: Cluster moves it to ready and draining (`/health/ready`).
    pub readiness: penguin_engine::readiness::Readiness,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    StatusWriter,
    Analytics,
    IpSupervisor,
    TenantSupervisor,
    WarmupSupervisor,
    Feeder,
    Reaper,
    Webhooks,
    Gauges,
    Retention,
    Cluster,
}

impl Kind {
    /// Start order: sinks of work before its sources.
    const ORDER: [Kind; 11] = [
        Kind::StatusWriter,
        Kind::Analytics,
        Kind::IpSupervisor,
        Kind::TenantSupervisor,
        Kind::WarmupSupervisor,
        Kind::Feeder,
        Kind::Reaper,
        Kind::Webhooks,
        Kind::Gauges,
        Kind::Retention,
        Kind::Cluster,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::StatusWriter => "status_writer",
            Kind::Analytics => "analytics",
            Kind::IpSupervisor => "ip_supervisor",
            Kind::TenantSupervisor => "tenant_supervisor",
            Kind::WarmupSupervisor => "warmup_supervisor",
            Kind::Feeder => "feeder",
            Kind::Reaper => "reaper",
            Kind::Webhooks => "webhooks",
            Kind::Gauges => "gauges",
            Kind::Retention => "retention",
            Kind::Cluster => "cluster",
        }
    }
}

pub(crate) struct EngineSupervisor;

pub(crate) enum EngineMsg {
    Respawn(Kind),
    Shutdown(RpcReplyPort<()>),
}

pub(crate) struct EngineState {
    ctx: Ctx,
    children: Children<Kind>,
    tenant_sup: Option<ActorRef<TenantSupMsg>>,
    ip_sup: Option<ActorRef<IpSupMsg>>,
    warmup_sup: Option<ActorRef<WarmupSupMsg>>,
    stopping: bool,
}

impl Actor for EngineSupervisor {
    type Msg = EngineMsg;
    type State = EngineState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        ctx.metrics.describe();
        let mut state = EngineState {
            ctx,
            children: Children::default(),
            tenant_sup: None,
            ip_sup: None,
            warmup_sup: None,
            stopping: false,
        };
        for kind in Kind::ORDER {
            state.spawn(&myself, kind).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EngineMsg::Respawn(kind) => {
                if !state.stopping
                    && !state.children.contains(&kind)
                    && let Err(err) = state.spawn(&myself, kind).await
                {
                    let delay = state.children.backoff(&kind);
                    tracing::error!(actor = kind.name(), error = %err, ?delay, "restart failed");
                    myself.send_after(delay, move || EngineMsg::Respawn(kind));
                }
            }
            EngineMsg::Shutdown(reply) => {
                state.shutdown().await;
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(kind) = state.children.dead_child(event, "engine child") else {
            return Ok(());
        };
        state.unregister(kind);
        if state.stopping {
            return Ok(());
        }
        state.ctx.metrics.actor_restart(kind.name());
        let delay = state.children.backoff(&kind);
        tracing::warn!(actor = kind.name(), ?delay, "restarting engine child");
        myself.send_after(delay, move || EngineMsg::Respawn(kind));
        // Cluster holds references to the supervisors: give it the new ones.
        if matches!(
            kind,
            Kind::TenantSupervisor | Kind::IpSupervisor | Kind::WarmupSupervisor
        ) && let Some(cluster) = state.children.remove(&Kind::Cluster)
        {
            cluster.stop(Some("supervisor restarted".into()));
            myself.send_after(delay, || EngineMsg::Respawn(Kind::Cluster));
        }
        Ok(())
    }
}

impl EngineState {
    async fn spawn(
        &mut self,
        myself: &ActorRef<EngineMsg>,
        kind: Kind,
    ) -> Result<(), ActorProcessingErr> {
        let ctx = self.ctx.clone();
        let parent = myself.get_cell();
        let cell: ActorCell = match kind {
            Kind::StatusWriter => {
                let (actor, _) = Actor::spawn_linked(None, StatusWriter, ctx, parent).await?;
                self.ctx.directory.set_status_writer(Some(actor.clone()));
                actor.get_cell()
            }
            Kind::Analytics => {
                let (actor, _) = Actor::spawn_linked(None, Analytics, ctx, parent).await?;
                self.ctx.directory.set_analytics(Some(actor.clone()));
                actor.get_cell()
            }
            Kind::IpSupervisor => {
                let (actor, _) = Actor::spawn_linked(None, IpSupervisor, ctx, parent).await?;
                self.ip_sup = Some(actor.clone());
                actor.get_cell()
            }
            Kind::TenantSupervisor => {
                let (actor, _) = Actor::spawn_linked(None, TenantSupervisor, ctx, parent).await?;
                self.tenant_sup = Some(actor.clone());
                self.ctx
                    .directory
                    .set_tenant_supervisor(Some(actor.clone()));
                actor.get_cell()
            }
            Kind::WarmupSupervisor => {
                let (actor, _) = Actor::spawn_linked(None, WarmupSupervisor, ctx, parent).await?;
                self.warmup_sup = Some(actor.clone());
                actor.get_cell()
            }
            Kind::Feeder => {
                let (actor, _) = Actor::spawn_linked(None, Feeder, ctx, parent).await?;
                self.ctx.directory.set_feeder(Some(actor.clone()));
                actor.get_cell()
            }
            Kind::Reaper => Actor::spawn_linked(None, Reaper, ctx, parent)
                .await?
                .0
                .get_cell(),
            Kind::Webhooks => Actor::spawn_linked(None, Webhooks, ctx, parent)
                .await?
                .0
                .get_cell(),
            Kind::Gauges => Actor::spawn_linked(None, Gauges, ctx, parent)
                .await?
                .0
                .get_cell(),
            Kind::Retention => Actor::spawn_linked(None, Retention, ctx, parent)
                .await?
                .0
                .get_cell(),
            Kind::Cluster => {
                let (Some(tenants), Some(ips), Some(warmup)) = (
                    self.tenant_sup.clone(),
                    self.ip_sup.clone(),
                    self.warmup_sup.clone(),
                ) else {
                    return Err("cluster needs the tenant, ip and warmup supervisors".into());
                };
                let args = ClusterArgs {
                    ctx,
                    tenants,
                    ips,
                    warmup,
                };
                Actor::spawn_linked(None, Cluster, args, parent)
                    .await?
                    .0
                    .get_cell()
            }
        };
        self.children.insert(kind, cell);
        Ok(())
    }

    fn unregister(&mut self, kind: Kind) {
        let directory = &self.ctx.directory;
        match kind {
            Kind::StatusWriter => directory.set_status_writer(None),
            Kind::Analytics => directory.set_analytics(None),
            Kind::Feeder => directory.set_feeder(None),
            Kind::IpSupervisor => self.ip_sup = None,
            Kind::TenantSupervisor => {
                self.tenant_sup = None;
                directory.set_tenant_supervisor(None);
            }
            Kind::WarmupSupervisor => self.warmup_sup = None,
            Kind::Reaper | Kind::Webhooks | Kind::Gauges | Kind::Retention | Kind::Cluster => {}
        }
    }

    async fn stop_child(&mut self, kind: Kind) {
        if let Some(cell) = self.children.remove(&kind) {
            let _ = cell
                .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(30)))
                .await;
        }
        self.unregister(kind);
    }

    async fn shutdown(&mut self) {
        self.stopping = true;
        for kind in [
            Kind::Cluster,
            Kind::WarmupSupervisor,
            Kind::Feeder,
            Kind::Reaper,
            Kind::Webhooks,
            Kind::Gauges,
            Kind::Retention,
            Kind::TenantSupervisor,
        ] {
            self.stop_child(kind).await;
        }
        if let Some(ips) = self.ip_sup.clone() {
            let _ = ips
                .call(IpSupMsg::Drain, Some(Duration::from_secs(120)))
                .await;
        }
        self.stop_child(Kind::IpSupervisor).await;
        status_writer::flush(&self.ctx).await;
        analytics::flush(&self.ctx).await;
        release_leases(&self.ctx).await;
        crate::cluster::leave(&self.ctx).await;
        for kind in [Kind::StatusWriter, Kind::Analytics] {
            self.stop_child(kind).await;
        }
        tracing::info!("engine stopped");
    }
}

/// The running engine of this node.
pub struct EngineHandle {
    supervisor: ActorRef<EngineMsg>,
    join: JoinHandle<()>,
    ctx: Ctx,
}

/// Starts one node's actor tree.
pub async fn start_engine(deps: EngineDeps) -> anyhow::Result<EngineHandle> {
    let (ownership, _) = watch::channel(Arc::new(Ownership::default()));
    let resolver: Arc<dyn MxResolver> = match deps.resolver {
        Some(resolver) => resolver,
        None => Arc::new(
            HickoryResolver::from_config(&deps.config.delivery.dns)
                .map_err(|e| anyhow::anyhow!("delivery.dns: {e}"))?,
        ),
    };
    let reply_rules = ReplyRules::new(&deps.config.delivery.reply_rules)
        .map_err(|e| anyhow::anyhow!("delivery.reply_rules: {e}"))?;
    penguin_engine::store::fences::check_partition_count(&deps.pg, deps.config.node.partitions)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let sealer = penguin_engine::secrets::Sealer::from_config(&deps.config.secrets)
        .map_err(|e| anyhow::anyhow!("secrets: {e}"))?
        .map(Arc::new);
    let ctx = Arc::new(EngineContext {
        signers: crate::signers::SignerCache::new(
            sealer,
            std::time::Duration::from_secs(deps.config.domains.signer_cache_secs),
        ),
        routes: RouteTable::new(&deps.config.delivery.routes),
        resolver,
        providers: ProviderTable::from_config(&deps.config.delivery),
        reply_rules,
        queue: RedisQueue::new(deps.redis),
        campaigns: CampaignCache::new(RenderBudget::from(&deps.config.templates)),
        renderer: Renderer::new(&deps.config.templates),
        config: deps.config,
        pg: deps.pg,
        clock: deps.clock,
        directory: Directory::default(),
        ownership,
        stopped_campaigns: Default::default(),
        wakeups: Default::default(),
        metrics: deps.metrics,
        sent: Default::default(),
        started_at_ms: penguin_engine::clock::unix_ms(),
        drained: watch::channel(false).0,
        readiness: deps.readiness,
        lease_deadline_ms: Default::default(),
        monotonic_origin: std::time::Instant::now(),
        fences: Default::default(),
        abandoned: Default::default(),
    });
    let (supervisor, join) = Actor::spawn(None, EngineSupervisor, ctx.clone()).await?;
    Ok(EngineHandle {
        supervisor,
        join,
        ctx,
    })
}

impl EngineHandle {
    /// Stops the node in order (see the module doc) and waits until it has.
    pub async fn shutdown(self) {
        let _ = self
            .supervisor
            .call(EngineMsg::Shutdown, Some(Duration::from_secs(300)))
            .await;
        let _ = self.join.await;
    }

    /// Resolves once a drain request (`POST /v1/nodes/{id}/drain`) has handed
    /// every tenant of this node off; the process should then shut down.
    pub async fn drained(&self) {
        let mut drained = self.ctx.drained.subscribe();
        let _ = drained.wait_for(|done| *done).await;
    }

    /// The partitions this node owns right now.
    pub fn owned_partitions(&self) -> Vec<u32> {
        self.ctx.owned().partitions.clone()
    }

    /// The tenants with a Tenant actor on this node now (those with work).
    pub fn active_tenants(&self) -> Vec<Uuid> {
        self.ctx.directory.tenant_ids()
    }

    /// The live Ip actor of `ip`, if this node runs it (fault-injection tests kill it).
    pub fn ip_actor(&self, ip: Uuid) -> Option<ActorRef<IpMsg>> {
        self.ctx.directory.ip(ip)
    }

    /// (feeder rounds, tenant pops) since the engine started.
    pub fn wakeups(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let w = &self.ctx.wakeups;
        (w.feeder_rounds.load(Relaxed), w.tenant_pops.load(Relaxed))
    }
}
