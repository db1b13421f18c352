//! An engine node as a separate `penguin serve` process, for faults a process
//! suffers whole: SIGSTOP/SIGCONT (an OS pause), SIGKILL. It runs the test's
//! own build of the binary under the watchdog of [`super::process`] (it dies
//! with the test), with a TOML file written from the test's configuration.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use penguin_config::Config;

use super::process::{self, Watched};
use super::wait_for;

pub struct NodeProcess {
    process: Watched,
    dir: PathBuf,
    api_url: String,
}

/// The keys of `config` a node process needs (the rest keep their defaults).
fn toml_of(config: &Config) -> String {
    let q = |s: &str| format!("{s:?}");
    let mut toml = String::new();
    let _ = write!(
        toml,
        "[database]\nurl = {}\n\n[redis]\nurl = {}\n\n\
         [api]\nlisten = \"127.0.0.1:0\"\nadmin_token = {}\n\n\
         [node]\nid = {}\nlease_ttl_ms = {}\nheartbeat_ms = {}\n\n\
         [queue]\nfeed_idle_ms = {}\nreaper_interval_ms = {}\ninflight_deadline_ms = {}\n\
         sending_timeout_ms = {}\n\n\
         [limits]\nip_messages_per_second = {}\n\n\
         [delivery]\nconnections_per_ip = {}\n\n",
        q(&config.database.url),
        q(&config.redis.url),
        q(&config.api.admin_token),
        q(&config.node.id),
        config.node.lease_ttl_ms,
        config.node.heartbeat_ms,
        config.queue.feed_idle_ms,
        config.queue.reaper_interval_ms,
        config.queue.inflight_deadline_ms,
        config.queue.sending_timeout_ms,
        config.limits.ip_messages_per_second,
        config.delivery.connections_per_ip,
    );
    for route in &config.delivery.routes {
        let _ = write!(
            toml,
            "[[delivery.routes]]\ndomain = {}\nhost = {}\nport = {}\n\n",
            q(&route.domain),
            q(&route.host),
            route.port
        );
    }
    toml
}

impl NodeProcess {
    /// Starts `penguin serve` with `config` and waits until its API listens.
    pub async fn start(config: &Config) -> NodeProcess {
        let dir = process::fresh_dir(&process::scratch_root(), "penguin-e2e-node");
        let file = dir.join("node.toml");
        fs::write(&file, toml_of(config)).expect("write the node's config");
        let log = dir.join("node.log");
        let command = [
            env!("CARGO_BIN_EXE_penguin").to_string(),
            "serve".to_string(),
            "--config".to_string(),
            file.display().to_string(),
        ];
        let process = Watched::spawn("penguin serve", &command, "KILL", &log, None);
        let api_url = wait_for("the node's API", Duration::from_secs(60), || async {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let url = text
                .lines()
                .find_map(|line| line.strip_prefix("penguin node listening on "))
                .map(|url| url.trim().to_string());
            if url.is_none() && !process.is_alive() {
                panic!("the node exited:\n{}", process.log_tail());
            }
            url
        })
        .await;
        NodeProcess {
            process,
            dir,
            api_url,
        }
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`, …) to the node process.
    pub fn signal(&self, signal: &str) {
        process::run(
            "kill",
            "kill",
            &[&format!("-{signal}"), &self.process.pid().to_string()],
        );
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.process.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
