//! One engine node in this process: pools, migrations, the actor tree, the
//! control API on `api.listen` and the public links on `public.listen` (one
//! listener when `public.share_api_listener` says so), and the periodic SMTP
//! check behind `/health/email`, started and stopped together. `penguin serve` runs one until
//! SIGTERM/Ctrl-C; the demo, the benchmark and the end-to-end tests start their own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusRecorder;
use penguin_actors::{EngineDeps, EngineHandle, start_engine};
use penguin_config::Config;
use penguin_engine::clock::{SharedClock, SystemClock};
use penguin_engine::dns::MxResolver;
use penguin_engine::readiness::{Phase, Readiness};
use penguin_engine::{db, queue};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running node.
pub struct Node {
    pub api_addr: SocketAddr,
    /// Where `/t/*` and `/u/*` answer (`api_addr` when shared).
    pub public_addr: SocketAddr,
    pub config: Arc<Config>,
    /// The engine's pool (the API has its own).
    pub pg: deadpool_postgres::Pool,
    pub redis: penguin_engine::queue::RedisPool,
    engine: EngineHandle,
    readiness: Readiness,
    api_stop: oneshot::Sender<()>,
    api_task: JoinHandle<()>,
    _email_checker: penguin_api::email_health::EmailChecker,
    _domain_rechecker: penguin_api::domain_recheck::DomainRechecker,
}

/// How to start a node beyond its configuration.
pub struct NodeOptions {
    /// The node's own metrics registry: its actors and its listeners record
    /// there and its `/metrics` renders it (the caller runs its upkeep).
    pub metrics: Arc<PrometheusRecorder>,
    pub clock: SharedClock,
    /// MX resolution; `None` uses hickory configured by `[delivery.dns]`.
    pub resolver: Option<Arc<dyn MxResolver>>,
}

impl NodeOptions {
    /// A registry of its own and the wall clock.
    pub fn standalone() -> Self {
        Self {
            metrics: Arc::new(penguin_api::recorder::node_recorder()),
            clock: Arc::new(SystemClock),
            resolver: None,
        }
    }
}

impl Node {
    /// Connects, migrates (under the migration lock), starts the actors, then the API.
    pub async fn start(config: Arc<Config>, options: NodeOptions) -> anyhow::Result<Node> {
        // Two pools: the engine's (`database.max_connections`) and the API's
        // (`database.api_max_connections`), so API load never starves sending.
        let pg = db::pg_pool(&config.database).context("database pool")?;
        let api_pg = db::pg_pool(&config.database.api_pool()).context("API database pool")?;
        let redis = queue::redis_pool(&config.redis).context("redis pool")?;
        migrate_with_retry(&pg).await?;
        crate::node_twin::refuse_a_live_twin(&redis, &config.node).await?;
        let readiness = Readiness::default();
        let engine = start_engine(EngineDeps {
            config: config.clone(),
            pg: pg.clone(),
            redis: redis.clone(),
            clock: options.clock.clone(),
            resolver: options.resolver,
            metrics: penguin_actors::metrics::Metrics::new(options.metrics.clone())
                .with_slow_query_ms(config.database.slow_query_ms),
            readiness: readiness.clone(),
        })
        .await
        .context("starting the engine")?;
        let listeners = penguin_api::Listeners::bind(&config).await?;
        let api_addr = listeners.api_addr()?;
        let public_addr = listeners.public_addr()?;
        let (email_health, email_checker) = penguin_api::email_health::EmailHealth::start(
            config.delivery.routes.clone(),
            Duration::from_millis(config.api.email_health_interval_ms),
        );
        let domains = penguin_api::domain_kit::DomainKit::from_config(&config)
            .context("sending domains (secrets, DNS)")?;
        let domain_rechecker = penguin_api::domain_recheck::DomainRechecker::start(
            api_pg.clone(),
            domains.clone(),
            config.domains.recheck_hours,
            config.domains.rotation_grace_hours,
            options.metrics.clone(),
        );
        let state = penguin_api::AppState {
            config: config.clone(),
            pg: api_pg,
            redis: redis.clone(),
            metrics: options.metrics,
            limits: Arc::new(penguin_api::rate_limit::Limits::new(&config.api)),
            email_health,
            domains,
            clock: options.clock,
            readiness: readiness.clone(),
        };
        let (api_stop, stopped) = oneshot::channel::<()>();
        let api_task = tokio::spawn(penguin_api::serve(listeners, state, async move {
            let _ = stopped.await;
        }));
        tracing::info!(node = %config.node.id, api = %api_addr, public = %public_addr, "node started");
        Ok(Node {
            api_addr,
            public_addr,
            config,
            pg,
            redis,
            engine,
            readiness,
            api_stop,
            api_task,
            _email_checker: email_checker,
            _domain_rechecker: domain_rechecker,
        })
    }

    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    /// Where the node is in its life (`/health/ready` answers 200 only when ready).
    pub fn phase(&self) -> Phase {
        self.readiness.phase()
    }

    /// The control API's base URL (`/v1`, `/health`, `/metrics`, docs).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The public listener's base URL (`/t/*`, `/u/*`); what
    /// `tracking.base_url` stands for in front of this node.
    pub fn public_url(&self) -> String {
        format!("http://{}", self.public_addr)
    }

    /// Stops accepting HTTP requests on both listeners (in-flight ones finish),
    /// then stops the engine in order.
    pub async fn shutdown(self) {
        self.readiness.advance(Phase::Stopping);
        let _ = self.api_stop.send(());
        match tokio::time::timeout(Duration::from_secs(30), self.api_task).await {
            Ok(Err(err)) => tracing::warn!(error = %err, "the HTTP server task failed"),
            Err(_) => tracing::warn!("the HTTP listeners did not stop within 30 s"),
            Ok(Ok(())) => {}
        }
        self.engine.shutdown().await;
        tracing::info!("node stopped");
    }
}

/// Applies migrations, waiting up to a minute for the database to accept
/// connections (nodes often start together with their database).
pub async fn migrate_with_retry(pg: &deadpool_postgres::Pool) -> anyhow::Result<Vec<String>> {
    let mut delay = Duration::from_millis(100);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match db::migrate(pg).await {
            Ok(applied) => {
                for name in &applied {
                    tracing::info!(migration = %name, "applied");
                }
                return Ok(applied);
            }
            Err(err) if err.is_transient() && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %err, ?delay, "database not ready; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err).context("applying migrations"),
        }
    }
}
