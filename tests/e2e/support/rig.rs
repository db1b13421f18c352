//! A complete sending rig for scenario tests: a [`TestEnv`], a loopback SMTP sink,
//! and one engine node (actors + API) routed to that sink, plus helpers to set up
//! a scenario through the API and to check the sink against Postgres.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use penguin::node::{Node, NodeOptions};
use penguin::scenario::{Placement, Scenario, ScenarioSpec};
use penguin_config::{Config, Route};
use penguin_engine::clock::ManualClock;
use penguin_engine::dns::MxResolver;
use penguin_engine::sink::{Sink, SinkConfig, SinkHandle};

use super::quiet::{quiet_span, wait_until_quiet};
use super::{TestEnv, admin_token, wait_for, wait_for_showing};

pub struct Rig {
    pub env: TestEnv,
    pub sink: SinkHandle,
    pub node: Option<Node>,
    /// The node's configuration, for [`Rig::restart_node`].
    config: Arc<Config>,
}

/// What a rig's node uses besides its configuration.
#[derive(Default)]
pub struct RigOptions {
    /// A clock the test moves (retry schedules, hourly caps); wall clock otherwise.
    pub clock: Option<ManualClock>,
    /// MX resolution; hickory with the system's resolv.conf otherwise.
    pub resolver: Option<Arc<dyn MxResolver>>,
    /// Route only these domains to the sink (instead of `*`).
    pub routed_domains: Option<Vec<String>>,
    /// Run on a 3-master Redis Cluster ([`TestEnv::start_on_cluster`]).
    pub redis_cluster: bool,
}

impl RigOptions {
    /// The defaults, on a Redis Cluster when `redis_cluster`.
    pub fn on_redis(redis_cluster: bool) -> RigOptions {
        RigOptions {
            redis_cluster,
            ..RigOptions::default()
        }
    }
}

