//! Many destination sites behind one loopback sink, for the `shaping_sites_*`
//! scenarios. Each test domain gets MX hosts of its own in a [`FakeResolver`];
//! every MX host resolves to one sink listening on `<listen>:25` (each scenario
//! its own loopback address), and is named by a route of a domain no lead uses —
//! the only way a host may resolve to loopback ([`RouteTable::names_host`]).
//! So delivery goes through MX resolution, and each domain is shaped as its MX
//! site (`site:<hosts>`), or as its named provider when its MX host is, say,
//! Google's — not as one `route:` unit shared by every domain.
//!
//! [`RouteTable::names_host`]: penguin_engine::route::RouteTable::names_host

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use penguin::scenario::Scenario;
use penguin_config::{Config, Route};
use penguin_engine::clock::ManualClock;
use penguin_engine::dns::FakeResolver;
use penguin_engine::sink::{Rule, RuleStage, Sink, SinkConfig, SinkHandle};
use uuid::Uuid;

use super::rig::{Rig, RigOptions, series};
use super::{wait_for, wait_for_showing};

/// How long a scenario waits for what it expects.
pub const WAIT: Duration = Duration::from_secs(30);

/// A rig whose domains are delivered through their MX hosts to `sink`.
pub struct SiteRig {
    pub rig: Rig,
    pub sink: SinkHandle,
}

/// `(domain, its MX hosts)`.
pub type Site<'a> = (&'a str, Vec<String>);

/// One MX host of its own per domain: `mx.<domain>`.
pub fn own_mx(domains: &[String]) -> Vec<Site<'_>> {
    domains
        .iter()
        .map(|d| (d.as_str(), vec![format!("mx.{d}")]))
        .collect()
}

/// `count` leads at `domain`: `r<i>@<domain>`.
pub fn leads(domain: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("r{i}@{domain}")).collect()
}

/// A sink rule answering `reply` at RCPT to every recipient at `domain`,
/// `times` times per recipient (`None`: always).
pub fn rcpt_rule(domain: &str, reply: &str, times: Option<u32>) -> Rule {
    Rule {
        recipient_pattern: format!("*@{domain}"),
        stage: RuleStage::Rcpt,
        reply: Some(reply.into()),
        times,
        delay_ms: None,
        drop_connection: false,
    }
}

impl SiteRig {
    /// Starts a sink on `listen:25` and a node resolving `sites` to it.
    pub async fn start(
        listen: &str,
        sites: &[Site<'_>],
        clock: Option<ManualClock>,
        tweak: impl FnOnce(&mut Config),
    ) -> SiteRig {
        let address: IpAddr = listen.parse().expect("a loopback address");
        let sink = Sink::start(SinkConfig::new(SocketAddr::new(address, 25)))
            .await
            .unwrap_or_else(|e| panic!("the site sink listens on {listen}:25: {e}"));
        let mut resolver = FakeResolver::new();
        let mut hosts = Vec::new();
        for (domain, mx) in sites {
            let records: Vec<(u16, &str)> = mx.iter().map(|h| (10, h.as_str())).collect();
            resolver = resolver.with_mx(domain, &records);
            for host in mx {
                resolver = resolver.with_addresses(host, &[address]);
                hosts.push(host.clone());
            }
        }
        let options = RigOptions {
            clock,
            resolver: Some(Arc::new(resolver)),
            routed_domains: Some(vec!["unused.invalid".into()]),
            redis_cluster: false,
        };
        let rig = Rig::start_with(
            |config| {
                for (i, host) in hosts.into_iter().enumerate() {
                    config.delivery.routes.push(Route {
                        domain: format!("names-mx-{i}.invalid"),
                        host,
                        port: 25,
                    });
                }
                tweak(config);
            },
            options,
        )
        .await;
        SiteRig { rig, sink }
    }

    /// A campaign of one tenant and IP holding `emails`, started.
    pub async fn first_campaign(&self, emails: &[String]) -> Scenario {
        let refs: Vec<&str> = emails.iter().map(String::as_str).collect();
        let scenario = self.rig.campaign_with_leads(&refs).await;
        assert_eq!(scenario.total, emails.len() as u64, "every lead accepted");
        scenario.start().await.expect("campaign starts");
        scenario
    }

    /// Another campaign of the scenario's tenant and IP holding `emails`, started.
    pub async fn next_campaign(&self, scenario: &Scenario, emails: &[String]) -> Uuid {
        let tenant = &scenario.tenants[0];
        let campaign = scenario
            .client
            .create_campaign(
                &tenant.token,
                &serde_json::json!({
                    "name": "next", "from": "hello@e2e-1.test", "subject": "Hi", "text": "Hello",
                    "ip_ids": [tenant.ips[0].0.to_string()],
                }),
            )
            .await
            .expect("campaign created");
        let leads: Vec<serde_json::Value> = emails
            .iter()
            .map(|e| serde_json::json!({ "email": e }))
            .collect();
        let accepted = scenario
            .client
            .add_leads(&tenant.token, campaign, &leads, 1_000)
            .await
            .expect("leads accepted");
        assert_eq!(accepted, emails.len() as u64);
        scenario
            .client
            .campaign_action(&tenant.token, campaign, "start")
            .await
            .expect("campaign starts");
        campaign
    }

    /// Jobs per status of the recipients whose address ends with `suffix`.
    pub async fn statuses(&self, suffix: &str) -> HashMap<String, i64> {
        self.rig
            .env
            .psql(&format!(
                "SELECT j.status, count(*) FROM send_jobs j JOIN leads l ON l.id = j.lead_id
                 WHERE l.email LIKE '%{suffix}' GROUP BY j.status"
            ))
            .await
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// Waits until `n` jobs of recipients ending with `suffix` are in `status`.
    pub async fn wait_for_status(&self, suffix: &str, status: &str, n: i64) {
        wait_for_showing(&format!("{n} jobs of *{suffix} {status}"), WAIT, || async {
            let seen = self.statuses(suffix).await;
            if seen.get(status).copied().unwrap_or(0) == n {
                Ok(())
            } else {
                Err(seen)
            }
        })
        .await;
    }

    /// Waits until `n` jobs of recipients ending with `suffix` were postponed by
    /// their shaping (back to `pending`, a `postponed: …` reply, not yet due).
    pub async fn wait_for_postponed(&self, suffix: &str, n: i64) -> Vec<String> {
        wait_for(
            &format!("{n} jobs of *{suffix} postponed"),
            WAIT,
            || async {
                let rows = self
                    .rig
                    .env
                    .psql(&format!(
                        "SELECT coalesce(j.last_reply, '') FROM send_jobs j
                     JOIN leads l ON l.id = j.lead_id
                     WHERE l.email LIKE '%{suffix}' AND j.status = 'pending'
                       AND j.last_reply LIKE 'postponed:%'"
                    ))
                    .await;
                let replies: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                (replies.len() as i64 == n).then_some(replies)
            },
        )
        .await
    }

    /// The node's `penguin_reply_rules_matched_total{action=…}` (0 when absent).
    pub async fn rule_matches(&self, action: &str) -> f64 {
        let page = self.rig.metrics().await;
        series(
            &page,
            &format!("penguin_reply_rules_matched_total{{action=\"{action}\"}}"),
        )
        .unwrap_or(0.0)
    }

    pub async fn shutdown(self) {
        self.rig.shutdown().await;
        self.sink.shutdown().await;
    }
}
