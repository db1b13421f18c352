//! An engine node as a separate `penguin serve` process, for faults a process
//! suffers whole: SIGSTOP/SIGCONT (an OS pause), SIGKILL. It runs the test's
//! own build of the binary under the watchdog of [`super::process`] (it dies
//! with the test), with a TOML file written from the test's configuration.
//! [`ChildNode`] is the same node as a direct child of the test, for the
//! scenarios that judge how it exits by itself (SIGTERM): its exit status.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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
        let (public_url, api_url) =
            listening_urls(&log, || (!process.is_alive()).then(|| process.log_tail())).await;
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
            if key.starts_with("PENGUIN_")
                || ["DATABASE_URL", "REDIS_URL", "REDIS_CLUSTER_URLS"].contains(&key.as_str())
            {
                command.env_remove(key);
            }
        }
        let log = dir.join("refused.log");
        let out = fs::File::create(&log).expect("the node's log");
        command
            .stdout(out.try_clone().expect("the node's log"))
            .stderr(out);
        let mut child = command.spawn().expect("penguin serve runs");
        let Ok(status) = tokio::time::timeout(Duration::from_secs(60), child.wait()).await else {
            let _ = child.kill().await;
            panic!("penguin serve did not exit within 60 s:\n{}", tail_of(&log));
        };
        let status = status.expect("penguin serve runs");
        let output = std::process::Output {
            status,
            stdout: fs::read(&log).unwrap_or_default(),
            stderr: Vec::new(),
        };
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

/// Waits until the node's log at `log` shows both listeners (`penguin serve`
/// prints the public line, then the API's) and returns `(public, api)` URLs;
/// panics with what `exited` tells when the node exited before.
async fn listening_urls(log: &Path, exited: impl Fn() -> Option<String>) -> (String, String) {
    // A line, or with `[log] format = "json"` its `fields.message`.
    let url_after = |text: &str, prefix: &str| {
        text.lines()
            .find_map(|line| {
                let message = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|json| json["fields"]["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| line.to_string());
                message.strip_prefix(prefix).map(str::to_string)
            })
            .map(|url| url.trim().to_string())
    };
    wait_for("the node's API", Duration::from_secs(60), || async {
        let text = fs::read_to_string(log).unwrap_or_default();
        let api = url_after(&text, "penguin node listening on ");
        if api.is_none()
            && let Some(why) = exited()
        {
            panic!("the node exited:\n{why}");
        }
        let public = url_after(&text, "penguin node public links on ");
        public.zip(api)
    })
    .await
}

/// `penguin serve` as a direct child of the test process, so the test reads
/// its exit status. `--exit-with-parent` makes it stop (in order) if the test
/// process dies first; dropping it kills it.
pub struct ChildNode {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
    api_url: String,
}

impl ChildNode {
    /// Starts `penguin serve` with `config` and waits until both its listeners
    /// listen.
    pub async fn start(config: &Config) -> ChildNode {
        ChildNode::start_with_env(config, &[]).await
    }

    /// [`ChildNode::start`] with `env` set for the process (after the test's
    /// own `PENGUIN_*` variables were removed).
    pub async fn start_with_env(config: &Config, env: &[(&str, &str)]) -> ChildNode {
        let dir = process::fresh_dir(&process::scratch_root(), "penguin-e2e-child");
        let file = dir.join("node.toml");
        fs::write(&file, toml_of(config)).expect("write the node's config");
        let log = dir.join("node.log");
        let out = fs::File::create(&log).expect("the node's log");
        let err = out.try_clone().expect("the node's log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_penguin"));
        command
            .args(["serve", "--exit-with-parent", "--config"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // The node reads its configuration from the file alone.
        for (key, _) in std::env::vars() {
            if key.starts_with("PENGUIN_")
                || ["DATABASE_URL", "REDIS_URL", "REDIS_CLUSTER_URLS"].contains(&key.as_str())
            {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied());
        let child = std::sync::Mutex::new(command.spawn().expect("penguin serve runs"));
        let (_, api_url) = listening_urls(&log, || {
            let exited = child.lock().expect("the child").try_wait().ok().flatten();
            exited.map(|status| format!("{status}; {}", tail_of(&log)))
        })
        .await;
        ChildNode {
            child: child.into_inner().expect("the child"),
            dir,
            log,
            api_url,
        }
    }

    /// The control API's base URL.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Sends `signal` (`TERM`, `INT`, …) to the node process.
    pub fn signal(&self, signal: &str) {
        process::run(
            "kill",
            "kill",
            &[&format!("-{signal}"), &self.child.id().to_string()],
        );
    }

    /// Waits until the process has exited by itself and returns its status;
    /// panics with its log when it still runs after `timeout`.
    pub async fn exit_status(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        let log = self.log.clone();
        let status = super::poll_until(timeout, || {
            let status = child.try_wait().expect("the node's status");
            std::future::ready(status.ok_or(()))
        })
        .await;
        status.unwrap_or_else(|_| {
            panic!(
                "the node did not exit within {timeout:?}:\n{}",
                tail_of(&log)
            )
        })
    }

    pub fn log_tail(&self) -> String {
        tail_of(&self.log)
    }

    /// Everything the node printed so far (stdout and stderr).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The last 30 lines of the log at `log`.
fn tail_of(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(30);
    format!("log {}:\n{}", log.display(), lines[start..].join("\n"))
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.process.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
