//! `perfpack redact`: no original name or path is left in any file of the copy (raw bytes and
//! decoded rows), the copy compares as unchanged with its original, tokens are stable across
//! bundles so that before/after comparisons still line up, and bad requests fail cleanly.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::{fails, fixture, ok, perfpack};

fn column(bundle: &str, sql: &str) -> Vec<String> {
    let csv = ok(&perfpack(["sql", bundle, "--format", "csv", "-q", sql]));
    csv.lines()
        .skip(1)
        .map(|l| l.trim_matches('"').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Every thread name, path and command line of the bundle, except those kept on purpose (idle
/// tasks, bracketed pseudo-paths, JIT maps).
fn originals(bundle: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sql in [
        "SELECT DISTINCT comm FROM stack_sample",
        "SELECT DISTINCT comm FROM thread",
        "SELECT DISTINCT cmdline FROM thread",
        "SELECT DISTINCT exe FROM thread",
        "SELECT DISTINCT path FROM mapping",
        "SELECT DISTINCT module FROM frame",
        "SELECT DISTINCT prev_comm FROM sched_switch",
        "SELECT DISTINCT next_comm FROM sched_switch",
        "SELECT DISTINCT comm FROM sched_wakeup",
        "SELECT DISTINCT comm FROM block_rq",
        "SELECT DISTINCT filename FROM sched_process",
        "SELECT DISTINCT comm FROM ftrace_event",
    ] {
        out.extend(column(bundle, sql));
    }
    // Paths inside configuration values (`root=/dev/x`, `(/dev/x)`) and mount points.
    for v in column(bundle, "SELECT value FROM config") {
        for w in v.split(' ') {
            if let Some(i) = w.find('/') {
                out.insert(w[i..].trim_end_matches(')').to_string());
            }
        }
    }
    for k in column(bundle, "SELECT key FROM config WHERE key LIKE 'mount.%'") {
        out.insert(k["mount.".len()..].to_string());
    }
    out.retain(|s| {
        !(s.starts_with("swapper")
            || s == "<idle>"
            || s.starts_with('[')
            || s.starts_with("/tmp/perf-"))
    });
    out
}

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn no_original_name_is_left_and_the_copy_compares_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let basic = fixture("basic").display().to_string();
    let names = originals(&basic);
    assert!(names.len() > 15, "{names:?}");
    assert!(
        names.contains("postgres") && names.contains("/usr/sbin/nginx"),
        "{names:?}"
    );
    let red = dir.path().join("red.ppk");
    let red_s = red.display().to_string();
    ok(&perfpack([
        "redact",
        &basic,
        "-o",
        &red_s,
        "--comm",
        "--paths",
        "--cmdline",
    ]));

    // Raw bytes of every file (manifest, Parquet footers and statistics, pages).
    let mut files = Vec::new();
    all_files(&red, &mut files);
    assert!(files.len() > 10);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for n in names.iter().filter(|n| n.len() >= 5) {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "{n:?} left in {}",
                f.display()
            );
        }
    }
    // Decoded rows: every table dumped, no original value anywhere.
    for table in [
        "stack_sample",
        "thread",
        "mapping",
        "frame",
        "sched_switch",
        "sched_wakeup",
        "block_rq",
        "sched_process",
        "ftrace_event",
        "syscall",
        "config",
    ] {
        let dump = ok(&perfpack([
            "sql",
            &red_s,
            "--format",
            "csv",
            "-q",
            &format!("SELECT * FROM {table}"),
        ]));
        for n in names.iter().filter(|n| n.len() >= 4) {
            assert!(!dump.contains(n.as_str()), "{n:?} left in table {table}");
        }
    }
    assert!(originals(&red_s).iter().all(|s| s.starts_with("comm-")
        || s.starts_with("/redacted/")
        || s.starts_with("cmdline-")));

    // The copy compares as unchanged: same busy time, no function moved, same latencies.
    let cmp: Value = serde_json::from_str(&ok(&perfpack([
        "compare", &basic, &red_s, "--format", "json",
    ])))
    .unwrap();
    assert!(
        cmp["verdict"].as_str().unwrap().contains("unchanged"),
        "{}",
        cmp["verdict"]
    );
    for f in cmp["functions"].as_array().unwrap() {
        assert_eq!(f["z"].as_f64(), Some(0.0), "{f}");
    }
    for l in cmp["latency"].as_array().unwrap() {
        assert!(l["ks"].is_null() || l["ks"].as_f64() == Some(0.0), "{l}");
    }
    // The flame graph has the same shape: the same weights, names replaced.
    let weights = |b: &str| -> Vec<u64> {
        let mut v: Vec<u64> = ok(&perfpack(["flamegraph", b, "--folded", "-o", "-"]))
            .lines()
            .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(weights(&basic), weights(&red_s));
}

#[test]
fn tokens_line_up_across_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = (
        fixture("before").display().to_string(),
        fixture("after").display().to_string(),
    );
    let (rb, ra) = (
        dir.path().join("b.ppk").display().to_string(),
        dir.path().join("a.ppk").display().to_string(),
    );
    ok(&perfpack(["redact", &before, "-o", &rb]));
    ok(&perfpack(["redact", &after, "-o", &ra]));
    // postgres is the same token in both copies.
    let q = "SELECT DISTINCT comm FROM stack_sample WHERE pid <> 0 ORDER BY comm";
    let (cb, ca) = (column(&rb, q), column(&ra, q));
    assert!(cb.iter().any(|c| ca.contains(c)), "{cb:?} vs {ca:?}");
    // And the comparison says what it said of the originals.
    let verdict = |a: &str, b: &str| -> String {
        let v: Value =
            serde_json::from_str(&ok(&perfpack(["compare", a, b, "--format", "json"]))).unwrap();
        v["verdict"].as_str().unwrap().to_string()
    };
    assert_eq!(verdict(&before, &after), verdict(&rb, &ra));
    // A salt gives other tokens.
    let salted = dir.path().join("s.ppk").display().to_string();
    ok(&perfpack([
        "redact", &before, "-o", &salted, "--salt", "s3cret",
    ]));
    assert!(column(&salted, q).iter().all(|c| !cb.contains(c)));
}

#[test]
fn bad_redact_requests_fail_in_one_line_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let basic = fixture("basic").display().to_string();
    let out = dir.path().join("out.ppk");
    let out_s = out.display().to_string();
    ok(&perfpack(["redact", &basic, "-o", &out_s]));
    let err = fails(&perfpack(["redact", &basic, "-o", &out_s]));
    assert!(err.contains("already exists"), "{err}");
    ok(&perfpack(["redact", &basic, "-o", &out_s, "--force"]));

    // A damaged segment: the error names it, and neither the output nor a temporary is left.
    let damaged = dir.path().join("damaged.ppk");
    super::copy_dir(&fixture("basic"), &damaged);
    let mut segs = Vec::new();
    all_files(&damaged.join("tables/stack_sample"), &mut segs);
    segs.sort();
    let bytes = std::fs::read(&segs[0]).unwrap();
    std::fs::write(&segs[0], &bytes[..bytes.len() / 2]).unwrap();
    let target = dir.path().join("never.ppk");
    let err = fails(&perfpack([
        "redact",
        &damaged.display().to_string(),
        "-o",
        &target.display().to_string(),
    ]));
    assert!(err.contains("stack_sample"), "{err}");
    assert!(!target.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().contains("redact")),
        "{left:?}"
    );
}
