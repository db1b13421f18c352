//! The arithmetic and readings behind `penguin bench`'s figures, kept pure
//! where they can be so they are unit-tested: percentiles, per-second rates
//! over a window, CPU % from clock ticks, and parsers for `/proc/self/stat`,
//! `/proc/self/status` and Redis `INFO`. The bench modes call these; nothing
//! here talks to the engine.

/// Linux reports `utime`/`stime` in USER_HZ ticks, which is 100 on every
/// architecture Linux exposes to user space (the kernel converts to it).
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// Nearest-rank percentile (`q` in 0..=1) of already sorted values; `None`
/// for none. p100 is the maximum, p0 the minimum.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "not sorted");
    let q = q.clamp(0.0, 1.0);
    // Nearest rank: the smallest value with at least q of the values at or below it.
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99 and max of `values` (sorted here), or `None` for none.
pub fn summary(values: &mut [f64]) -> Option<(f64, f64, f64)> {
    values.sort_by(f64::total_cmp);
    Some((
        percentile(values, 0.5)?,
        percentile(values, 0.99)?,
        *values.last()?,
    ))
}

/// What a cumulative counter moved between two readings, per second, after
/// taking away `own` units the measurement itself caused (its own `INFO`
/// call, its own query). A counter that went backwards (a restart) reads 0.
pub fn rate_per_sec(start: u64, end: u64, own: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    end.saturating_sub(start).saturating_sub(own) as f64 / secs
}

/// CPU time spent (`ticks` of [`CLOCK_TICKS_PER_SEC`]) as a percentage of one
/// core over `secs` of wall time.
pub fn cpu_percent_of_core(ticks: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    ticks as f64 / CLOCK_TICKS_PER_SEC / secs * 100.0
}

/// `utime + stime` (clock ticks) from the text of `/proc/<pid>/stat`. The
/// command name may hold spaces and parentheses, so fields are counted from
/// the last `)`: `utime` and `stime` are fields 14 and 15 of the line.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is fields[0], so field n is fields[n - 3].
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// A `Key:   123 kB` line of `/proc/<pid>/status` (VmRSS, VmHWM), in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// A `field:value` line of a Redis `INFO` answer, as a number.
pub fn parse_info_field(info: &str, field: &str) -> Option<f64> {
    info.lines().find_map(|line| {
        let value = line.trim_end().strip_prefix(field)?.strip_prefix(':')?;
        value.parse().ok()
    })
}

/// CPU ticks this process has used so far (all threads); 0 where unknown.
pub fn own_cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_cpu_ticks(&s))
        .unwrap_or(0)
}

/// Resident memory of this process now (`VmRSS`) and at its peak (`VmHWM`),
/// in KiB; 0 where unknown.
pub fn own_rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (
        parse_status_kib(&status, "VmRSS").unwrap_or(0),
        parse_status_kib(&status, "VmHWM").unwrap_or(0),
    )
}

/// KiB as MiB with one decimal, for tables.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&values, 1.0), Some(100.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
        // Three values: p50 is the middle one, p99 the largest.
        assert_eq!(percentile(&[1.0, 2.0, 30.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 30.0], 0.99), Some(30.0));
    }

    #[test]
    fn summary_sorts_first() {
        let mut values = vec![5.0, -1.0, 3.0, 100.0];
        assert_eq!(summary(&mut values), Some((3.0, 100.0, 100.0)));
        assert_eq!(summary(&mut []), None);
    }

    #[test]
    fn rates_take_away_own_commands() {
        assert_eq!(rate_per_sec(1_000, 7_001, 1, 60.0), 100.0);
        assert_eq!(rate_per_sec(10, 10, 1, 60.0), 0.0, "never negative");
        assert_eq!(rate_per_sec(10, 5, 0, 60.0), 0.0, "a restarted counter");
        assert_eq!(rate_per_sec(0, 100, 0, 0.0), 0.0, "no window");
    }

    #[test]
    fn cpu_percent_of_one_core() {
        // 60 s at 100 ticks/s is 6,000 ticks of one core.
        assert_eq!(cpu_percent_of_core(6_000, 60.0), 100.0);
        assert_eq!(cpu_percent_of_core(120, 60.0), 2.0);
        assert_eq!(cpu_percent_of_core(12_000, 60.0), 200.0, "two cores");
    }

    #[test]
    fn parses_proc_stat_with_a_strange_name() {
        let stat = "4242 (pen guin) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 1234 567 0 0 20 0 9 0 100 1000000 5000";
        assert_eq!(parse_cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_cpu_ticks("1 (a) S 1"), None);
    }

    #[test]
    fn parses_proc_status_and_redis_info() {
        let status = "Name:\tpenguin\nVmHWM:\t  417000 kB\nVmRSS:\t   26624 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(26_624));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(417_000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        let info = "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:60123\r\n# CPU\r\nused_cpu_sys:1.500000\r\n";
        assert_eq!(
            parse_info_field(info, "total_commands_processed"),
            Some(60_123.0)
        );
        assert_eq!(parse_info_field(info, "used_cpu_sys"), Some(1.5));
        assert_eq!(parse_info_field(info, "total_commands"), None);
    }

    #[test]
    fn reads_this_process() {
        let (rss, peak) = own_rss_kib();
        assert!(rss > 0 && peak >= rss, "rss {rss} peak {peak}");
        assert!(
            std::fs::read_to_string("/proc/self/stat").is_ok_and(|s| parse_cpu_ticks(&s).is_some())
        );
    }
}
