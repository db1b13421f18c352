//! What a fault run is judged by, computed from what the sink received and what
//! Postgres holds once the run settled:
//!
//! - **lost**: jobs whose message never arrived, unless their state says none
//!   was due: bounced, failed, suppressed, cancelled, or waiting (a later
//!   `run_at`, or every IP of the tenant used its hourly cap);
//! - **copies** of a message beyond the first, against **copies allowed**: per
//!   node fault, the SMTP transactions under way on that node — jobs of its
//!   tenants still `sending` right after the fault whose message the sink got in
//!   a transaction begun before it. Only those can arrive twice;
//! - **unexpected**: messages naming no job of the run;
//! - **cap overshoot**: messages per IP and hour (of their transaction's start)
//!   beyond `limits.ip_hourly_cap`, and per IP and day beyond
//!   `limits.warm_daily_volume` (scenario IPs are warm and on UTC);
//! - **recovery**: per fault, from its start until the IPs it hit began a new
//!   transaction after it ended.

use std::collections::{BTreeMap, HashMap, HashSet};

use penguin_engine::sink::ReceivedMessage;
use serde::Serialize;
use uuid::Uuid;

use super::inject::FaultKind;

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// The node it hit (kill, pause).
    pub node: Option<String>,
    /// Milliseconds since the campaigns started.
    pub at_ms: u64,
    /// How long it lasted (pause, outage), in milliseconds.
    pub lasted_ms: u64,
    /// Messages the sink had accepted when it hit.
    pub progress: u64,
    /// SMTP transactions under way on the node hit (see the module doc).
    pub under_way: usize,
    /// From the fault's start until its IPs began a new transaction after it.
    pub recovery_ms: Option<u64>,
    #[serde(skip)]
    pub(crate) detail: FaultDetail,
}

/// What a fault needs remembered until the run settles.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultDetail {
    /// Unix ms of its start and end.
    pub started_ms: i64,
    pub ended_ms: i64,
    /// The sink's `transactions_begun` when it hit.
    pub transactions: u64,
    /// Jobs of the node's tenants left `sending` right after it hit.
    pub unrecorded: HashSet<Uuid>,
    /// The source IPs it hit (every IP for a shared server).
    pub ips: HashSet<std::net::IpAddr>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub nodes: usize,
    pub tenants: usize,
    pub jobs: u64,
    /// Jobs per state at the end.
    pub states: BTreeMap<String, u64>,
    /// Jobs whose message arrived (at least once).
    pub delivered: u64,
    /// Jobs not sent because not due: a later `run_at`, or used hourly caps.
    pub waiting: u64,
    pub lost: u64,
    pub copies: u64,
    pub copies_allowed: u64,
    pub unexpected: u64,
    pub ip_hourly_cap: u32,
    pub most_per_ip_hour: u64,
    pub ip_daily_volume: u32,
    pub most_per_ip_day: u64,
    pub cap_overshoot: u64,
    pub faults: Vec<FaultRecord>,
    /// Up to 20 copies no fault explains: the job and, per copy, the source IP
    /// and when its transaction began (ms since the campaigns started).
    pub unexplained_copies: Vec<CopyDetail>,
    pub elapsed_ms: u64,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyDetail {
    pub job: Uuid,
    pub copies: Vec<(std::net::IpAddr, i64)>,
}

/// A job of the run as Postgres has it at the end.
pub struct JobRow {
    pub id: Uuid,
    pub status: String,
    /// Not due yet: its `run_at` is after the run's end, or its IPs used their
    /// hourly cap.
    pub waits: bool,
}

pub struct Inputs<'a> {
    pub nodes: usize,
    pub tenants: usize,
    pub jobs: &'a [JobRow],
    pub messages: &'a [ReceivedMessage],
    pub faults: Vec<FaultRecord>,
    pub ip_hourly_cap: u32,
    pub ip_daily_volume: u32,
    pub elapsed_ms: u64,
    /// Unix ms when the campaigns started.
    pub started_ms: i64,
}

/// The job a Message-ID (`<job id>@<domain>`, brackets stripped) names.
pub fn job_of(message_id: &str) -> Option<Uuid> {
    message_id.split('@').next()?.parse().ok()
}

