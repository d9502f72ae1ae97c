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

/// Every string in `v`, with its place (`table.column`, `manifest.host.hostname`).
fn walk(v: &Value, place: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((place.to_string(), s.clone())),
        Value::Array(a) => a.iter().for_each(|v| walk(v, place, out)),
        Value::Object(o) => {
            for (k, v) in o {
                walk(v, &format!("{place}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// Every string of every table (`SELECT *` of each, all columns) and of the manifest.
fn every_string(bundle: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let tables: Vec<String> = column(
        bundle,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'bundle' AND table_type = 'BASE TABLE'",
    );
    assert!(tables.len() >= 17, "{tables:?}");
    for t in &tables {
        let json = ok(&perfpack([
            "sql",
            bundle,
            "--format",
            "json",
            "-q",
            &format!("SELECT * FROM {t}"),
        ]));
        walk(&serde_json::from_str(&json).unwrap(), t, &mut out);
    }
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(bundle).join("manifest.json")).unwrap(),
    )
    .unwrap();
    walk(&m, "manifest", &mut out);
    out
}

#[test]
fn a_redacted_bundle_holds_no_identifying_string_anywhere_and_check_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let basic = fixture("basic").display().to_string();
    // What identifies the machine and its users in the fixture, known from the generator.
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("basic").join("manifest.json")).unwrap(),
    )
    .unwrap();
    let hostname = m["host"]["hostname"].as_str().unwrap().to_string();
    let boot_id = m["host"]["boot_id"].as_str().unwrap().to_string();
    assert_eq!(hostname, "fixture-basic");
    let originals = every_string(&basic);
    let has = |needle: &str| originals.iter().any(|(_, s)| s.contains(needle));
    // The original holds each of them (so the test below can fail).
    for needle in [
        &hostname,
        &boot_id,
        "alice",
        "/home/",
        "/root/",
        "/tmp/alice",
        "10.0.0.7",
        "-Xmx2g",
    ] {
        assert!(has(needle), "{needle} not in the fixture");
    }
    // `--check` finds them, exit 1, one line per kind.
    let out = perfpack(["redact", &basic, "--check"]);
    assert_eq!(out.status.code(), Some(1));
    let listed = String::from_utf8_lossy(&out.stdout);
    for kind in [
        "host identity",
        "IP addresses",
        "paths under /home, /root or /tmp",
        "command lines",
        "thread names",
    ] {
        assert!(listed.contains(&format!("  {kind}: ")), "{kind}: {listed}");
    }
    assert!(
        listed.contains("fixture-basic") && listed.contains("10.0.0.7"),
        "{listed}"
    );

    // The flags of the measured leak: the host's identity goes with them too.
    let red = dir.path().join("red.ppk").display().to_string();
    ok(&perfpack([
        "redact",
        &basic,
        "-o",
        &red,
        "--comm",
        "--paths",
        "--cmdline",
        "--salt",
        "k",
    ]));
    let strings = every_string(&red);
    assert!(strings.len() > 10_000, "{}", strings.len());
    // Command lines whole, and their arguments (after the program): those with a digit, a
    // slash or a dash anywhere, the others as whole strings (`orders` may be in a symbol).
    let cmdlines = column(
        &basic,
        "SELECT DISTINCT cmdline FROM thread WHERE cmdline IS NOT NULL",
    );
    let args: Vec<String> = cmdlines
        .iter()
        .flat_map(|c| c.split(' ').skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|w| w.len() >= 3)
        .collect();
    assert!(args.iter().any(|a| a == "-Xmx2g"), "{args:?}");
    let mut forbidden: Vec<String> = vec![
        hostname.clone(),
        boot_id.clone(),
        "alice".into(),
        "10.0.0.7".into(),
    ];
    forbidden.extend(cmdlines.iter().cloned());
    let (marked, plain): (Vec<String>, Vec<String>) = args
        .into_iter()
        .partition(|a| a.contains(|c: char| c.is_ascii_digit() || c == '/' || c == '-'));
    forbidden.extend(marked);
    for (place, s) in &strings {
        for f in &forbidden {
            assert!(!s.contains(f.as_str()), "{f:?} left in {place}: {s:?}");
        }
        assert!(!plain.contains(s), "argument {s:?} left in {place}");
        for dir in ["/home/", "/root/", "/tmp/"] {
            assert!(
                !s.contains(dir) || s.starts_with("/tmp/perf-"),
                "a path under {dir} left in {place}: {s:?}"
            );
        }
    }
    // The host column is a token, the same in every table.
    let hosts = column(&red, "SELECT DISTINCT host FROM stack_sample");
    assert_eq!(hosts.len(), 1);
    assert!(hosts[0].starts_with("host-"), "{hosts:?}");
    // And the check passes on the copy.
    let out = perfpack(["redact", &red, "--check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no identifying values found"));
    // A bad request: --check with an output (clap's usage error, exit 2).
    let out = perfpack(["redact", &basic, "--check", "-o", &red]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'--check' cannot be used with"));
}
