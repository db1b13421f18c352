//! Set-up for the per-IP limit scenarios: a rig on a manual clock parked at a
//! future UTC midnight, one tenant, IPs with warm-up schedules, timezones and
//! active hours, one campaign over them with a large backlog, and per-source-IP
//! counts of what the sink received.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use penguin_config::Config;
use penguin_engine::clock::ManualClock;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::admin_token;
use super::api::ApiClient;
use super::quiet::{quiet_span, until_quiet};
use super::rig::Rig;

pub struct LimitsRig {
    pub rig: Rig,
    pub clock: ManualClock,
    pub api: ApiClient,
    pub tenant: Uuid,
    pub token: String,
}

/// An IP to create.
pub struct IpPlan<'a> {
    pub address: &'a str,
    /// A schedule name (created with [`LimitsRig::schedule`]) or none (warm).
    pub schedule: Option<&'a str>,
    pub timezone: &'a str,
    pub active_hours: (u8, u8),
}

impl LimitsRig {
    /// A rig whose clock stands at 00:00 UTC two days from now.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> LimitsRig {
        let (rig, clock) = Rig::start_with_clock(tweak).await;
        let midnight = (OffsetDateTime::now_utc() + Duration::from_secs(2 * 86_400))
            .date()
            .midnight()
            .assume_utc();
        clock.set(midnight);
        let api = ApiClient::new(&rig.node().api_url());
        let (tenant, token) = api.create_tenant("limits").await;
        LimitsRig {
            rig,
            clock,
            api,
            tenant,
            token,
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        use penguin_engine::clock::Clock;
        self.clock.now()
    }

    /// Moves the clock to `at` (never backwards).
    pub fn set_clock(&self, at: OffsetDateTime) {
        assert!(at >= self.now(), "the clock only moves forward");
        self.clock.set(at);
    }

    /// Restarts the node on the same clock, emptying Redis first when `flush`.
    pub async fn restart(&mut self, flush: bool) {
        if flush {
            self.rig.env.flush_redis().await;
        }
        self.rig.restart_node_with(Some(self.clock.clone())).await;
        self.api = ApiClient::new(&self.rig.node().api_url());
    }

    /// Creates a custom warm-up schedule through the API.
    pub async fn schedule(&self, name: &str, volumes: &[u32]) {
        let answer = self
            .api
            .post(
                "/v1/warmup-schedules",
                Some(admin_token()),
                &json!({ "name": name, "daily_volumes": volumes }),
            )
            .await;
        answer.expect(201);
    }

    pub async fn add_ip(&self, plan: &IpPlan<'_>) -> Uuid {
        let mut body = json!({
            "address": plan.address,
            "helo_name": "mta.limits.test",
            "timezone": plan.timezone,
        });
        if plan.active_hours != (0, 24) {
            body["active_hours"] =
                json!({ "start": plan.active_hours.0, "end": plan.active_hours.1 });
        }
        if let Some(schedule) = plan.schedule {
            body["warmup_schedule"] = json!(schedule);
        }
        let answer = self.api.add_ip_with(self.tenant, &body).await;
        answer.expect(201);
        answer.id()
    }

    /// A campaign over `ips` with `leads` leads, started.
    pub async fn start_campaign(&self, ips: &[Uuid], leads: usize) -> Uuid {
        let emails: Vec<String> = (0..leads)
            .map(|i| format!("lead{i}@limits{}.test", i % 7))
            .collect();
        self.start_campaign_to(ips, &emails).await
    }

    /// A campaign over `ips` with one lead per address of `emails`, started.
    pub async fn start_campaign_to(&self, ips: &[Uuid], emails: &[String]) -> Uuid {
        let campaign = self.api.create_campaign(&self.token, ips).await;
        for chunk in emails.chunks(5_000) {
            let batch: Vec<Value> = chunk
                .iter()
                .map(|email| json!({ "email": email, "fields": { "first_name": "Pat" } }))
                .collect();
            self.api
                .add_leads(&self.token, campaign, Value::Array(batch))
                .await
                .expect(200);
        }
        self.api.action_ok(&self.token, campaign, "start").await;
        campaign
    }

