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
    public_url: String,
}

/// `config` as the node's TOML file: every key, as `penguin faults` writes its
/// nodes' files.
fn toml_of(config: &Config) -> String {
    toml::to_string(config).expect("the test configuration serializes")
}

impl NodeProcess {
    /// Starts `penguin serve` with `config` and waits until both its listeners
    /// listen.
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
        let url_after = |text: &str, prefix: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(prefix))
                .map(|url| url.trim().to_string())
        };
        // `penguin serve` prints the public line, then the API's.
        let (public_url, api_url) = wait_for("the node's API", Duration::from_secs(60), || async {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let api = url_after(&text, "penguin node listening on ");
            if api.is_none() && !process.is_alive() {
                panic!("the node exited:\n{}", process.log_tail());
            }
            let public = url_after(&text, "penguin node public links on ");
            public.zip(api)
        })
        .await;
        NodeProcess {
            process,
            dir,
            api_url,
            public_url,
        }
    }

    /// The control API's base URL.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The public listener's base URL (`/t/*`, `/u/*`).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The node's process id (to read `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Runs `penguin serve` with `config`, which must refuse to start; returns
    /// what it printed. Panics if it starts (or hangs for 60 s).
    pub async fn refused(config: &Config) -> String {
        let dir = process::fresh_dir(&process::scratch_root(), "penguin-e2e-refused");
        let file = dir.join("node.toml");
        fs::write(&file, toml_of(config)).expect("write the node's config");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_penguin"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .kill_on_drop(true);
        // The node reads its configuration from the file alone.
        for (key, _) in std::env::vars() {
            if key.starts_with("PENGUIN_") || key == "DATABASE_URL" || key == "REDIS_URL" {
                command.env_remove(key);
            }
        }
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("penguin serve exits")
            .expect("penguin serve runs");
        let _ = fs::remove_dir_all(&dir);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "penguin serve started:\n{text}");
        text
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
