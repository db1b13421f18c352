//! `penguin faults`: the fault harness. Runs campaigns on N engine nodes
//! (separate `penguin serve` processes of this binary, [`nodes`]) against the
//! configured Postgres and Redis and a loopback sink of its own, injects the
//! scheduled faults ([`inject`]) at evenly spread points of the campaigns,
//! waits until every job settled, and judges the outcome against what the sink
//! received ([`report`]): lost, copied and unexpected messages, per-IP cap
//! overshoot, recovery time per fault. Exits non-zero when a check fails.
//!
//! The end-to-end test `tests/e2e/faults_harness.rs` runs it as operators do.

pub mod diagnosis;
pub mod inject;
pub mod nodes;
pub mod report;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use penguin_config::{Config, Route};
use penguin_engine::membership::Membership;
use penguin_engine::sink::{Rule, RuleStage, Sink, SinkConfig, SinkHandle};
use penguin_engine::{clock, db, queue};
use uuid::Uuid;

use crate::scenario::{Scenario, ScenarioSpec};
use inject::{FaultKind, Schedule};
use nodes::Nodes;
use report::{FaultDetail, FaultRecord, Inputs, JobRow, Report};

#[derive(Debug, Args)]
pub struct FaultsArgs {
    /// TOML configuration of the nodes (environment variables override it):
    /// database, redis, admin token, lease TTL, limits… Delivery routes are
    /// replaced by the harness' own sink. Given twice, the last one counts.
    #[arg(long, overrides_with = "config")]
    pub config: Option<PathBuf>,
    /// Engine nodes (separate processes).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Tenants, each with one IP (127.0.0.2, 127.0.0.3, …) and one campaign.
    #[arg(long, default_value_t = 6)]
    pub tenants: usize,
    /// Leads per campaign.
    #[arg(long, default_value_t = 400)]
    pub leads: usize,
    /// Faults, spread evenly over the campaigns: e.g.
    /// `kill=20,pause=2,redis-flush=2,redis-restart,postgres-restart`.
    #[arg(long, default_value = "kill=6")]
    pub faults: Schedule,
    /// Time the sink takes for each SMTP transaction, so faults meet
    /// transactions under way.
    #[arg(long, default_value_t = 20)]
    pub smtp_delay_ms: u64,
    /// How long a `pause` stops its node (default: 1.5 × node.lease_ttl_ms).
    #[arg(long)]
    pub pause_ms: Option<u64>,
    /// How long a simulated `postgres-restart` refuses connections.
    #[arg(long, default_value_t = 3_000)]
    pub outage_ms: u64,
    /// Shell command that restarts Redis (returning once it is back); without
    /// it, `redis-restart` empties Redis and drops every client connection.
    #[arg(long)]
    pub redis_restart_cmd: Option<String>,
    /// Shell command that restarts Postgres (returning once it is back);
    /// without it, `postgres-restart` is an outage of the database.
    #[arg(long)]
    pub postgres_restart_cmd: Option<String>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write what the sink received (its records, a JSON array), so the
    /// verdict can be checked against the raw evidence.
    #[arg(long)]
    pub sink_record: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
}

pub async fn run(args: FaultsArgs) -> anyhow::Result<()> {
    anyhow::ensure!((1..=16).contains(&args.nodes), "--nodes must be 1..=16");
    anyhow::ensure!(
        (1..=200).contains(&args.tenants),
        "--tenants must be 1..=200"
    );
    anyhow::ensure!(
        (1..=1_000_000).contains(&args.leads),
        "--leads must be 1..=1000000"
    );
    let sink = Sink::start(SinkConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))).await?;
    let outcome = run_with_sink(&args, &sink).await;
    let record = args
        .sink_record
        .as_ref()
        .map(|path| (path, serde_json::to_vec(&sink.messages())));
    sink.shutdown().await;
    if let Some((path, record)) = record {
        std::fs::write(path, record?).with_context(|| format!("writing {}", path.display()))?;
    }
    let report = outcome?;
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.failures.is_empty() {
        bail!("the fault run failed: {}", report.failures.join("; "));
    }
    Ok(())
}

/// What the run shares between its steps.
struct Run<'a> {
    args: &'a FaultsArgs,
    config: Config,
    sink: &'a SinkHandle,
    pg: deadpool_postgres::Pool,
    membership: Membership,
    redis: penguin_engine::queue::RedisPool,
    tenants: Vec<Uuid>,
    all_ips: HashSet<IpAddr>,
    started: Instant,
    /// `started` in unix ms.
    started_ms: i64,
}

