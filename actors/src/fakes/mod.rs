//! Fakes for the actor tests (compiled for tests only): a node context whose
//! Postgres and Redis pools point nowhere (they are never asked), in-memory
//! [`TenantPorts`] (a tenant's Redis lists, its campaign pools, the jobs
//! postponed in Postgres), and a stand-in Ip actor that only counts the jobs it
//! holds; [`ip`] has the Ip actor's fakes. The tests run the real actors
//! against them and count.

pub(crate) mod ip;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use penguin_config::Config;
use penguin_engine::clock::ManualClock;
use penguin_engine::db::StoreError;
use penguin_engine::dns::FakeResolver;
use penguin_engine::message::RenderBudget;
use penguin_engine::payload::{JobPayload, JobV1};
use penguin_engine::provider::ProviderTable;
use penguin_engine::queue::{Popped, QueueError, RedisQueue};
use penguin_engine::reply_rules::ReplyRules;
use penguin_engine::route::RouteTable;
use penguin_engine::store::fences::Epoch;
use penguin_engine::store::routing::IpSpec;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::campaigns::CampaignCache;
use crate::context::{Ctx, EngineContext};
use crate::directory::Directory;
use crate::ip::IpMsg;
use crate::render::Renderer;
use crate::tenant_ports::TenantPorts;

/// When the engine's clock stands in the actor tests: 10:30 UTC.
pub(crate) const NOW: OffsetDateTime = time::macros::datetime!(2026-12-06 10:30 UTC);

/// A node context with `config`, leases held, the clock standing at [`NOW`],
/// and pools to a closed port: an actor that reached for Postgres or Redis
/// instead of its ports would fail.
pub(crate) fn context(config: Config) -> Ctx {
    let mut config = config;
    config.database.url = "postgres://nobody@127.0.0.1:9/none".into();
    config.database.acquire_timeout_ms = 200;
    config.redis.url = "redis://127.0.0.1:9".into();
    let pg = penguin_engine::db::pg_pool(&config.database).unwrap();
    let redis = penguin_engine::queue::redis_pool(&config.redis).unwrap();
    let ctx = EngineContext {
        routes: RouteTable::new(&config.delivery.routes),
        resolver: Arc::new(FakeResolver::new()),
        providers: ProviderTable::from_config(&config.delivery),
        reply_rules: ReplyRules::new(&config.delivery.reply_rules).unwrap(),
        queue: RedisQueue::new(redis),
        campaigns: CampaignCache::new(RenderBudget::from(&config.templates)),
        signers: crate::signers::SignerCache::new(None, std::time::Duration::from_secs(60)),
        renderer: Renderer::new(&config.templates),
        config: Arc::new(config),
        pg,
        clock: Arc::new(ManualClock::new(NOW)),
        directory: Directory::default(),
        ownership: watch::channel(Default::default()).0,
        stopped_campaigns: Default::default(),
        wakeups: Default::default(),
        sent: Default::default(),
        started_at_ms: penguin_engine::clock::unix_ms(),
        drained: watch::channel(false).0,
        readiness: Default::default(),
        lease_deadline_ms: Default::default(),
        monotonic_origin: std::time::Instant::now(),
        fences: Default::default(),
        abandoned: Default::default(),
        metrics: crate::metrics::Metrics::new(Arc::new(metrics::NoopRecorder)),
    };
    // The leases are held for the whole test.
    ctx.lease_deadline_ms.store(i64::MAX, Ordering::Release);
    Arc::new(ctx)
}

/// An active, warm IP of `tenant`.
pub(crate) fn ip_spec(tenant: Uuid, last: u8) -> IpSpec {
    IpSpec {
        tenant_id: tenant,
        id: Uuid::new_v4(),
        address: std::net::IpAddr::from([127, 0, 0, last]),
        helo_name: format!("ip{last}.test"),
        active: true,
        status_reason: None,
        paused_until: None,
        warmup_schedule: None,
        daily_volumes: None,
        warmup_day: 0,
        timezone: "UTC".into(),
        active_hours_start: 0,
        active_hours_end: 24,
        rate_factor: 1.0,
        created_at: OffsetDateTime::now_utc(),
    }
}

/// A bulk job (normal band) of `campaign`, as the feeder pushes it.
pub(crate) fn job(tenant: Uuid, campaign: Uuid, n: usize) -> Popped {
    job_with_priority(tenant, campaign, n, 100)
}

/// A job of `campaign` with `priority` (≤ 50: the urgent lane).
pub(crate) fn job_with_priority(tenant: Uuid, campaign: Uuid, n: usize, priority: i32) -> Popped {
    let payload = JobPayload::V1(JobV1 {
        job_id: Uuid::new_v4(),
        tenant_id: tenant,
        campaign_id: campaign,
        priority,
        recipient: format!("lead{n}@example.test"),
        fields_json: "{}".into(),
        attempts: 0,
        due_ms: 0,
    });
    Popped {
        raw: payload.encode().unwrap(),
        payload,
    }
}

