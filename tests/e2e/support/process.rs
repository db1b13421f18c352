//! Server processes that cannot outlive the test process, and finding binaries.
//!
//! Every server runs under a tiny `sh` watchdog whose stdin is a pipe held by the
//! test process. When that pipe closes — [`Watched::stop`], `Drop`, or the test
//! process exiting for any reason, even SIGKILL — the watchdog kills the server by
//! PID, waits for it, and removes its scratch directory. Rust never drops statics,
//! so this is what stops the per-binary Postgres.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `$1` signal, `$2` log file, `$3` directory to remove afterwards (or empty),
/// the rest is the server command. Prints the server PID, then waits for EOF.
const WATCHDOG: &str = r#"
trap '' INT HUP TERM
sig=$1; log=$2; scratch=$3; shift 3
"$@" </dev/null >>"$log" 2>&1 &
pid=$!
echo "$pid"
while read -r _; do :; done
kill -"$sig" "$pid" 2>/dev/null
wait "$pid"
if [ -n "$scratch" ]; then rm -rf "$scratch"; fi
"#;

/// A server process under a watchdog; stopping it (or dropping it) kills the server.
pub struct Watched {
    name: &'static str,
    wrapper: Child,
    server_pid: u32,
    log: PathBuf,
}

impl Watched {
    /// Starts `command` under a watchdog. `signal` stops it (`TERM`, `QUIT`, `KILL`);
    /// `scratch`, when given, is removed after the server exited.
    pub fn spawn(
        name: &'static str,
        command: &[String],
        signal: &str,
        log: &Path,
        scratch: Option<&Path>,
    ) -> Watched {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{name}: cannot open log {}: {e}", log.display()));
        let scratch = scratch.map(|p| p.display().to_string()).unwrap_or_default();
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(signal)
            .arg(log)
            .arg(scratch)
            .args(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot spawn sh: {e}"));
        let stdout = wrapper.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("{name}: watchdog gave no PID: {e}"));
        let server_pid = line.trim().parse().unwrap_or_else(|_| {
            let log_text = fs::read_to_string(log).unwrap_or_default();
            panic!("{name}: watchdog printed {line:?}, not a PID; log:\n{log_text}")
        });
        Watched {
            name,
            wrapper,
            server_pid,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.server_pid
    }

    /// Whether the server process still exists.
    pub fn is_alive(&self) -> bool {
        pid_alive(self.server_pid)
    }

    /// The last lines of the server's log, for panic messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(20);
        format!(
            "{} (pid {}) log {}:\n{}",
            self.name,
            self.server_pid,
            self.log.display(),
            lines[start..].join("\n")
        )
    }

    /// Kills the server by PID (via the watchdog) and waits until it is gone.
    pub fn stop(&mut self) {
        drop(self.wrapper.stdin.take());
        let _ = self.wrapper.wait();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The prefix that runs a command as the `postgres` user when we are root
/// (initdb and postgres refuse to run as root); empty otherwise.
pub fn as_postgres_user() -> Vec<String> {
    if !running_as_root() {
        return Vec::new();
    }
    [
        "setpriv",
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ]
    .map(String::from)
    .to_vec()
}

/// Runs a command to completion; panics with its output when it fails.
pub fn run(what: &str, program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {program}: {e}"));
    if !output.status.success() {
        panic!(
            "{what}: `{program} {}` failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `program` from PATH, else the first of `fallbacks` that exists.
pub fn find_binary(program: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(program));
    from_path
        .chain(fallbacks.iter().map(PathBuf::from))
        .find(|candidate| candidate.is_file())
}

/// The directory holding `initdb` and `postgres`: `initdb` on PATH (symlinks
/// resolved), else Debian's `/usr/lib/postgresql/<version>/bin`, newest first.
pub fn find_pg_bindir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(initdb) = find_binary("initdb", &[]) {
        let dir = fs::canonicalize(&initdb)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        if let Some(dir) = dir.filter(|d| has_server(d)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// A scratch directory root: `/dev/shm` (tmpfs) when it has room, else the
/// system temp directory.
pub fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let roomy = Command::new("df")
        .args(["-Pk", "/dev/shm"])
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let available_kb: u64 = text
                .lines()
                .nth(1)?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()?;
            Some(available_kb >= 2 * 1024 * 1024)
        })
        .unwrap_or(false);
    if shm.is_dir() && roomy {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Creates a fresh, empty directory `<scratch_root>/<prefix>-<pid>-<n>`.
pub fn fresh_dir(root: &Path, prefix: &str) -> PathBuf {
    for n in 0u32.. {
        let dir = root.join(format!("{prefix}-{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create {}: {e}", dir.display()),
        }
    }
    unreachable!("u32 exhausted")
}