impl Rig {
    /// Starts the sink and a node; `tweak` adjusts the node's configuration.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Rig {
        Rig::start_with(tweak, RigOptions::default()).await
    }

    /// Like [`Rig::start`], with a controlled clock, resolver or routes.
    pub async fn start_with(tweak: impl FnOnce(&mut Config), options: RigOptions) -> Rig {
        let env = match options.redis_cluster {
            true => TestEnv::start_on_cluster().await,
            false => TestEnv::start().await,
        };
        let sink = Sink::start(SinkConfig::new(SocketAddr::from(([127, 0, 0, 1], 0))))
            .await
            .expect("sink starts");
        let mut config = env.config.clone();
        let routed = options.routed_domains.unwrap_or_else(|| vec!["*".into()]);
        config.delivery.routes = routed
            .into_iter()
            .map(|domain| Route {
                domain,
                host: "127.0.0.1".into(),
                port: sink.smtp_addr().port(),
            })
            .collect();
        tweak(&mut config);
        config.validate().expect("tweaked config is valid");
        // Each node records into a registry of its own: its `/metrics` shows its
        // work only, whatever the tests running beside it do.
        let mut node_options = NodeOptions {
            resolver: options.resolver,
            ..NodeOptions::standalone()
        };
        if let Some(clock) = options.clock {
            node_options.clock = Arc::new(clock);
        }
        let config = Arc::new(config);
        let node = Node::start(config.clone(), node_options)
            .await
            .expect("node starts");
        Rig {
            env,
            sink,
            node: Some(node),
            config,
        }
    }

    /// Starts a rig whose node runs on a [`ManualClock`] a minute ahead of
    /// Postgres' `now()` (which stamps jobs due at start), so a started campaign's
    /// jobs are due; the clock then moves only when the test says so.
    pub async fn start_with_clock(tweak: impl FnOnce(&mut Config)) -> (Rig, ManualClock) {
        let clock = ManualClock::new(time::OffsetDateTime::now_utc() + Duration::from_secs(60));
        let options = RigOptions {
            clock: Some(clock.clone()),
            ..RigOptions::default()
        };
        (Rig::start_with(tweak, options).await, clock)
    }

    /// Stops the node cleanly (its leases released); [`Rig::restart_node`]
    /// starts it again. Meanwhile [`Rig::node`] panics.
    pub async fn stop_node(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }

    /// Stops the node in order and starts a new one with the same configuration
    /// (wall clock, default resolver), as an operator restarting it would.
    pub async fn restart_node(&mut self) {
        self.restart_node_with(None).await;
    }

    /// Like [`Rig::restart_node`]; the new node runs on `clock` when given.
    pub async fn restart_node_with(&mut self, clock: Option<ManualClock>) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        let mut options = NodeOptions::standalone();
        if let Some(clock) = clock {
            options.clock = Arc::new(clock);
        }
        let node = Node::start(self.config.clone(), options)
            .await
            .expect("node restarts");
        self.node = Some(node);
    }

    /// Creates another campaign of the scenario's first tenant on its first IP and
    /// imports `emails` into it; returns the import answer.
    pub async fn import_into_new_campaign(
        &self,
        scenario: &Scenario,
        emails: &[&str],
    ) -> serde_json::Value {
        let tenant = &scenario.tenants[0];
        let campaign = scenario
            .client
            .create_campaign(
                &tenant.token,
                &serde_json::json!({
                    "name": "another", "from": "hello@e2e-1.test", "subject": "Hi", "text": "Hello",
                    "ip_ids": [tenant.ips[0].0.to_string()],
                }),
            )
            .await
            .expect("campaign created");
        let leads: Vec<serde_json::Value> = emails
            .iter()
            .map(|e| serde_json::json!({"email": e}))
            .collect();
        scenario
            .client
            .post(
                &format!("/v1/campaigns/{campaign}/leads"),
                &tenant.token,
                &serde_json::json!({ "leads": leads }),
            )
            .await
            .expect("leads imported")
    }

    /// The node's configuration (after the scenario's tweaks).
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("node running")
    }

    /// The node's `/metrics` page (its own registry: this node's work only).
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.node().api_url()))
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("a text page")
    }

    /// Sets up tenants, IPs, campaigns and leads through the API (nothing started).
    pub async fn scenario(&self, tenants: Vec<Vec<&str>>, leads_per_tenant: usize) -> Scenario {
        self.scenario_on(tenants, leads_per_tenant, &[], &[]).await
    }

    /// As [`Rig::scenario`], with tenant `i` worked by node `owners[i]` once the
    /// nodes `nodes` share the partitions (empty `owners`: anywhere).
    pub async fn scenario_on(
        &self,
        tenants: Vec<Vec<&str>>,
        leads_per_tenant: usize,
        nodes: &[&str],
        owners: &[&str],
    ) -> Scenario {
        let placement = (!owners.is_empty()).then(|| Placement {
            partitions: self.config.node.partitions,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            owners: owners.iter().map(|n| n.to_string()).collect(),
        });
        let spec = ScenarioSpec {
            prefix: "e2e".into(),
            tenants: tenants
                .into_iter()
                .map(|ips| ips.into_iter().map(str::to_string).collect())
                .collect(),
            leads_per_tenant,
            recipient_domains: 20,
            body_bytes: 500,
        };
        Scenario::setup_placed(
            &self.node().api_url(),
            admin_token(),
            &self.env.pg,
            &spec,
            placement.as_ref(),
        )
        .await
        .expect("scenario set up")
    }

    /// One tenant with one IP (127.0.0.2) and one campaign holding exactly `leads`
    /// (not started). `scenario.total` is the number of leads.
    pub async fn campaign_with_leads(&self, leads: &[&str]) -> Scenario {
        let mut scenario = self.scenario(vec![vec!["127.0.0.2"]], 0).await;
        let tenant = &scenario.tenants[0];
        let leads: Vec<serde_json::Value> = leads
            .iter()
            .map(|email| serde_json::json!({"email": email, "fields": {"first_name": "Pat"}}))
            .collect();
        let accepted = scenario
            .client
            .add_leads(&tenant.token, tenant.campaign, &leads, 1_000)
            .await
            .expect("leads accepted");
        scenario.total = accepted;
        scenario
    }

    /// Jobs of the whole database per state.
    pub async fn job_counts(&self) -> HashMap<String, i64> {
        self.env
            .psql("SELECT status, count(*) FROM send_jobs GROUP BY status")
            .await
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// Waits until exactly `n` jobs are in `state`.
    pub async fn wait_for_jobs(&self, state: &str, n: i64, timeout: Duration) {
        wait_for(&format!("{n} jobs {state}"), timeout, || async {
            (self.job_counts().await.get(state).copied().unwrap_or(0) == n).then_some(())
        })
        .await;
    }

    /// Waits until the sink has accepted at least `n` messages.
    pub async fn wait_for_sink(&self, n: u64, timeout: Duration) {
        wait_for(&format!("{n} messages at the sink"), timeout, || async {
            (self.sink.stats().messages_accepted >= n).then_some(())
        })
        .await;
    }

    /// Waits until every job of the scenario is terminal.
    /// A timeout shows the jobs per state, so a stuck run says where it stuck.
    pub async fn wait_until_done(&self, scenario: &Scenario, timeout: Duration) {
        wait_for_showing("every job terminal", timeout, || async {
            let progress = scenario.progress().await.ok();
            if progress.is_some_and(|p| p.terminal >= scenario.total) {
                return Ok(());
            }
            let counts: BTreeMap<String, i64> = self.job_counts().await.into_iter().collect();
            Err(counts)
        })
        .await;
    }

    /// Waits until the sink (messages accepted, transactions begun) and the
    /// jobs per state in Postgres stay unchanged over a quiet period
    /// ([`super::quiet`]): a late copy or a late write shows before the test
    /// judges the counts. Returns the job counts it settled on.
    pub async fn wait_until_quiet(&self) -> BTreeMap<String, i64> {
        let span = quiet_span(&self.config);
        let (_, counts) = wait_until_quiet(
            "the sink and the jobs",
            span,
            Duration::from_secs(30),
            || async {
                let stats = self.sink.stats();
                let counts: BTreeMap<String, i64> = self.job_counts().await.into_iter().collect();
                Some(((stats.messages_accepted, stats.transactions_begun), counts))
            },
        )
        .await;
        counts
    }

    /// Checks what the sink received against Postgres: every job `sent`, every
    /// sent job's Message-ID received, nothing unexpected, and each message left
    /// from an IP of its own tenant's pool. Returns the number of extra copies.
    pub async fn check_delivered(&self, scenario: &Scenario) -> u64 {
        let rows = self
            .env
            .psql("SELECT status, count(*) FROM send_jobs GROUP BY status")
            .await;
        let counts: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(
            counts.get("sent").copied().unwrap_or(0) as u64,
            scenario.total,
            "every job must end sent: {counts:?}"
        );
        let expected: HashSet<String> = self
            .env
            .psql("SELECT message_id FROM send_jobs WHERE status = 'sent'")
            .await
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        assert_eq!(
            expected.len() as u64,
            scenario.total,
            "message ids are unique per job"
        );

        // Which source addresses each tenant may use, by its From domain.
        let mut pools: HashMap<String, HashSet<IpAddr>> = HashMap::new();
        for (index, tenant) in scenario.tenants.iter().enumerate() {
            let from_domain = format!("e2e-{}.test", index + 1);
            let ips = tenant
                .ips
                .iter()
                .map(|(_, a)| a.parse().expect("ip"))
                .collect();
            pools.insert(from_domain, ips);
        }
        let messages = self.sink.messages();
        let mut seen: HashSet<String> = HashSet::new();
        let mut extra = 0;
        for message in &messages {
            let id = message
                .message_id
                .clone()
                .expect("every message has a Message-ID");
            assert!(
                expected.contains(&id),
                "unexpected message {id} at the sink"
            );
            if !seen.insert(id) {
                extra += 1;
            }
            let domain = message
                .mail_from
                .rsplit_once('@')
                .map(|(_, d)| d)
                .unwrap_or("");
            let pool = pools
                .get(domain)
                .unwrap_or_else(|| panic!("unknown sender {}", message.mail_from));
            assert!(
                pool.contains(&message.source_ip),
                "{} left from {}, outside its pool {pool:?}",
                message.mail_from,
                message.source_ip
            );
        }
        assert_eq!(
            seen.len() as u64,
            scenario.total,
            "lost messages: every sent job must reach the sink"
        );
        extra
    }

    pub async fn shutdown(mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        self.sink.shutdown().await;
    }
}

