//! Shared helpers of the analyzer's integration tests.

mod bad_input;
mod browser;
mod cgroups;
#[cfg(feature = "cluster")]
mod cluster;
mod compare;
mod cpu_figures;
mod crash;
mod dataset;
mod event_flamegraphs;
mod firefox;
mod fleet;
mod import;
mod import_perf_data;
mod info;
mod pictures;
mod redact;
mod report;
mod s3;
mod shell;
mod sql;
mod tidy;
mod view_truth;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The committed fixture bundle `name` (e.g. `basic`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../testdata/{name}.ppk"))
}

/// Runs `perfpack` with these arguments.
pub fn perfpack<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_perfpack"))
        .args(args)
        .output()
        .expect("perfpack runs")
}

/// Stdout of a run that must succeed.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "perfpack failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

/// Stderr of a run that must fail, checked to be one line.
pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "perfpack should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8(out.stderr.clone()).expect("utf-8 error");
    let lines: Vec<_> = err.lines().filter(|l| !l.contains("warning:")).collect();
    assert_eq!(lines.len(), 1, "error must be one line: {err}");
    // A panic prints "internal error" (the one-line hook in main.rs), or "panicked" with
    // RUST_BACKTRACE set.
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    lines[0].to_string()
}

/// Copies a directory tree (a bundle) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Compares `actual` with the golden file `tests/data/<rel>`: created when missing, rewritten
/// with `PERFPACK_BLESS=1`, otherwise the first differing line is reported as `file:line`.
pub fn golden(rel: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel);
    // A golden is written only when asked for: a missing one fails, so a test cannot pass by
    // producing its own expectation.
    if std::env::var_os("PERFPACK_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    assert!(
        path.exists(),
        "{}: no golden file (PERFPACK_BLESS=1 writes it; check it by hand first)",
        path.display()
    );
    let expected = std::fs::read_to_string(&path).unwrap();
    let mut exp = expected.lines();
    let mut act = actual.lines();
    for line_no in 1.. {
        match (exp.next(), act.next()) {
            (None, None) => return,
            (e, a) if e == a => continue,
            (e, a) => panic!(
                "{}:{line_no}: expected {:?}, got {:?} (PERFPACK_BLESS=1 rewrites)",
                path.display(),
                e.unwrap_or("<end>"),
                a.unwrap_or("<end>")
            ),
        }
    }
}

/// Held by every test of this binary that records the machine, so that no two record at once
/// (they share perf_event, tracefs and both CPUs).
pub static LIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The guard of [`LIVE`].
pub fn live() -> std::sync::MutexGuard<'static, ()> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Rows of a query over a bundle, as JSON objects.
pub fn sql_rows(bundle: &Path, sql: &str) -> Vec<serde_json::Value> {
    let out = ok(&perfpack([
        "sql",
        bundle.to_str().unwrap(),
        "-q",
        sql,
        "--format",
        "json",
    ]));
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Stack samples a recorded bundle's manifest says were lost.
pub fn lost_samples(bundle: &Path) -> u64 {
    let info: serde_json::Value = serde_json::from_str(&ok(&perfpack([
        "info",
        bundle.to_str().unwrap(),
        "--format",
        "json",
    ])))
    .unwrap();
    info[0]["manifest"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "perf-samples")
        .flat_map(|s| s["losses"].as_array().cloned().unwrap_or_default())
        .map(|l| l["count"].as_u64().unwrap())
        .sum()
}

/// `1,048,576`: a count as inferno writes it in a flame graph's titles.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