async fn run_with_sink(args: &FaultsArgs, sink: &SinkHandle) -> anyhow::Result<Report> {
    let mut config = Config::layered(args.config.as_deref())?;
    config.generate_missing_secrets();
    config.delivery.routes = vec![Route {
        domain: "*".into(),
        host: "127.0.0.1".into(),
        port: sink.smtp_addr().port(),
    }];
    config.validate()?;
    sink.set_rules(vec![Rule {
        recipient_pattern: "*".into(),
        stage: RuleStage::DataEnd,
        reply: None,
        times: None,
        delay_ms: Some(args.smtp_delay_ms),
        drop_connection: false,
    }])?;
    let pg = db::pg_pool(&config.database).context("database pool")?;
    let redis = queue::redis_pool(&config.redis).context("redis pool")?;
    let dir = std::env::temp_dir().join(format!("penguin-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut nodes = Nodes::start(&dir, &config, "faults", args.nodes).await?;
    let outcome = async {
        let addresses: Vec<String> = (0..args.tenants)
            .map(|i| format!("127.0.{}.{}", (i + 2) / 250, (i + 2) % 250))
            .collect();
        let spec = ScenarioSpec {
            prefix: "faults".into(),
            tenants: addresses.iter().map(|a| vec![a.clone()]).collect(),
            leads_per_tenant: args.leads,
            recipient_domains: 10,
            body_bytes: 1_000,
        };
        let scenario = Scenario::setup(nodes.api_url(), &config.api.admin_token, &pg, &spec)
            .await
            .context("setting up the campaigns")?;
        let mut run = Run {
            args,
            sink,
            pg: pg.clone(),
            membership: Membership::new(redis.clone()),
            redis: redis.clone(),
            tenants: scenario.tenants.iter().map(|t| t.id).collect(),
            all_ips: addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            started: Instant::now(),
            started_ms: clock::unix_ms(),
            config: config.clone(),
        };
        run.wait_owned().await?;
        scenario.start().await.context("starting the campaigns")?;
        run.started = Instant::now();
        run.started_ms = clock::unix_ms();
        println!(
            "penguin faults: {} nodes, {} campaigns of {} leads, faults: {}",
            args.nodes,
            args.tenants,
            args.leads,
            args.faults
                .0
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut faults = Vec::new();
        let count = args.faults.0.len() as u64;
        // What can be sent this hour: the hourly caps may hold some back.
        let cap = config.limits.ip_hourly_cap as u64;
        let sendable = match cap {
            0 => scenario.total,
            cap => scenario.total.min(cap * args.tenants as u64),
        };
        for (i, kind) in args.faults.0.iter().enumerate() {
            let target = sendable * (i as u64 + 1) / (count + 1);
            if !run.wait_progress(target).await? {
                println!(
                    "  the campaigns settled at {} messages: {} faults not injected",
                    sink.stats().unique_message_ids,
                    args.faults.0.len() - i
                );
                break;
            }
            let victim = match kind.hits_a_node() {
                true => Some(run.victim(&nodes.ids(), i).await?),
                false => None,
            };
            let fault = run.inject(&mut nodes, *kind, victim.as_deref()).await?;
            println!(
                "  {:>6.1} s  {}{} at {} of {} messages",
                fault.at_ms as f64 / 1000.0,
                kind,
                fault
                    .node
                    .as_deref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default(),
                fault.progress,
                scenario.total
            );
            faults.push(fault);
        }
        run.wait_settled().await?;
        run.judge(faults).await
    }
    .await;
    if outcome.is_err() {
        for id in nodes.ids() {
            eprintln!("--- {id} ---\n{}", nodes.log_tail(&id));
        }
    }
    nodes.stop(Duration::from_secs(30));
    // The nodes' logs stay when something went wrong.
    match &outcome {
        Ok(report) if report.failures.is_empty() => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        _ => eprintln!("node logs: {}", dir.display()),
    }
    outcome
}

impl Run<'_> {
    /// The run's tenants in the partitions `node` holds.
    fn tenants_of(&self, node: &penguin_engine::membership::NodeRecord) -> Vec<Uuid> {
        let count = self.config.node.partitions;
        self.tenants
            .iter()
            .filter(|t| {
                node.partitions
                    .contains(&penguin_engine::partition::of(**t, count))
            })
            .copied()
            .collect()
    }

    /// The node fault `i` hits: the `i`-th node in turn, or the next after it
    /// that holds some of the run's tenants. A node holding none (tenants hash
    /// to partitions, so with few tenants one node may get none) would make a
    /// fault that stops nothing, and its recovery could not be measured.
    ///
    /// Right after a Redis fault the membership records are gone until the
    /// nodes' next heartbeats, so it waits for them for up to two lease TTLs.
    async fn victim(&self, ids: &[String], i: usize) -> anyhow::Result<String> {
        let wait = Duration::from_millis(2 * self.config.node.lease_ttl_ms);
        let deadline = Instant::now() + wait;
        loop {
            let live = self.membership.live(clock::unix_ms()).await?;
            let holds = |id: &str| {
                live.iter()
                    .find(|n| n.id == id)
                    .is_some_and(|n| !self.tenants_of(n).is_empty())
            };
            let found = (0..ids.len())
                .map(|k| &ids[(i + k) % ids.len()])
                .find(|id| holds(id));
            match found {
                Some(id) => return Ok(id.clone()),
                None if Instant::now() > deadline => bail!(
                    "no live node held any of the run's tenants for {} ms",
                    wait.as_millis()
                ),
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn deadline(&self) -> Instant {
        self.started + Duration::from_secs(self.args.timeout_secs)
    }

    /// Waits until the live nodes own every tenant of the run.
    async fn wait_owned(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let live = self.membership.live(clock::unix_ms()).await?;
            let owned: HashSet<Uuid> = live.iter().flat_map(|n| self.tenants_of(n)).collect();
            if self.tenants.iter().all(|t| owned.contains(t)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the nodes did not take every tenant within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the sink received `target` distinct messages (true), or the
    /// run settled short of it (false).
    async fn wait_progress(&self, target: u64) -> anyhow::Result<bool> {
        let mut polls = 0u32;
        while self.sink.stats().unique_message_ids < target {
            if Instant::now() > self.deadline() {
                let state = diagnosis::snapshot(&self.pg, &self.redis, &self.tenants).await;
                bail!("the campaigns stalled before {target} messages:{state}");
            }
            polls += 1;
            if polls.is_multiple_of(40) && self.unsettled().await == Some(0) {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(true)
    }

    async fn inject(
        &self,
        nodes: &mut Nodes,
        kind: FaultKind,
        victim: Option<&str>,
    ) -> anyhow::Result<FaultRecord> {
        let progress = self.sink.stats().messages_accepted;
        let at_ms = self.started.elapsed().as_millis() as u64;
        let mut detail = FaultDetail {
            started_ms: clock::unix_ms(),
            ips: self.all_ips.clone(),
            ..FaultDetail::default()
        };
        let tenants = match victim {
            Some(victim) => {
                let live = self.membership.live(clock::unix_ms()).await?;
                live.into_iter()
                    .find(|n| n.id == victim)
                    .map(|n| self.tenants_of(&n))
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        let node = || victim.context("a node fault needs the node it hits");
        match kind {
            FaultKind::Kill => {
                let victim = node()?;
                nodes.signal(victim, "KILL")?;
                detail.transactions = self.sink.stats().transactions_begun;
                detail.unrecorded = self.sending_jobs(&tenants).await?;
                nodes.restart(victim).await?;
            }
            FaultKind::Pause => {
                let victim = node()?;
                nodes.signal(victim, "STOP")?;
                detail.transactions = self.sink.stats().transactions_begun;
                detail.unrecorded = self.sending_jobs(&tenants).await?;
                let ttl = self.config.node.lease_ttl_ms;
                let pause = self.args.pause_ms.unwrap_or(ttl * 3 / 2);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                nodes.signal(victim, "CONT")?;
            }
            FaultKind::RedisFlush => inject::redis_fault(&self.config.redis.url, false).await?,
            FaultKind::RedisRestart => match &self.args.redis_restart_cmd {
                Some(command) => inject::run_command("redis restart", command).await?,
                None => inject::redis_fault(&self.config.redis.url, true).await?,
            },
            FaultKind::PostgresRestart => match &self.args.postgres_restart_cmd {
                Some(command) => inject::run_command("postgres restart", command).await?,
                None => {
                    let outage = Duration::from_millis(self.args.outage_ms);
                    inject::postgres_outage(&self.config.database.url, outage).await?
                }
            },
        }
        if victim.is_some() {
            detail.ips = self.ips_of(&tenants).await?;
        }
        detail.ended_ms = clock::unix_ms();
        Ok(FaultRecord {
            kind,
            node: victim.map(str::to_string),
            at_ms,
            lasted_ms: (detail.ended_ms - detail.started_ms).max(0) as u64,
            progress,
            under_way: 0,
            recovery_ms: None,
            detail,
        })
    }

    /// Jobs of `tenants` claimed and without an outcome.
    async fn sending_jobs(&self, tenants: &[Uuid]) -> anyhow::Result<HashSet<Uuid>> {
        let client = self.pg.get().await?;
        let rows = client
            .query(
                "SELECT id FROM send_jobs WHERE tenant_id = ANY($1) AND status = 'sending'",
                &[&tenants],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn ips_of(&self, tenants: &[Uuid]) -> anyhow::Result<HashSet<IpAddr>> {
        let client = self.pg.get().await?;
        let rows = client
            .query(
                "SELECT host(address) FROM smtp_ips WHERE tenant_id = ANY($1)",
                &[&tenants],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<_, String>(0).parse().ok())
            .collect())
    }

    /// Waits until nothing of the run is `sending` and every other job that is
    /// not terminal waits: for a later `run_at`, or (`queued` or due) on an IP
    /// whose hourly cap is used (`ip_hourly_usage`; the run's IPs are on UTC).
    async fn wait_settled(&self) -> anyhow::Result<()> {
        while self.unsettled().await != Some(0) {
            if Instant::now() > self.deadline() {
                let state = diagnosis::snapshot(&self.pg, &self.redis, &self.tenants).await;
                bail!(
                    "the campaigns did not settle within {} s:{state}",
                    self.args.timeout_secs
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Jobs of the run that are not settled (see [`Run::wait_settled`]); `None`
    /// when Postgres cannot tell (it may be coming back from a fault).
    async fn unsettled(&self) -> Option<i64> {
        let counted = async {
            let client = self.pg.get().await?;
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM send_jobs j
                         WHERE j.tenant_id = ANY($1)
                           AND (j.status = 'sending'
                                OR ((j.status = 'queued'
                                     OR (j.status IN ('pending', 'deferred') AND j.run_at <= now()))
                                    AND NOT {CAP_USED}))"
                    ),
                    &[&self.tenants, &(self.config.limits.ip_hourly_cap as i32)],
                )
                .await?;
            Ok::<i64, anyhow::Error>(row.get(0))
        }
        .await;
        match counted {
            Ok(n) => Some(n),
            Err(err) => {
                tracing::debug!(error = %err, "reading job states failed");
                None
            }
        }
    }

    async fn judge(&self, faults: Vec<FaultRecord>) -> anyhow::Result<Report> {
        let client = self.pg.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT j.id, j.status, j.run_at > now() OR {CAP_USED}
                     FROM send_jobs j WHERE j.tenant_id = ANY($1)"
                ),
                &[&self.tenants, &(self.config.limits.ip_hourly_cap as i32)],
            )
            .await?;
        let jobs: Vec<JobRow> = rows
            .iter()
            .map(|r| JobRow {
                id: r.get(0),
                status: r.get(1),
                waits: r.get(2),
            })
            .collect();
        let messages = self.sink.messages();
        Ok(report::judge(Inputs {
            nodes: self.args.nodes,
            tenants: self.tenants.len(),
            jobs: &jobs,
            messages: &messages,
            faults,
            ip_hourly_cap: self.config.limits.ip_hourly_cap,
            ip_daily_volume: self.config.limits.warm_daily_volume,
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            started_ms: self.started_ms,
        }))
    }
}

/// SQL: every IP of job `j`'s tenant has reserved its hourly cap ($2, 0 = none)
/// in the current UTC hour.
const CAP_USED: &str = "($2 > 0 AND NOT EXISTS (
    SELECT 1 FROM smtp_ips i
    WHERE i.tenant_id = j.tenant_id
      AND coalesce((SELECT u.reserved FROM ip_hourly_usage u
                    WHERE u.tenant_id = i.tenant_id AND u.ip_id = i.id
                      AND u.hour = date_trunc('hour', now())), 0) < $2))";
