//! A real Redis Cluster per [`super::TestEnv`] that asks for one: three masters
//! (`redis-server --cluster-enabled yes`) on free loopback ports, joined by
//! `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`, with
//! nothing persisted (`--save ""`, no AOF; only each node's `nodes.conf`,
//! its cluster identity, stays in its scratch directory so a restarted master
//! rejoins with its slots and no data). Every server runs under the watchdog
//! of [`super::process`] and dies with its cluster or with the test process.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use super::poll_until;
use super::process::{self, Watched};

const MASTERS: usize = 3;

pub struct RedisCluster {
    binary: PathBuf,
    masters: Vec<Master>,
}

struct Master {
    port: u16,
    dir: PathBuf,
    process: Mutex<Option<Watched>>,
}

impl RedisCluster {
    /// Three masters sharing the 16,384 slots, `cluster_state:ok` on each.
    pub async fn start() -> RedisCluster {
        let binary = process::find_binary("redis-server", &["/usr/bin/redis-server"])
            .expect("redis-server is installed (bash scripts/test.sh installs it)");
        let cli = process::find_binary("redis-cli", &["/usr/bin/redis-cli"])
            .expect("redis-cli is installed with redis-server");
        let root = process::fresh_dir(&process::scratch_root(), "penguin-e2e-redis-cluster");
        let masters: Vec<Master> = (0..MASTERS)
            .map(|i| {
                let dir = root.join(format!("m{i}"));
                fs::create_dir_all(&dir).expect("create a master's dir");
                Master {
                    port: free_port_pair(),
                    dir,
                    process: Mutex::new(None),
                }
            })
            .collect();
        let cluster = RedisCluster { binary, masters };
        for i in 0..MASTERS {
            cluster.spawn(i);
        }
        for i in 0..MASTERS {
            cluster.wait_answering(i).await;
        }
        let mut create = Command::new(cli);
        create.args(["--cluster", "create"]);
        for master in &cluster.masters {
            create.arg(format!("127.0.0.1:{}", master.port));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_ok().await;
        cluster
    }

    /// The seeds a node's `[redis] cluster` lists: every master.
    pub fn seeds(&self) -> Vec<String> {
        self.masters
            .iter()
            .map(|m| format!("redis://127.0.0.1:{}", m.port))
            .collect()
    }

    /// FLUSHALL on every master.
    pub async fn flush(&self) {
        for master in &self.masters {
            command(master.port, &["FLUSHALL"])
                .await
                .unwrap_or_else(|e| panic!("FLUSHALL on {}: {e}", master.port));
        }
    }

    /// Kills master `i` by PID and starts it again on its port with its
    /// cluster identity and no data, then waits until the cluster is whole.
    pub async fn restart_master(&self, i: usize) {
        let old = self.masters[i].process.lock().expect("master lock").take();
        if let Some(mut old) = old {
            old.stop();
        }
        self.spawn(i);
        self.wait_answering(i).await;
        self.wait_ok().await;
    }

    /// Restarts every master, one after another (the single-server
    /// `restart_redis`: every key and every client connection gone).
    pub async fn restart_all(&self) {
        for i in 0..MASTERS {
            self.restart_master(i).await;
        }
    }

    fn spawn(&self, i: usize) {
        let master = &self.masters[i];
        let dir = master.dir.display().to_string();
        let command: Vec<String> = [
            self.binary.display().to_string().as_str(),
            "--port",
            &master.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            &dir,
            "--logfile",
            "",
        ]
        .map(String::from)
        .to_vec();
        let log = master.dir.join("redis.log");
        // No scratch to remove: a restart needs nodes.conf; Drop removes the dirs.
        let watched = Watched::spawn("redis-server (cluster)", &command, "KILL", &log, None);
        *master.process.lock().expect("master lock") = Some(watched);
    }

    /// Polls master `i` with PING until it answers; panics with its log when
    /// it died or did not answer within 10 s.
    async fn wait_answering(&self, i: usize) {
        let master = &self.masters[i];
        let answered = poll_until(Duration::from_secs(10), || async {
            let alive = master
                .process
                .lock()
                .expect("master lock")
                .as_ref()
                .is_some_and(|p| p.is_alive());
            match command(master.port, &["PING"]).await {
                Ok(_) => Ok(()),
                Err(error) if alive => Err(error.to_string()),
                Err(_) => Ok(()), // dead: reported below
            }
        })
        .await;
        let guard = master.process.lock().expect("master lock");
        let process = guard.as_ref().expect("master process");
        assert!(
            process.is_alive(),
            "redis-server (cluster) exited during start: {}",
            process.log_tail()
        );
        if let Err(error) = answered {
            panic!(
                "master {} not answering after 10 s ({error:?}): {}",
                master.port,
                process.log_tail()
            );
        }
    }

    /// Polls until every master reports `cluster_state:ok` and knows all three.
    async fn wait_ok(&self) {
        let whole = poll_until(Duration::from_secs(30), || async {
            let mut states = Vec::new();
            for master in &self.masters {
                let info = info(master.port).await.unwrap_or_default();
                let ok = info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{MASTERS}"));
                states.push((master.port, ok));
            }
            match states.iter().all(|(_, ok)| *ok) {
                true => Ok(()),
                false => Err(states),
            }
        })
        .await;
        if let Err(last) = whole {
            panic!("the redis cluster did not become ok within 30 s: {last:?}");
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for master in &self.masters {
            if let Ok(mut process) = master.process.lock()
                && let Some(mut process) = process.take()
            {
                process.stop();
            }
        }
        if let Some(root) = self.masters.first().and_then(|m| m.dir.parent()) {
            let _ = fs::remove_dir_all(root);
        }
    }
}

/// A loopback port that is free, and whose cluster bus port (+10,000) is too,
/// both below Linux' ephemeral range (32768 and up by default), so no outgoing
/// connection of a test running beside this one takes either meanwhile; and
/// never one this process handed out before.
fn free_port_pair() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().expect("ports lock");
    for _ in 0..500 {
        let port = 12_000 + (uuid::Uuid::new_v4().as_u128() % 10_000) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free loopback port pair for a redis cluster master in 12000..22000")
}

async fn command(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(&mut connection).await
}

async fn info(port: u16) -> redis::RedisResult<String> {
    match command(port, &["CLUSTER", "INFO"]).await? {
        redis::Value::BulkString(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        redis::Value::VerbatimString { text, .. } => Ok(text),
        other => Ok(format!("{other:?}")),
    }
}
