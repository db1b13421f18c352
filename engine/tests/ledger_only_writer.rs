//! The job ledger is the only writer of `send_jobs` rows (issue 15, item 5):
//! no `UPDATE send_jobs` in the workspace's sources outside
//! `engine/src/store/ledger/`. Creating jobs (`INSERT`) stays with lead import
//! and campaign start; tests may write rows directly to stage a scenario.
//!
//! A plain scan of the source text, so a new status write elsewhere fails here
//! before review has to find it.

use std::path::{Path, PathBuf};

/// Writers allowed outside the ledger, each with the reason it is still there.
const ALLOWED: &[(&str, &str)] = &[];

/// The folders whose `.rs` and `.sql` files run in production.
const SOURCES: &[&str] = &["engine/src", "actors/src", "api/src", "src"];

#[test]
fn no_send_jobs_update_outside_the_ledger() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in SOURCES {
        collect(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "scanned too few files: {}", files.len());
    let mut offenders = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        if relative.starts_with("engine/src/store/ledger/")
            || ALLOWED.iter().any(|(path, _)| *path == relative)
        {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("readable source");
        if writes_send_jobs(&text) {
            offenders.push(relative);
        }
    }
    assert!(
        offenders.is_empty(),
        "send_jobs written outside engine/src/store/ledger/: {offenders:?}"
    );
}

#[test]
fn the_scan_sees_updates_however_they_are_spelled() {
    assert!(writes_send_jobs("\"UPDATE send_jobs SET status = 'x'\""));
    assert!(writes_send_jobs("update\n             send_jobs j SET"));
    assert!(!writes_send_jobs("INSERT INTO send_jobs (tenant_id)"));
    assert!(!writes_send_jobs("UPDATE send_jobs_archive SET"));
}

/// Whether `text` holds `UPDATE send_jobs` (any case, any whitespace between).
fn writes_send_jobs(text: &str) -> bool {
    let words: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    words
        .windows(2)
        .any(|pair| pair[0] == "update" && pair[1] == "send_jobs")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "rs" || ext == "sql")
        {
            out.push(path);
        }
    }
}
