//! One Postgres server per test binary, one migrated template database, and a
//! fresh database per [`super::TestEnv`] copied from that template.
//!
//! The server starts lazily on first use: the data directory is copied from an
//! `initdb` cached under `target/tmp/` (keyed by the Postgres version; copying is
//! faster than `initdb`) into a tmpfs scratch directory, and `postgres` listens
//! only on a unix socket there, with durability off. When `DATABASE_URL` is set,
//! that server is used instead and nothing is started; databases are then named
//! `penguin_e2e_<pid>_*`, and leftovers of dead test processes are dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use penguin_config::DatabaseConfig;
use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::process::{self, Watched};

/// `CREATE DATABASE … STRATEGY`: FILE_COPY copies the few MB of the template
/// directly (WAL_LOG, the Postgres 15 default, writes them all to the WAL).
const CREATE_STRATEGY: &str = "FILE_COPY";

static SERVER: OnceCell<PgServer> = OnceCell::const_new();
static NEXT_DATABASE: AtomicU32 = AtomicU32::new(1);

/// The server of this test binary, and how to reach its databases.
pub struct PgServer {
    /// URL (or key=value string) of the maintenance connection.
    admin_url: String,
    /// How to reach database `name`.
    url_of: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// Prefix of every database this process creates.
    prefix: String,
    /// The server process when we started it (never dropped: the watchdog stops it).
    _process: Option<Mutex<Watched>>,
    /// Its log (stderr), when we started it.
    log: Option<std::path::PathBuf>,
}

/// The log of the Postgres this binary started (`None` on `DATABASE_URL`'s).
pub fn server_log() -> Option<std::path::PathBuf> {
    SERVER.get().and_then(|server| server.log.clone())
}

/// A database of one test, dropped (best effort) when the test ends.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort, off the test's runtime: keeps tmpfs from filling up over
        // many tests. The whole server directory goes away at exit anyway.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(client) = connect(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = client.batch_execute(&sql).await;
                }
            });
        });
    }
}

/// A fresh database migrated to the latest schema.
pub async fn test_database() -> TestDatabase {
    let server = SERVER.get_or_init(PgServer::start).await;
    let n = NEXT_DATABASE.fetch_add(1, Ordering::Relaxed);
    let name = format!("{}test_{n}", server.prefix);
    let template = format!("{}template", server.prefix);
    let client = connect(&server.admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to test Postgres: {e}"));
    let sql =
        format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\" STRATEGY {CREATE_STRATEGY}");
    // The template may still be "accessed by other users" for a moment after
    // its migration pool closed; that clears within milliseconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.batch_execute(&sql).await {
            Ok(()) => break,
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
    TestDatabase {
        url: (server.url_of)(&name),
        name,
        admin_url: server.admin_url.clone(),
    }
}

