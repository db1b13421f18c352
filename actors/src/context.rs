//! The state every actor of one node shares: configuration, pools, the clock, the
//! route table, the campaign cache, the actor directory, what this node owns, and
//! the campaigns known to be paused. Built once by [`crate::start_engine`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use deadpool_postgres::Pool;
use penguin_config::Config;
use penguin_engine::clock::SharedClock;
use penguin_engine::dns::MxResolver;
use penguin_engine::partition::{self, Partition};
use penguin_engine::provider::ProviderTable;
use penguin_engine::queue::RedisQueue;
use penguin_engine::reply_rules::ReplyRules;
use penguin_engine::route::RouteTable;
use penguin_engine::store::fences::Epoch;
use penguin_engine::store::routing::IpSpec;
use tokio::sync::watch;
use uuid::Uuid;

use crate::campaigns::CampaignCache;
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::render::Renderer;

/// The partitions whose lease this node holds right now (sorted), and the IPs
/// of their tenants. A tenant is owned when its partition is.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ownership {
    pub partitions: Vec<Partition>,
    pub ips: Vec<IpSpec>,
}

impl Ownership {
    /// Whether `partition` is owned.
    pub fn has(&self, partition: Partition) -> bool {
        self.partitions.binary_search(&partition).is_ok()
    }
}

pub struct EngineContext {
    pub config: Arc<Config>,
    pub pg: Pool,
    pub queue: RedisQueue,
    pub clock: SharedClock,
    pub routes: RouteTable,
    /// MX resolution (cached by TTL) for domains without a configured route.
    pub resolver: Arc<dyn MxResolver>,
    pub providers: ProviderTable,
    pub reply_rules: ReplyRules,
    pub campaigns: CampaignCache,
    /// DKIM signers per (tenant, From domain), opened with `[secrets] master_key`.
    pub signers: crate::signers::SignerCache,
    /// Template renders: off the runtime, bounded in number and time.
    pub renderer: Renderer,
    pub directory: Directory,
    /// Written by Cluster only.
    pub ownership: watch::Sender<Arc<Ownership>>,
    /// Campaigns a control notification said are paused or cancelled. A speed-up
    /// only: delivery workers skip them at once; Postgres claims are the guarantee.
    pub stopped_campaigns: RwLock<HashSet<Uuid>>,
    /// How often the actors that poll woke up (tests count them while jobs wait).
    pub wakeups: Wakeups,
    /// This node's metrics registry (`/metrics` of its API shows it).
    pub metrics: Metrics,
    /// Messages this node handed to a receiving server (2xx), for its membership
    /// record's send rate.
    pub sent: std::sync::atomic::AtomicU64,
    /// When this node started (unix ms).
    pub started_at_ms: i64,
    /// Set by Cluster when a drain request finished: every tenant handed off.
    pub drained: watch::Sender<bool>,
    /// The node's phase, moved by Cluster (ready after its first membership
    /// round, draining once asked to drain); read by `/health/ready`.
    pub readiness: penguin_engine::readiness::Readiness,
    /// Until when (ms on [`EngineContext::monotonic_ms`]) the leases this node
    /// holds are surely still its own: the start of the last successful renewal
    /// plus the lease TTL, less a tenth. Nothing is popped, claimed or sent past
    /// it, so a node the OS paused longer than a lease (or cut off from Redis)
    /// stops before another node can have taken its tenants over.
    pub lease_deadline_ms: std::sync::atomic::AtomicI64,
    /// The origin of [`EngineContext::monotonic_ms`].
    pub monotonic_origin: std::time::Instant,
    /// The fencing token this node raised when it took each partition it works
    /// (owned or being handed off). Written by Cluster only; every job write of
    /// a tenant of the partition carries it (`penguin_engine::store::fences`).
    pub fences: RwLock<HashMap<Partition, Epoch>>,
    /// Jobs a worker left `sending` because the lease was not surely held
    /// (tenant, job, the epoch and the claim id it was claimed under). Once a
    /// renewal shows the lease still held under that epoch, Cluster returns
    /// them to `pending`; if another node took the tenant, its takeover already did.
    pub abandoned: std::sync::Mutex<Vec<(Uuid, Uuid, Epoch, Uuid)>>,
}

/// Wake-up counters of this node's polling-prone actors.
#[derive(Debug, Default)]
pub struct Wakeups {
    /// Feeder rounds (each reads Postgres).
    pub feeder_rounds: std::sync::atomic::AtomicU64,
    /// Tenant pops (each may read Redis).
    pub tenant_pops: std::sync::atomic::AtomicU64,
}

pub type Ctx = Arc<EngineContext>;

impl EngineContext {
    pub fn owned(&self) -> Arc<Ownership> {
        self.ownership.borrow().clone()
    }

    /// Wall-clock unix milliseconds, for Redis in-flight deadlines. Those are
    /// liveness timeouts ("this pop was not acknowledged in time"), not calendar
    /// time: a test moving the engine's clock by hours must not expire the jobs a
    /// tenant is routing at that moment (which would put duplicates in its lists).
    pub fn inflight_now_ms(&self) -> i64 {
        penguin_engine::clock::unix_ms()
    }

    /// Milliseconds since this node started, on the monotonic clock.
    pub fn monotonic_ms(&self) -> i64 {
        self.monotonic_origin.elapsed().as_millis() as i64
    }

    /// Whether this node's leases are still surely held (see `lease_deadline_ms`).
    pub fn lease_valid(&self) -> bool {
        self.monotonic_ms()
            < self
                .lease_deadline_ms
                .load(std::sync::atomic::Ordering::Acquire)
    }

    /// After a renewal that started at `renewed_at_ms` (monotonic) succeeded.
    pub fn leases_renewed(&self, renewed_at_ms: i64) {
        let ttl = self.config.node.lease_ttl_ms as i64;
        self.lease_deadline_ms.store(
            renewed_at_ms + ttl - ttl / 10,
            std::sync::atomic::Ordering::Release,
        );
    }

    /// The partition of `tenant`.
    pub fn partition(&self, tenant: Uuid) -> Partition {
        partition::of(tenant, self.config.node.partitions)
    }

    /// Whether this node owns `tenant` (holds its partition's lease) now.
    pub fn owns(&self, tenant: Uuid) -> bool {
        self.owned().has(self.partition(tenant))
    }

    /// This node's token for `tenant`'s partition, if it took the partition.
    pub fn fence(&self, tenant: Uuid) -> Option<Epoch> {
        self.fences
            .read()
            .expect("fences lock")
            .get(&self.partition(tenant))
            .copied()
    }

    /// The tokens of `tenants` whose partition this node took (the others are
    /// left out).
    pub fn fences_of(&self, tenants: &[Uuid]) -> Vec<(Uuid, Epoch)> {
        let fences = self.fences.read().expect("fences lock");
        tenants
            .iter()
            .filter_map(|t| fences.get(&self.partition(*t)).map(|epoch| (*t, *epoch)))
            .collect()
    }

    pub fn is_stopped(&self, campaign: Uuid) -> bool {
        self.stopped_campaigns
            .read()
            .expect("stopped campaigns lock")
            .contains(&campaign)
    }

    pub fn set_stopped(&self, campaign: Uuid, stopped: bool) {
        let mut set = self
            .stopped_campaigns
            .write()
            .expect("stopped campaigns lock");
        if stopped {
            set.insert(campaign);
        } else {
            set.remove(&campaign);
        }
    }
}
