//! The faults a run injects, and how each is applied:
//!
//! - `kill`: SIGKILL a node, then start it again under the same id.
//! - `pause`: SIGSTOP a node for `pause_ms` (by default 1.5 × the lease TTL),
//!   then SIGCONT: an OS or VM stall past the node's leases.
//! - `redis-flush`: FLUSHALL.
//! - `redis-restart`: the operator's `--redis-restart-cmd`, or else what a
//!   restart without persistence does to the engine: every key gone (FLUSHALL)
//!   and every client connection dropped (CLIENT KILL, pub/sub included).
//! - `postgres-restart`: the operator's `--postgres-restart-cmd`, or else an
//!   outage of the database as clients see a restart: every other session on it
//!   terminated and new connections refused for `outage_ms`
//!   (`ALLOW_CONNECTIONS false`, then true again).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    Kill,
    Pause,
    RedisFlush,
    RedisRestart,
    PostgresRestart,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::RedisFlush,
        FaultKind::RedisRestart,
        FaultKind::PostgresRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::RedisFlush => "redis-flush",
            FaultKind::RedisRestart => "redis-restart",
            FaultKind::PostgresRestart => "postgres-restart",
        }
    }

    /// Whether the fault hits one node (rather than a shared server).
    pub fn hits_a_node(self) -> bool {
        matches!(self, FaultKind::Kill | FaultKind::Pause)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault schedule: `kill=20,pause=2,redis-flush=2,postgres-restart` (a kind
/// without `=N` happens once), spread evenly over the campaign, kinds taking
/// turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<FaultKind>);

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut counts: Vec<(FaultKind, usize)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, count) = match part.split_once('=') {
                Some((name, count)) => {
                    let count = count
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| format!("`{part}`: the count must be a whole number"))?;
                    (name.trim(), count)
                }
                None => (part, 1),
            };
            let kind = FaultKind::ALL
                .into_iter()
                .find(|k| k.name() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                    format!("unknown fault `{name}` (known: {})", known.join(", "))
                })?;
            if count > 1_000 {
                return Err(format!("`{part}`: at most 1000 faults of a kind"));
            }
            counts.push((kind, count));
        }
        let mut faults = Vec::new();
        let most = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
        for round in 0..most {
            faults.extend(counts.iter().filter(|(_, n)| round < *n).map(|(k, _)| *k));
        }
        Ok(Schedule(faults))
    }
}

/// Runs an operator's restart command (`sh -c`), which returns once the server
/// is back.
pub async fn run_command(what: &str, command: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .await
        .with_context(|| format!("running the {what} command"))?;
    if !status.success() {
        bail!("the {what} command `{command}` failed ({status})");
    }
    Ok(())
}

/// FLUSHALL; with `drop_clients`, also closes every other client connection.
pub async fn redis_fault(url: &str, drop_clients: bool) -> anyhow::Result<()> {
    let client = redis::Client::open(url).context("redis url")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to redis")?;
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .context("FLUSHALL")?;
    if drop_clients {
        for kind in ["normal", "pubsub"] {
            redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", kind, "SKIPME", "yes"][..])
                .query_async::<i64>(&mut conn)
                .await
                .with_context(|| format!("CLIENT KILL TYPE {kind}"))?;
        }
    }
    Ok(())
}

/// Terminates every session on the database of `url` and refuses new ones for
/// `outage`. Runs from the maintenance database `postgres` (a database cannot
/// refuse connections to itself); the user must own the database.
pub async fn postgres_outage(url: &str, outage: Duration) -> anyhow::Result<()> {
    let mut config: tokio_postgres::Config = url.parse().context("database.url")?;
    let name = config
        .get_dbname()
        .map(str::to_string)
        .or_else(|| config.get_user().map(str::to_string))
        .context("database.url names no database")?;
    config.dbname("postgres");
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to the maintenance database `postgres`")?;
    let connection = tokio::spawn(connection);
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    client
        .batch_execute(&format!("ALTER DATABASE {quoted} ALLOW_CONNECTIONS false"))
        .await
        .context("refusing connections (the harness' user must own the database)")?;
    let terminated = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        )
        .await;
    tokio::time::sleep(outage).await;
    let allowed = client
        .batch_execute(&format!("ALTER DATABASE {quoted} ALLOW_CONNECTIONS true"))
        .await
        .context("allowing connections again");
    drop(client);
    let _ = connection.await;
    allowed?;
    terminated.context("terminating sessions")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_interleave_kinds_and_refuse_unknown_ones() {
        let schedule: Schedule = "kill=3, pause, redis-flush=2".parse().unwrap();
        use FaultKind::*;
        assert_eq!(
            schedule.0,
            vec![Kill, Pause, RedisFlush, Kill, RedisFlush, Kill]
        );
        assert!(
            "kill=x"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("whole number")
        );
        assert!(
            "reboot"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("unknown fault `reboot`")
        );
        assert!("kill=1001".parse::<Schedule>().is_err());
        assert_eq!("".parse::<Schedule>().unwrap().0, vec![]);
    }
}