/// What [`FakePorts`] saw.
#[derive(Default)]
pub(crate) struct PortsLog {
    /// Jobs waiting in the tenant's lists, in order.
    pub lists: VecDeque<Popped>,
    /// Jobs popped and not acknowledged (raw bytes).
    pub inflight: Vec<Vec<u8>>,
    /// The `max` of every pop that asked for at least one job.
    pub pops: Vec<usize>,
    /// Jobs popped, in all.
    pub popped: usize,
    /// Jobs returned to Postgres: their ids and `run_at`.
    pub postponed: Vec<(Vec<Uuid>, OffsetDateTime)>,
}

/// In-memory Redis lists of one tenant, campaign pools, and a Postgres that
/// takes postponed jobs.
pub(crate) struct FakePorts {
    pub log: Mutex<PortsLog>,
    pub pools: HashMap<Uuid, Vec<Uuid>>,
}

impl FakePorts {
    pub(crate) fn new(jobs: Vec<Popped>, pools: HashMap<Uuid, Vec<Uuid>>) -> Arc<FakePorts> {
        Arc::new(FakePorts {
            log: Mutex::new(PortsLog {
                lists: jobs.into(),
                ..PortsLog::default()
            }),
            pools,
        })
    }

    pub(crate) fn popped(&self) -> usize {
        self.log.lock().unwrap().popped
    }
}

#[async_trait]
impl TenantPorts for FakePorts {
    async fn pop(
        &self,
        _tenant: Uuid,
        max: usize,
        _deadline_ms: i64,
    ) -> Result<(Vec<Popped>, usize), QueueError> {
        let mut log = self.log.lock().unwrap();
        if max == 0 {
            return Ok((Vec::new(), 0));
        }
        log.pops.push(max);
        // Like the three Redis lists: the most urgent band first, each in order.
        let mut waiting: Vec<Popped> = log.lists.drain(..).collect();
        waiting.sort_by_key(|p| p.payload.job().band());
        log.lists = waiting.into();
        let n = max.min(log.lists.len());
        let popped: Vec<Popped> = log.lists.drain(..n).collect();
        log.popped += popped.len();
        log.inflight.extend(popped.iter().map(|p| p.raw.clone()));
        Ok((popped, 0))
    }

    async fn ack(&self, _tenant: Uuid, raws: &[&[u8]]) -> Result<(), QueueError> {
        let mut log = self.log.lock().unwrap();
        log.inflight.retain(|raw| !raws.contains(&raw.as_slice()));
        Ok(())
    }

    async fn held(&self, _tenant: Uuid) -> Result<usize, QueueError> {
        let log = self.log.lock().unwrap();
        Ok(log.lists.len() + log.inflight.len())
    }

    async fn campaign_ips(&self, _tenant: Uuid, campaign: Uuid) -> Result<Vec<Uuid>, StoreError> {
        Ok(self.pools.get(&campaign).cloned().unwrap_or_default())
    }

    async fn postpone(
        &self,
        _tenant: Uuid,
        _epoch: Epoch,
        jobs: &[Uuid],
        run_at: OffsetDateTime,
        _now: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        let mut log = self.log.lock().unwrap();
        log.postponed.push((jobs.to_vec(), run_at));
        Ok(Some(jobs.len() as u64))
    }
}

/// What a stand-in Ip actor holds.
#[derive(Default)]
pub(crate) struct Held {
    /// Jobs delivered to it and not yet given back by the test, in order.
    pub jobs: Vec<Popped>,
    /// The most it ever held at once.
    pub most: usize,
    /// Jobs delivered to it, in all.
    pub total: usize,
}

/// A stand-in for an Ip actor: takes `Deliver`ed jobs and holds them until the
/// test gives them back (and returns their credit to the tenant itself).
pub(crate) struct FakeIp;

impl Actor for FakeIp {
    type Msg = IpMsg;
    type State = Arc<Mutex<Held>>;
    type Arguments = Arc<Mutex<Held>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<IpMsg>,
        held: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(held)
    }

    async fn handle(
        &self,
        _myself: ActorRef<IpMsg>,
        msg: IpMsg,
        held: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let IpMsg::Deliver(batch) = msg {
            let mut held = held.lock().unwrap();
            held.total += batch.len();
            held.jobs.extend(batch);
            held.most = held.most.max(held.jobs.len());
        }
        Ok(())
    }
}

/// Polls `probe` every 20 ms until it holds; panics naming `what` after `within`.
pub(crate) async fn wait_until(what: &str, within: Duration, probe: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !probe() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A quiet period: polls `read` every 50 ms (calling `nudge` before each)
/// until it gave the same value `polls` times in a row, and returns that value;
/// panics naming `what` if it never holds still within 5 s. The caller then
/// asserts the value exactly, so a late extra pop or claim shows.
pub(crate) async fn stays<T: PartialEq + std::fmt::Debug>(
    what: &str,
    polls: usize,
    nudge: impl Fn(),
    read: impl Fn() -> T,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut last = read();
    let mut same = 0;
    while same < polls {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still changing at the deadline ({last:?})"
        );
        nudge();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = read();
        if now == last {
            same += 1;
        } else {
            (last, same) = (now, 0);
        }
    }
    last
}
