//! The engine nodes of a fault run: `penguin serve` processes of this very
//! binary, one scratch directory each (its config, its log). They are started
//! with `--exit-with-parent`, so they never outlive the harness, and can be
//! killed, paused, resumed and restarted under the same `node.id`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use penguin_config::Config;

/// One node process.
pub struct NodeProcess {
    pub id: String,
    child: Child,
    log: PathBuf,
    api_url: String,
}

/// The nodes of a run, by `node.id`.
pub struct Nodes {
    dir: PathBuf,
    base: Config,
    nodes: Vec<NodeProcess>,
}

impl Nodes {
    /// Starts `count` nodes `<prefix>-1`… with `base` (node id and API address
    /// replaced), in `dir`.
    pub async fn start(
        dir: &Path,
        base: &Config,
        prefix: &str,
        count: usize,
    ) -> anyhow::Result<Nodes> {
        let mut nodes = Nodes {
            dir: dir.to_path_buf(),
            base: base.clone(),
            nodes: Vec::new(),
        };
        for n in 1..=count {
            let node = nodes.spawn(&format!("{prefix}-{n}")).await?;
            nodes.nodes.push(node);
        }
        Ok(nodes)
    }

    pub fn ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    /// The API of the first node that runs.
    pub fn api_url(&self) -> &str {
        &self.nodes[0].api_url
    }

    pub fn get(&self, id: &str) -> Option<&NodeProcess> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) to node `id`.
    pub fn signal(&self, id: &str, signal: &str) -> anyhow::Result<()> {
        let node = self.get(id).with_context(|| format!("no node {id}"))?;
        signal_pid(node.child.id(), signal)
    }

    /// Starts node `id` again (after a kill), under the same id.
    pub async fn restart(&mut self, id: &str) -> anyhow::Result<()> {
        let index = self
            .nodes
            .iter()
            .position(|n| n.id == id)
            .with_context(|| format!("no node {id}"))?;
        let _ = self.nodes[index].child.kill();
        let _ = self.nodes[index].child.wait();
        self.nodes[index] = self.spawn(id).await?;
        Ok(())
    }

    /// Stops every node: SIGTERM (a clean shutdown), SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        for node in &self.nodes {
            let _ = signal_pid(node.child.id(), "CONT");
            let _ = signal_pid(node.child.id(), "TERM");
        }
        let deadline = Instant::now() + grace;
        for node in &mut self.nodes {
            loop {
                match node.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = node.child.kill();
                        let _ = node.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }

    /// The last lines of node `id`'s log.
    pub fn log_tail(&self, id: &str) -> String {
        let Some(node) = self.get(id) else {
            return String::new();
        };
        let text = fs::read_to_string(&node.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn spawn(&self, id: &str) -> anyhow::Result<NodeProcess> {
        let mut config = self.base.clone();
        config.node.id = id.to_string();
        config.api.listen = "127.0.0.1:0".into();
        config.public.listen = "127.0.0.1:0".into();
        let dir = self.dir.join(id);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("node.toml");
        let text = toml::to_string(&config).context("writing a node's config")?;
        fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        let log = dir.join("node.log");
        let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let exe = std::env::current_exe().context("locating the penguin binary")?;
        let mut command = Command::new(exe);
        command
            .args(["serve", "--exit-with-parent", "--config"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // The node reads its configuration from the file alone.
        for (key, _) in std::env::vars() {
            if key.starts_with("PENGUIN_") || key == "DATABASE_URL" || key == "REDIS_URL" {
                command.env_remove(key);
            }
        }
        let mut child = command.spawn().context("starting penguin serve")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if let Some(url) = text
                .lines()
                .find_map(|line| line.strip_prefix("penguin node listening on "))
            {
                return Ok(NodeProcess {
                    id: id.to_string(),
                    child,
                    log,
                    api_url: url.trim().to_string(),
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!("node {id} exited ({status}) while starting:\n{text}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("node {id} not listening after 60 s:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

fn signal_pid(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}
