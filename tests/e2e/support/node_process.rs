//! An engine node as a separate `penguin serve` process, for faults a process
//! suffers whole: SIGSTOP/SIGCONT (an OS pause), SIGKILL. It runs the test's
//! own build of the binary under the watchdog of [`super::process`] (it dies
//! with the test), with a TOML file written from the test's configuration.

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

/// `config` as the node's TOML file: every key, as `penguin faults` writes its
/// nodes' files.
fn toml_of(config: &Config) -> String {
    toml::to_string(config).expect("the test configuration serializes")
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

    /// The `penguin serve` process id (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether the process still runs.
    pub fn is_alive(&self) -> bool {
        self.process.is_alive()
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