    /// Messages the sink accepted, per source IP.
    pub fn sent_by_ip(&self) -> HashMap<IpAddr, u64> {
        let mut counts = HashMap::new();
        for message in self.rig.sink.messages() {
            *counts.entry(message.source_ip).or_insert(0) += 1;
        }
        counts
    }

    /// Jobs in `sending` (an SMTP transaction may be under way).
    pub async fn sending(&self) -> i64 {
        let rows = self
            .rig
            .env
            .psql("SELECT count(*) FROM send_jobs WHERE status = 'sending'")
            .await;
        rows[0].get(0)
    }

    /// Waits until the sink holds exactly `expected` messages from each source
    /// IP, nothing is in SMTP, and that stays so — the sink's counts and the
    /// jobs per state in Postgres unchanged — over a quiet period longer than
    /// the node's feeder, reaper and status-flush intervals ([`quiet_span`]),
    /// so a late overshoot shows. Fails at once when any IP went over, and on a
    /// timeout shows what was sent and where the jobs are.
    pub async fn settle(&self, expected: &HashMap<IpAddr, u64>, what: &str) {
        let settled = until_quiet(
            quiet_span(self.rig.config()),
            Duration::from_secs(60),
            || async {
                let sent = self.sent_by_ip();
                for (ip, want) in expected {
                    let got = sent.get(ip).copied().unwrap_or(0);
                    assert!(got <= *want, "{what}: {ip} sent {got}, more than {want}");
                }
                let exact = expected
                    .iter()
                    .all(|(ip, want)| sent.get(ip).copied().unwrap_or(0) == *want);
                if !exact || self.sending().await != 0 {
                    return None;
                }
                let jobs: BTreeMap<String, i64> = self.rig.job_counts().await.into_iter().collect();
                Some((self.rig.sink.stats().messages_accepted, jobs))
            },
        )
        .await;
        if settled.is_err() {
            let sent = self.sent_by_ip();
            let jobs = self
                .rig
                .env
                .psql("SELECT status, min(run_at)::text, max(run_at)::text, count(*) FROM send_jobs GROUP BY status")
                .await;
            let jobs: Vec<(String, Option<String>, Option<String>, i64)> = jobs
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            let history = self
                .rig
                .env
                .psql("SELECT host(i.address) || ' ' || h.day || ' ' || h.decision || ' ' || h.from_day || '->' || h.to_day || ' sent ' || h.sent || '/' || coalesce(h.allowance, -1) || ' ' || h.reason FROM warmup_history h JOIN smtp_ips i ON i.id = h.ip_id ORDER BY h.decided_at DESC LIMIT 6")
                .await;
            let history: Vec<String> = history.iter().map(|r| r.get(0)).collect();
            let usage = self
                .rig
                .env
                .psql("SELECT host(i.address) || ' ' || u.day || ' ' || u.hour || ' ' || u.reserved FROM ip_hourly_usage u JOIN smtp_ips i ON i.id = u.ip_id ORDER BY u.hour DESC LIMIT 6")
                .await;
            let usage: Vec<String> = usage.iter().map(|r| r.get(0)).collect();
            panic!(
                "{what}: timed out at {}; sent {sent:?}, expected {expected:?}; jobs {jobs:?}; warm-up {history:#?}; usage {usage:#?}",
                self.now()
            );
        }
    }

    /// The IP as `GET /v1/ips/{id}` shows it.
    pub async fn ip(&self, id: Uuid) -> Value {
        let answer = self
            .api
            .get(&format!("/v1/ips/{id}"), Some(admin_token()))
            .await;
        answer.expect(200).clone()
    }
}
