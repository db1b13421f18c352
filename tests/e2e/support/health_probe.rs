//! A watch on a `penguin serve` process while an attack runs: [`Probe`] asks
//! `GET /health` every 100 ms and samples the process' RSS, and its
//! [`ProbeReport`] asserts issue 12's bounds — every answer 200 within 1 s, at
//! least [`PROBE_ANSWERS`] of them, and the node under 512 MiB RSS.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `/health` must answer within this while an attack runs.
pub const HEALTH_WITHIN: Duration = Duration::from_secs(1);
/// The node must stay below this resident set.
pub const RSS_BELOW_MIB: u64 = 512;
/// `/health` answers a probe must see while an attack holds.
pub const PROBE_ANSWERS: usize = 3;

/// The resident set of process `pid`, in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What a [`Probe`] saw.
#[derive(Debug, Default)]
pub struct ProbeReport {
    pub answers: usize,
    pub slowest: Duration,
    pub failures: Vec<String>,
    pub max_rss_kib: u64,
}

impl ProbeReport {
    #[track_caller]
    pub fn assert_healthy(&self, what: &str) {
        println!(
            "{what}: /health answered {} times, slowest {:?}; node RSS at most {} MiB",
            self.answers,
            self.slowest,
            self.max_rss_kib / 1024
        );
        assert!(self.failures.is_empty(), "{what}: {:?}", self.failures);
        assert!(
            self.answers >= PROBE_ANSWERS,
            "{what}: only {} answers",
            self.answers
        );
        assert!(
            self.slowest < HEALTH_WITHIN,
            "{what}: /health took {:?}",
            self.slowest
        );
        assert!(self.max_rss_kib > 0, "{what}: RSS not read");
        assert!(
            self.max_rss_kib < RSS_BELOW_MIB * 1024,
            "{what}: RSS {} MiB",
            self.max_rss_kib / 1024
        );
    }
}

/// Asks `GET /health` every 100 ms with `client`, and samples the node's RSS,
/// until stopped.
pub struct Probe {
    stop: watch::Sender<bool>,
    /// Answers so far.
    answers: watch::Receiver<usize>,
    task: JoinHandle<ProbeReport>,
}

impl Probe {
    pub fn start(client: reqwest::Client, api_url: &str, pid: u32) -> Probe {
        let url = format!("{api_url}/health");
        let (stop, mut stopped) = watch::channel(false);
        let (answered, answers) = watch::channel(0);
        let task = tokio::spawn(async move {
            let mut report = ProbeReport::default();
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stopped.wait_for(|stopped| *stopped) => return report,
                }
                report.max_rss_kib = report.max_rss_kib.max(rss_kib(pid));
                let asked = Instant::now();
                let answer = client.get(&url).timeout(Duration::from_secs(5)).send();
                match answer.await {
                    Ok(answer) if answer.status() == 200 => {
                        report.answers += 1;
                        report.slowest = report.slowest.max(asked.elapsed());
                        let _ = answered.send(report.answers);
                    }
                    Ok(answer) => report.failures.push(format!("status {}", answer.status())),
                    Err(error) => report.failures.push(error.without_url().to_string()),
                }
            }
        });
        Probe {
            stop,
            answers,
            task,
        }
    }

    /// Stops once the probe has had `answers` answers (or after 10 s: the
    /// report then says how many it had).
    pub async fn stop_after(mut self, answers: usize) -> ProbeReport {
        let enough = self.answers.wait_for(|n| *n >= answers);
        let _ = tokio::time::timeout(Duration::from_secs(10), enough).await;
        self.stop().await
    }

    pub async fn stop(self) -> ProbeReport {
        let _ = self.stop.send(true);
        self.task.await.expect("the probe ran")
    }
}