pub fn judge(inputs: Inputs<'_>) -> Report {
    let known: HashSet<Uuid> = inputs.jobs.iter().map(|j| j.id).collect();
    let mut copies_of: HashMap<Uuid, u64> = HashMap::new();
    let mut unexpected = 0;
    for message in inputs.messages {
        match message.message_id.as_deref().and_then(job_of) {
            Some(job) if known.contains(&job) => *copies_of.entry(job).or_default() += 1,
            _ => unexpected += 1,
        }
    }
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    let (mut lost, mut waiting) = (0, 0);
    for job in inputs.jobs {
        *states.entry(job.status.clone()).or_default() += 1;
        let received = copies_of.contains_key(&job.id);
        let none_due = matches!(
            job.status.as_str(),
            "bounced" | "failed" | "suppressed" | "cancelled"
        );
        let waits = matches!(job.status.as_str(), "pending" | "deferred" | "queued") && job.waits;
        if waits && !received {
            waiting += 1;
        }
        if !received && !none_due && !waits {
            lost += 1;
        }
    }
    let copies: u64 = copies_of.values().map(|n| n - 1).sum();

    // Transactions under way at each node fault.
    let mut faults = inputs.faults;
    let mut allowed: HashSet<Uuid> = HashSet::new();
    for fault in &mut faults {
        let begun_before: HashSet<Uuid> = inputs
            .messages
            .iter()
            .filter(|m| m.transaction <= fault.detail.transactions)
            .filter_map(|m| m.message_id.as_deref().and_then(job_of))
            .collect();
        let under_way: Vec<Uuid> = fault
            .detail
            .unrecorded
            .intersection(&begun_before)
            .copied()
            .collect();
        fault.under_way = under_way.len();
        allowed.extend(under_way);
        fault.recovery_ms = inputs
            .messages
            .iter()
            .filter(|m| {
                m.begun_at_ms >= fault.detail.ended_ms && fault.detail.ips.contains(&m.source_ip)
            })
            .map(|m| m.begun_at_ms)
            .min()
            .map(|at| (at - fault.detail.started_ms).max(0) as u64);
    }
    let copies_allowed: u64 = faults.iter().map(|f| f.under_way as u64).sum();
    let unexplained: u64 = copies_of
        .iter()
        .filter(|(job, n)| **n > 1 && !allowed.contains(job))
        .map(|(_, n)| n - 1)
        .sum();
    let unexplained_copies: Vec<CopyDetail> = copies_of
        .iter()
        .filter(|(job, n)| **n > 1 && !allowed.contains(job))
        .take(20)
        .map(|(job, _)| CopyDetail {
            job: *job,
            copies: inputs
                .messages
                .iter()
                .filter(|m| m.message_id.as_deref().and_then(job_of) == Some(*job))
                .map(|m| (m.source_ip, m.begun_at_ms - inputs.started_ms))
                .collect(),
        })
        .collect();

    // Per IP and hour / day of the transaction's start (UTC).
    let mut per_hour: HashMap<(std::net::IpAddr, i64), u64> = HashMap::new();
    let mut per_day: HashMap<(std::net::IpAddr, i64), u64> = HashMap::new();
    for message in inputs.messages {
        *per_hour
            .entry((message.source_ip, message.begun_at_ms.div_euclid(3_600_000)))
            .or_default() += 1;
        *per_day
            .entry((
                message.source_ip,
                message.begun_at_ms.div_euclid(86_400_000),
            ))
            .or_default() += 1;
    }
    let most_per_ip_hour = per_hour.values().copied().max().unwrap_or(0);
    let most_per_ip_day = per_day.values().copied().max().unwrap_or(0);
    let over = |counts: &HashMap<_, u64>, cap: u32| -> u64 {
        if cap == 0 {
            return 0;
        }
        counts.values().map(|n| n.saturating_sub(cap as u64)).sum()
    };
    let cap_overshoot =
        over(&per_hour, inputs.ip_hourly_cap) + over(&per_day, inputs.ip_daily_volume);

    let mut failures = Vec::new();
    if lost > 0 {
        failures.push(format!("{lost} jobs lost"));
    }
    if unexplained > 0 {
        failures.push(format!(
            "{unexplained} copies of messages that were not under way on a node hit by a fault"
        ));
    }
    if copies > copies_allowed {
        failures.push(format!(
            "{copies} copies, more than the {copies_allowed} transactions under way at the faults"
        ));
    }
    if unexpected > 0 {
        failures.push(format!("{unexpected} messages name no job of the run"));
    }
    if cap_overshoot > 0 {
        failures.push(format!("per-IP caps exceeded by {cap_overshoot} messages"));
    }
    if let Some(n) = states.get("sending") {
        failures.push(format!("{n} jobs still sending"));
    }
    Report {
        nodes: inputs.nodes,
        tenants: inputs.tenants,
        jobs: inputs.jobs.len() as u64,
        states,
        delivered: copies_of.len() as u64,
        waiting,
        lost,
        copies,
        copies_allowed,
        unexpected,
        ip_hourly_cap: inputs.ip_hourly_cap,
        most_per_ip_hour,
        ip_daily_volume: inputs.ip_daily_volume,
        most_per_ip_day,
        cap_overshoot,
        faults,
        unexplained_copies,
        elapsed_ms: inputs.elapsed_ms,
        failures,
    }
}

impl Report {
    /// The report for people, on standard output.
    pub fn print(&self) {
        print!("{}", self.text());
    }

    /// The report for people: one line of counts, one of caps, one per fault,
    /// the time taken and the verdict.
    pub fn text(&self) -> String {
        let report = self;
        let mut out = format!(
            "jobs {} ({}), delivered {}, waiting {}, lost {}, copies {} (allowed {}), unexpected {}\n",
            report.jobs,
            report
                .states
                .iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            report.delivered,
            report.waiting,
            report.lost,
            report.copies,
            report.copies_allowed,
            report.unexpected
        );
        out += &format!(
            "most per IP and hour {} (cap {}), per IP and day {} (volume {}), overshoot {}\n",
            report.most_per_ip_hour,
            cap(report.ip_hourly_cap),
            report.most_per_ip_day,
            cap(report.ip_daily_volume),
            report.cap_overshoot
        );
        for fault in &report.faults {
            out += &format!(
                "  {}{}: {} under way, recovered in {}\n",
                fault.kind,
                fault
                    .node
                    .as_deref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default(),
                fault.under_way,
                fault
                    .recovery_ms
                    .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "- (nothing left to send)".into())
            );
        }
        out += &format!("took {:.1} s\n", report.elapsed_ms as f64 / 1000.0);
        if report.failures.is_empty() {
            out += "PASSED\n";
        } else {
            out += &format!("FAILED: {}\n", report.failures.join("; "));
        }
        out
    }
}

fn cap(n: u32) -> String {
    if n == 0 { "none".into() } else { n.to_string() }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