/// Creates and starts another campaign of `tenant` on its IPs, from
/// `hello@<from_domain>`, with `leads` leads `other<i>@<recipient_domain>`;
/// returns its id. Pause scenarios use it to show the engine kept sending.
pub async fn start_other_campaign(
    client: &penguin::client::ApiClient,
    tenant: &penguin::scenario::TenantRun,
    from_domain: &str,
    recipient_domain: &str,
    leads: usize,
) -> uuid::Uuid {
    let body = serde_json::json!({
        "name": "keeps flowing", "from": format!("hello@{from_domain}"),
        "subject": "Hi {{first_name}}", "text": "Hello {{first_name}}",
        "ip_ids": tenant.ips.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>(),
    });
    let other = client
        .create_campaign(&tenant.token, &body)
        .await
        .expect("second campaign");
    let leads: Vec<_> = (0..leads)
        .map(|i| {
            serde_json::json!({
                "email": format!("other{i}@{recipient_domain}"),
                "fields": {"first_name": "O"},
            })
        })
        .collect();
    client
        .add_leads(&tenant.token, other, &leads, 1_000)
        .await
        .expect("leads");
    client
        .campaign_action(&tenant.token, other, "start")
        .await
        .expect("start other");
    other
}

/// The value of one series of a Prometheus text page, named exactly as it
/// appears (`name{label="value"}`, or the bare name without labels); `None` when
/// the page has no such series.
pub fn series(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
}
