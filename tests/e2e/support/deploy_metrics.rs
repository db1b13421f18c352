//! The metric names of the deployment files (`deploy_alerts` checks them): which
//! names a PromQL expression reads, and which names the code declares, read
//! from the workspace's sources (`const NAME: &str = "penguin_…"`), so a metric
//! renamed or removed in the code fails the check naming where it is used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::deploy_text::repo;

/// Names the PromQL `expr` reads: every identifier outside label matchers,
/// ranges and strings that is neither a function (followed by `(`), a keyword,
/// a grouping list (`by (…)`) nor a number.
pub fn metric_names_in(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 11] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
    ];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_past(&chars, i + 1, c);
        } else if c == '{' {
            i = skip_past(&chars, i + 1, '}');
        } else if c == '[' {
            i = skip_past(&chars, i + 1, ']');
        } else if c == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == '.' && i + 1 < chars.len()) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            // `sum by (le) (…)`: an aggregation with its grouping first.
            let word_after: String = chars[next..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            let call =
                chars.get(next) == Some(&'(') || word_after == "by" || word_after == "without";
            if GROUPING.contains(&word.as_str()) && call {
                i = skip_past(&chars, next + 1, ')');
            } else if !call && !KEYWORDS.contains(&word.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

fn skip_past(chars: &[char], from: usize, close: char) -> usize {
    chars[from.min(chars.len())..]
        .iter()
        .position(|&c| c == close)
        .map_or(chars.len(), |at| from + at + 1)
}

/// Process metrics (`process_*`), which the exporter may take from a crate
/// rather than declare as constants: the names of the issue-20 contract.
pub const PROCESS_METRICS: [&str; 5] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

/// The histograms of the issue-20 contract: only these have `_bucket` series.
pub const HISTOGRAMS: [&str; 4] = [
    "penguin_pickup_latency_seconds",
    "penguin_api_request_duration_seconds",
    "penguin_smtp_transaction_seconds",
    "penguin_db_query_duration_seconds",
];

/// Every metric name the code declares: the string of each
/// `const NAME: &str = "penguin_…"` (or `"process_…"`) in the sources of the
/// workspace's crates, with where it was found.
pub fn declared_metrics() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for dir in ["src", "config/src", "engine/src", "actors/src", "api/src"] {
        collect_consts(&repo(), &repo().join(dir), &mut found);
    }
    found
}

fn collect_consts(root: &Path, dir: &Path, found: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_consts(root, &path, found);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let Some((head, tail)) = line.split_once(": &str = \"") else {
                continue;
            };
            if !head.contains("const ") {
                continue;
            }
            let Some((name, _)) = tail.split_once('"') else {
                continue;
            };
            if name.starts_with("penguin_") || name.starts_with("process_") {
                let at = path.strip_prefix(root).unwrap_or(&path).display();
                found.insert(name.to_string(), at.to_string());
            }
        }
    }
}

/// Checks every name `exprs` read (`(where, expr)` pairs) against the metrics
/// the code exports; panics listing every unknown one with where it is used.
pub fn assert_known_metrics(exprs: &[(String, String)]) {
    let declared = declared_metrics();
    let known = |name: &str| {
        name == "up"
            || PROCESS_METRICS.contains(&name)
            || declared.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| HISTOGRAMS.contains(&base) && declared.contains_key(base))
            })
    };
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    for (place, expr) in exprs {
        let names = metric_names_in(expr);
        assert!(!names.is_empty(), "{place}: `{expr}` reads no metric");
        for name in names.iter().filter(|n| !known(n)) {
            unknown.insert(format!(
                "  {name}  (in {place}: no `const …: &str = \"{}\"` in the workspace sources)",
                histogram_base(name)
            ));
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics used by the dashboard or the alerts that the code does not export:\n{}",
        unknown.into_iter().collect::<Vec<_>>().join("\n")
    );
}

fn histogram_base(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}
