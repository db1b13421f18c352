//! A complete sending rig for scenario tests: a [`TestEnv`], a loopback SMTP sink,
//! and one engine node (actors + API) routed to that sink, plus helpers to set up
//! a scenario through the API and to check the sink against Postgres.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use penguin::node::{Node, NodeOptions};
use penguin::scenario::{Scenario, ScenarioSpec};
use penguin_config::{Config, Route};
use penguin_engine::sink::{Sink, SinkConfig, SinkHandle};

use super::{ADMIN_TOKEN, TestEnv, wait_for};

/// The process-wide metrics recorder (installed once per test binary), so the
/// engine's counters show on `/metrics`. Counters add up across the tests of the
/// binary: assert on presence and growth, not exact values.
pub fn global_metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("install the metrics recorder")
        })
        .clone()
}

pub struct Rig {
    pub env: TestEnv,
    pub sink: SinkHandle,
    pub node: Option<Node>,
}

impl Rig {
    /// Starts the sink and a node; `tweak` adjusts the node's configuration.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Rig {
        let env = TestEnv::start().await;
        let sink = Sink::start(SinkConfig::new(SocketAddr::from(([127, 0, 0, 1], 0))))
            .await
            .expect("sink starts");
        let mut config = env.config.clone();
        config.delivery.routes = vec![Route {
            domain: "*".into(),
            host: "127.0.0.1".into(),
            port: sink.smtp_addr().port(),
        }];
        tweak(&mut config);
        config.validate().expect("tweaked config is valid");
        let options = NodeOptions {
            metrics: global_metrics(),
            ..NodeOptions::standalone()
        };
        let node = Node::start(Arc::new(config), options)
            .await
            .expect("node starts");
        Rig {
            env,
            sink,
            node: Some(node),
        }
    }

    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("node running")
    }

    /// Sets up tenants, IPs, campaigns and leads through the API (nothing started).
    pub async fn scenario(&self, tenants: Vec<Vec<&str>>, leads_per_tenant: usize) -> Scenario {
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
        Scenario::setup(&self.node().api_url(), ADMIN_TOKEN, &self.env.pg, &spec)
            .await
            .expect("scenario set up")
    }

    /// Waits until the sink has accepted at least `n` messages.
    pub async fn wait_for_sink(&self, n: u64, timeout: Duration) {
        wait_for(&format!("{n} messages at the sink"), timeout, || async {
            (self.sink.stats().messages_accepted >= n).then_some(())
        })
        .await;
    }

    /// Waits until every job of the scenario is terminal.
    pub async fn wait_until_done(&self, scenario: &Scenario, timeout: Duration) {
        wait_for("every job terminal", timeout, || async {
            let progress = scenario.progress().await.ok()?;
            (progress.terminal >= scenario.total).then_some(())
        })
        .await;
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