impl PgServer {
    async fn start() -> PgServer {
        let server = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => PgServer::external(url).await,
            _ => tokio::task::spawn_blocking(PgServer::spawn_local)
                .await
                .expect("starting Postgres panicked"),
        };
        server.wait_ready().await;
        server.build_template().await;
        server
    }

    /// Uses the server of `DATABASE_URL`; drops what dead test processes left there.
    async fn external(url: String) -> PgServer {
        let prefix = format!("penguin_e2e_{}_", std::process::id());
        let base = url.clone();
        let server = PgServer {
            admin_url: url,
            url_of: Box::new(move |name| with_dbname(&base, name)),
            prefix,
            _process: None,
            log: None,
        };
        server.wait_ready().await;
        let client = connect(&server.admin_url)
            .await
            .expect("connect to DATABASE_URL");
        let rows = client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'penguin\\_e2e\\_%'",
                &[],
            )
            .await
            .expect("list databases");
        for row in rows {
            let name: String = row.get(0);
            let owner_pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
            if owner_pid.is_some_and(|pid| !process::pid_alive(pid)) {
                // A template cannot be dropped; DROP DATABASE refuses a transaction.
                let unmark = format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE false");
                let _ = client.batch_execute(&unmark).await;
                let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let _ = client.batch_execute(&drop).await;
            }
        }
        server
    }

    /// Starts a private server from the cached initdb (blocking: runs processes).
    fn spawn_local() -> PgServer {
        let bindir = process::find_pg_bindir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL not found (no initdb on PATH nor in /usr/lib/postgresql/*/bin): \
                 run `bash scripts/test.sh`, which installs it, or set DATABASE_URL"
            )
        });
        let root = process::scratch_root();
        let run_dir = process::fresh_dir(&root, "penguin-e2e-pg");
        let data = run_dir.join("data");
        let cache = cached_initdb(&bindir, &root);
        let (cache_str, data_str) = (path_str(&cache), path_str(&data));
        process::run("copy cached initdb", "cp", &["-a", &cache_str, &data_str]);
        if process::running_as_root() {
            let run_str = path_str(&run_dir);
            process::run(
                "chown run dir",
                "chown",
                &["-R", "postgres:postgres", &run_str],
            );
        }
        let mut command = process::as_postgres_user();
        command.extend(
            [
                path_str(&bindir.join("postgres")).as_str(),
                "-D",
                &data_str,
                "-k",
                &path_str(&run_dir),
                "-p",
                "5432",
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "autovacuum=off",
            ]
            .map(String::from),
        );
        let log = run_dir.join("postgres.log");
        let watched = Watched::spawn("postgres", &command, "QUIT", &log, Some(&run_dir));
        let socket_dir = path_str(&run_dir);
        let log = Some(log);
        let url_socket = socket_dir.clone();
        PgServer {
            admin_url: key_value_url(&socket_dir, "postgres"),
            url_of: Box::new(move |name| key_value_url(&url_socket, name)),
            prefix: String::new(),
            _process: Some(Mutex::new(watched)),
            log,
        }
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let error = match connect(&self.admin_url).await {
                Ok(_) => return,
                Err(e) => e,
            };
            if let Some(process) = &self._process {
                let process = process.lock().expect("postgres process lock");
                if !process.is_alive() {
                    panic!("Postgres exited during start: {}", process.log_tail());
                }
                if Instant::now() > deadline {
                    panic!(
                        "Postgres not ready after 30 s ({error}): {}",
                        process.log_tail()
                    );
                }
            } else if Instant::now() > deadline {
                panic!("cannot connect to DATABASE_URL: {error}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates the template database and applies every migration to it once.
    async fn build_template(&self) {
        let template = format!("{}template", self.prefix);
        let admin = connect(&self.admin_url).await.expect("connect to Postgres");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{template}\""))
            .await
            .unwrap_or_else(|e| panic!("create template database: {e}"));
        let config = DatabaseConfig {
            url: (self.url_of)(&template),
            max_connections: 1,
            acquire_timeout_ms: 10_000,
            ..DatabaseConfig::default()
        };
        let pool = penguin_engine::db::pg_pool(&config).expect("template pool");
        penguin_engine::db::migrate(&pool)
            .await
            .unwrap_or_else(|e| panic!("migrating the template database: {e}"));
        pool.close();
        admin
            .batch_execute(&format!(
                "ALTER DATABASE \"{template}\" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
            ))
            .await
            .expect("mark template");
    }
}

/// A data directory made by `initdb` once per Postgres version, cached under
/// `target/tmp/`. Made in a scratch dir (the postgres user must reach it), then
/// renamed into place so concurrent test binaries never see half of one.
pub(crate) fn cached_initdb(bindir: &Path, scratch_root: &Path) -> PathBuf {
    let version = std::process::Command::new(bindir.join("postgres"))
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let version: String = version
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let cache_root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cache = cache_root.join(format!("penguin-initdb-pg{version}"));
    if cache.join("PG_VERSION").is_file() {
        return cache;
    }
    let work = process::fresh_dir(scratch_root, "penguin-e2e-initdb");
    let data = work.join("data");
    if process::running_as_root() {
        process::run(
            "chown initdb dir",
            "chown",
            &["postgres:postgres", &path_str(&work)],
        );
    }
    let mut command = process::as_postgres_user();
    command.extend(
        [
            path_str(&bindir.join("initdb")).as_str(),
            "--no-sync",
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--wal-segsize=1",
            "-D",
            &path_str(&data),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    process::run("initdb", &command[0], &args);
    fs::create_dir_all(cache_root).expect("create target/tmp");
    let staging = cache_root.join(format!(
        "penguin-initdb-pg{version}.tmp-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&staging);
    process::run(
        "cache initdb",
        "cp",
        &["-a", &path_str(&data), &path_str(&staging)],
    );
    if fs::rename(&staging, &cache).is_err() {
        // Another test binary cached it first; theirs is as good as ours.
        let _ = fs::remove_dir_all(&staging);
    }
    let _ = fs::remove_dir_all(&work);
    cache
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let config = tokio_postgres::Config::from_str(url)?;
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn key_value_url(socket_dir: &str, dbname: &str) -> String {
    format!("host={socket_dir} port=5432 user=postgres dbname={dbname}")
}

/// `url` with its database replaced by `name`; URL or key=value form.
fn with_dbname(url: &str, name: &str) -> String {
    let url = url.trim();
    if let Some(scheme_end) = url.find("://") {
        let (head, query) = match url.find('?') {
            Some(q) => (&url[..q], &url[q..]),
            None => (url, ""),
        };
        let authority_end = head[scheme_end + 3..]
            .find('/')
            .map_or(head.len(), |i| scheme_end + 3 + i);
        return format!("{}/{name}{query}", &head[..authority_end]);
    }
    let mut parts: Vec<String> = url
        .split_whitespace()
        .filter(|part| !part.starts_with("dbname="))
        .map(String::from)
        .collect();
    parts.push(format!("dbname={name}"));
    parts.join(" ")
}

pub(crate) fn path_str(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", path.display()))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn dbname_is_replaced_in_both_url_forms() {
        assert_eq!(
            with_dbname("postgres://u:p@h:5/penguin?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_dbname("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_dbname("host=/tmp port=5 dbname=penguin user=u", "x"),
            "host=/tmp port=5 user=u dbname=x"
        );
    }
}
