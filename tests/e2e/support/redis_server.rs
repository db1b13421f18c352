//! One redis-server per [`super::TestEnv`], so tests never share Redis state.
//!
//! The server listens only on a unix socket in its own scratch directory
//! (`--port 0`: no port races), keeps nothing on disk, and runs under the
//! watchdog of [`super::process`]: it dies with its `TestEnv` or, at the latest,
//! with the test process. [`RedisServer::restart`] kills it by PID and starts an
//! empty one on the same socket path.
//!
//! Fallback: when redis-server is not installed but `REDIS_URL` is set, that
//! server is used — each `TestEnv` gets one of its 16 logical databases
//! (round-robin) and FLUSHDB at start. Isolation is then only as good as no two
//! running tests sharing a number, and `restart` is impossible (it panics).

use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::process::{self, Watched};

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

pub struct RedisServer {
    url: String,
    own: Option<OwnServer>,
}

struct OwnServer {
    binary: PathBuf,
    dir: PathBuf,
    process: Mutex<Option<Watched>>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let Some(binary) = process::find_binary("redis-server", &["/usr/bin/redis-server"]) else {
            return RedisServer::external().await;
        };
        let dir = process::fresh_dir(&process::scratch_root(), "penguin-e2e-redis");
        let url = format!("redis+unix://{}", dir.join("redis.sock").display());
        let own = OwnServer {
            binary,
            dir,
            process: Mutex::new(None),
        };
        let server = RedisServer {
            url,
            own: Some(own),
        };
        server.spawn_and_wait().await;
        server
    }

    async fn external() -> RedisServer {
        let base = std::env::var("REDIS_URL").unwrap_or_default();
        if base.trim().is_empty() {
            panic!(
                "redis-server not found: run `bash scripts/test.sh`, which installs it, \
                 or set REDIS_URL"
            );
        }
        let server = RedisServer {
            url: with_db(&base, NEXT_DB.fetch_add(1, Ordering::Relaxed) % 16),
            own: None,
        };
        server.command(&["FLUSHDB"]).await;
        server
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// FLUSHALL on our own server; FLUSHDB on a shared `REDIS_URL`.
    pub async fn flush(&self) {
        let command = if self.own.is_some() {
            "FLUSHALL"
        } else {
            "FLUSHDB"
        };
        self.command(&[command]).await;
    }

    /// Kills the server by PID and starts an empty one at the same address.
    pub async fn restart(&self) {
        let own = self.own.as_ref().expect(
            "restart_redis needs redis-server installed (a shared REDIS_URL cannot be restarted)",
        );
        let old = own.process.lock().expect("redis process lock").take();
        if let Some(mut old) = old {
            old.stop();
        }
        self.spawn_and_wait().await;
    }

    fn spawn(&self) {
        let own = self.own.as_ref().expect("own redis-server");
        // The watchdog removes the directory after a stop; a restart recreates it.
        fs::create_dir_all(&own.dir).expect("create redis dir");
        let dir = own.dir.display().to_string();
        let command: Vec<String> = [
            own.binary.display().to_string().as_str(),
            "--port",
            "0",
            "--unixsocket",
            &format!("{dir}/redis.sock"),
            "--unixsocketperm",
            "700",
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
        let log = own.dir.join("redis.log");
        let watched = Watched::spawn("redis-server", &command, "KILL", &log, Some(&own.dir));
        *own.process.lock().expect("redis process lock") = Some(watched);
    }

    async fn spawn_and_wait(&self) {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let error = match self.try_command(&["PING"]).await {
                Ok(_) => return,
                Err(e) => e,
            };
            self.check_starting(&error, deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Panics with the server log when it died or missed the deadline.
    fn check_starting(&self, error: &redis::RedisError, deadline: Instant) {
        let own = self.own.as_ref().expect("own redis-server");
        let guard = own.process.lock().expect("redis process lock");
        let process = guard.as_ref().expect("redis-server process");
        if !process.is_alive() {
            panic!("redis-server exited during start: {}", process.log_tail());
        }
        if Instant::now() > deadline {
            panic!(
                "redis-server not ready after 10 s ({error}): {}",
                process.log_tail()
            );
        }
    }

    async fn command(&self, args: &[&str]) {
        self.try_command(args)
            .await
            .unwrap_or_else(|e| panic!("redis {args:?} on {}: {e}", self.url));
    }

    async fn try_command(&self, args: &[&str]) -> redis::RedisResult<()> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query_async::<redis::Value>(&mut connection).await?;
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(own) = &self.own
            && let Ok(mut process) = own.process.lock()
            && let Some(mut process) = process.take()
        {
            process.stop();
        }
    }
}

/// `url` pointing at logical database `db` (redis:// and rediss:// URLs only).
fn with_db(url: &str, db: u32) -> String {
    let url = url.trim();
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    if !url.starts_with("redis://") && !url.starts_with("rediss://") {
        return url.to_string();
    }
    let (head, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let authority_end = head[scheme_end + 3..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + 3 + i);
    format!("{}/{db}{query}", &head[..authority_end])
}

#[cfg(test)]
mod tests {
    use super::with_db;

    #[test]
    fn db_index_is_set() {
        assert_eq!(
            with_db("redis://127.0.0.1:6379", 3),
            "redis://127.0.0.1:6379/3"
        );
        assert_eq!(with_db("redis://h:1/0?x=y", 5), "redis://h:1/5?x=y");
        assert_eq!(
            with_db("redis+unix:///tmp/r.sock", 5),
            "redis+unix:///tmp/r.sock"
        );
    }
}
