//! Process metrics in the usual Prometheus names, read from `/proc` on Linux
//! when `/metrics` is scraped: `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`. Elsewhere (or when `/proc` cannot be read)
//! they are left out: never an error on the scrape.
//!
//! The parsers are pure functions over the files' text, tested below. Times
//! in `/proc/self/stat` count `USER_HZ` ticks, 100 per second on every Linux
//! architecture (the kernel converts for user space).

use metrics::{Unit, describe_gauge, gauge};

pub const CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
pub const OPEN_FDS: &str = "process_open_fds";
pub const MAX_FDS: &str = "process_max_fds";
pub const START_TIME: &str = "process_start_time_seconds";

/// `USER_HZ`: ticks per second of `/proc` times.
const TICKS_PER_SECOND: f64 = 100.0;

/// What one reading of `/proc` found.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

/// Registers the descriptions with the current recorder.
pub fn describe() {
    describe_gauge!(
        CPU_SECONDS,
        Unit::Seconds,
        "User and system CPU time of the process (a counter, exposed as a gauge read from /proc)"
    );
    describe_gauge!(
        RESIDENT_MEMORY,
        Unit::Bytes,
        "Resident memory of the process"
    );
    describe_gauge!(
        OPEN_FDS,
        Unit::Count,
        "Open file descriptors of the process"
    );
    describe_gauge!(MAX_FDS, Unit::Count, "Soft limit of open file descriptors");
    describe_gauge!(
        START_TIME,
        Unit::Seconds,
        "Start time of the process since the unix epoch"
    );
}

/// Reads `/proc` and sets the gauges (with the current recorder) of what it found.
pub fn record() {
    let stats = read();
    if let Some(v) = stats.cpu_seconds {
        gauge!(CPU_SECONDS).set(v);
    }
    if let Some(v) = stats.resident_bytes {
        gauge!(RESIDENT_MEMORY).set(v as f64);
    }
    if let Some(v) = stats.open_fds {
        gauge!(OPEN_FDS).set(v as f64);
    }
    if let Some(v) = stats.max_fds {
        gauge!(MAX_FDS).set(v as f64);
    }
    if let Some(v) = stats.start_time_seconds {
        gauge!(START_TIME).set(v);
    }
}

/// One reading of this process' `/proc` files (all `None` off Linux).
pub fn read() -> ProcessStats {
    let text = |path: &str| std::fs::read_to_string(path).ok();
    let stat = text("/proc/self/stat").and_then(|s| parse_stat(&s));
    let boot = text("/proc/stat").and_then(|s| parse_boot_time(&s));
    ProcessStats {
        cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / TICKS_PER_SECOND),
        resident_bytes: text("/proc/self/status").and_then(|s| parse_vm_rss(&s)),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64),
        max_fds: text("/proc/self/limits").and_then(|s| parse_max_open_files(&s)),
        start_time_seconds: stat
            .zip(boot)
            .map(|(s, boot)| boot as f64 + s.starttime as f64 / TICKS_PER_SECOND),
    }
}

/// The fields of `/proc/self/stat` used here, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub utime: u64,
    pub stime: u64,
    /// Since boot.
    pub starttime: u64,
}

/// Parses `/proc/<pid>/stat`: fields after the command name, which is in
/// parentheses and may itself hold spaces and `)`, so parsing starts after the
/// last `)`. Fields 14, 15 and 22 (1-based) are utime, stime and starttime.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // `rest` starts at field 3 (state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// The `VmRSS:` line of `/proc/<pid>/status`, in bytes.
pub fn parse_vm_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits` (`None` when
/// unlimited).
pub fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `btime` line of `/proc/stat`: boot time, unix seconds.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("btime "))?;
    line["btime ".len()..].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (penguin (x) y) S 1 4242 4242 0 -1 4194560 9123 0 12 0 \
        734 215 0 0 20 0 17 0 98765 1234567890 5120 18446744073709551615 1 1 0 0 0 0 0 \
        4096 17663 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(
            stat,
            Stat {
                utime: 734,
                stime: 215,
                starttime: 98765
            }
        );
        assert_eq!(parse_stat("4242 (cut short) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn rss_is_read_in_bytes() {
        let status = "Name:\tpenguin\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(20_971_520));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 pages\n"), None);
    }

    #[test]
    fn the_soft_limit_of_open_files_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max cpu time              unlimited            unlimited            seconds   \n\
            Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), None);
    }

    #[test]
    fn boot_time_is_read() {
        let stat = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1765000000\nprocesses 7\n";
        assert_eq!(parse_boot_time(stat), Some(1_765_000_000));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read_on_linux() {
        let stats = read();
        assert!(stats.resident_bytes.unwrap() > 0);
        assert!(stats.open_fds.unwrap() >= 3);
        assert!(stats.max_fds.unwrap() >= stats.open_fds.unwrap());
        let start = stats.start_time_seconds.unwrap();
        assert!(start > 1.5e9, "{start}");
        assert!(stats.cpu_seconds.unwrap() >= 0.0);
    }
}
