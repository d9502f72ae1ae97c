//! Which service: two cgroup v2 groups made here, a different workload in each, the whole box
//! recorded. Checked against the groups' own `cpu.stat` and the workloads' own pids.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{ok, perfpack};

/// The cgroup2 mount: `/sys/fs/cgroup/unified` on a hybrid v1+v2 machine, else
/// `/sys/fs/cgroup` when it is v2.
fn cgroup2() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists())
}

/// A group removed when the test ends, whatever happens.
struct Group(PathBuf);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn usage_ns(group: &Path) -> f64 {
    let stat = std::fs::read_to_string(group.join("cpu.stat")).unwrap();
    let usec: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    usec * 1e3
}

use super::sql_rows as rows;

#[test]
fn samples_carry_their_cgroup_and_a_flame_graph_selects_one_service() {
    let bin = Path::new(env!("CARGO_BIN_EXE_perfpack")).parent().unwrap();
    let (recorder, workload) = (
        bin.join("perfpack-record"),
        bin.join("perfpack-test-workload"),
    );
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let Some(mount) = cgroup2().filter(|_| root) else {
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_RECORDING",
            "needs root and a cgroup v2 mount to make groups in",
        );
        return;
    };
    let _live = super::live();
    let tag = std::process::id();
    let (a, b) = (
        Group(mount.join(format!("perfpack-test-a-{tag}"))),
        Group(mount.join(format!("perfpack-test-b-{tag}"))),
    );
    for g in [&a, &b] {
        std::fs::create_dir(&g.0).unwrap();
    }
    // The command the recorder runs (-a: the whole box meanwhile) starts each workload in its
    // group: the shell moves itself in, then execs the workload, and prints its pid. A's shell
    // first spins for ~0.2 s of CPU where it started, so its thread is sampled in two cgroups.
    let script = format!(
        "sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; \
         echo $$ > {a}/cgroup.procs && exec {w} 3' & echo a $!; \
         sh -c 'echo $$ > {b}/cgroup.procs && exec {w} syscalls 3' & echo b $!; wait",
        a = a.0.display(),
        b = b.0.display(),
        w = workload.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("cg.ppk");
    let out = std::process::Command::new(&recorder)
        .args(["-a", "--preset", "sched", "-o"])
        .arg(&bundle)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid_of = |which: &str| -> i64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{which} ")))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid of {which} in {stdout}"))
    };
    let (pid_a, pid_b) = (pid_of("a"), pid_of("b"));
    let (path_a, path_b) = (
        format!("/perfpack-test-a-{tag}"),
        format!("/perfpack-test-b-{tag}"),
    );

    // Every sample of each workload is in its group (its shell, before the exec, may be seen
    // in the root group before it moved itself).
    let by_pid: BTreeMap<(i64, String), u64> = rows(
        &bundle,
        &format!(
            "SELECT pid, COALESCE(cgroup, '(none)') AS cgroup, COUNT(*) AS n FROM cgroup_sample \
             WHERE pid IN ({pid_a}, {pid_b}) AND comm LIKE 'perfpack-test%' GROUP BY pid, cgroup"
        ),
    )
    .iter()
    .map(|r| {
        (
            (
                r["pid"].as_i64().unwrap(),
                r["cgroup"].as_str().unwrap().to_string(),
            ),
            r["n"].as_u64().unwrap(),
        )
    })
    .collect();
    let keys: Vec<_> = by_pid.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![(pid_a, path_a.clone()), (pid_b, path_b.clone())],
        "samples of the workloads by cgroup: {by_pid:?}"
    );

    // A's thread moved while sampled: its shell's samples before the move are in the group it
    // started in, and `--cgroup` (below) leaves them out.
    let before_move = rows(
        &bundle,
        &format!(
            "SELECT COUNT(*) AS n FROM cgroup_sample WHERE tid = {pid_a} AND comm = 'sh' \
             AND cgroup <> '{path_a}'"
        ),
    )[0]["n"]
        .as_u64()
        .unwrap();
    assert!(before_move > 0, "A's shell was not sampled before it moved");

    // A flame graph of one group has none of the other's frames.
    let folded = |pattern: &str| {
        ok(&perfpack([
            "flamegraph",
            bundle.to_str().unwrap(),
            "--cgroup",
            pattern,
            "--folded",
            "-o",
            "-",
        ]))
    };
    let (fa, fb) = (folded(&format!("perfpack-test-a-{tag}")), folded(&path_b));
    assert!(fa.contains("perfpack_test_hot_loop"), "{fa}");
    assert!(!fb.contains("perfpack_test_hot_loop"), "{fb}");
    // B's workload, and its shell once it had moved itself in, before the exec.
    assert!(
        fb.lines()
            .all(|l| l.starts_with("perfpack-test-w;") || l.starts_with("sh;")),
        "only B's workload: {fb}"
    );

    // Run-queue waits by cgroup: both groups, and every wait counted once (a thread's spans
    // do not overlap).
    let latency = |by: Option<&str>| -> Value {
        let mut args = vec![
            "latency",
            bundle.to_str().unwrap(),
            "--source",
            "runq",
            "--format",
            "json",
        ];
        args.extend(by.map(|b| ["--by", b]).into_iter().flatten());
        serde_json::from_str(&ok(&perfpack(args))).unwrap()
    };
    let count = |groups: &Value| -> u64 {
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["count"].as_u64().unwrap())
            .sum()
    };
    let (split, whole) = (latency(Some("cgroup")), latency(None));
    assert_eq!(count(&split), count(&whole));
    let names: Vec<&str> = split["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&path_a.as_str()) && names.contains(&path_b.as_str()),
        "{names:?}"
    );

    // compare --cgroup counts the CPU samples of that group only: cgroup_top's count for it.
    let c: Value = serde_json::from_str(&ok(&perfpack([
        "compare",
        bundle.to_str().unwrap(),
        bundle.to_str().unwrap(),
        "--cgroup",
        &format!("perfpack-test-a-{tag}"),
        "--top",
        "1000",
        "--format",
        "json",
    ])))
    .unwrap();
    let in_a = rows(
        &bundle,
        &format!("SELECT samples FROM cgroup_top WHERE cgroup = '{path_a}'"),
    )[0]["samples"]
        .as_u64()
        .unwrap();
    assert_eq!(c["before"]["busy_samples"].as_u64(), Some(in_a));
    let functions = c["functions"].to_string();
    assert!(functions.contains("perfpack_test_hot_loop"), "{functions}");
    assert!(
        !functions.contains("perfpack_test_workload::syscalls"),
        "{functions}"
    );

    // The report's services table has a row per group.
    let page = dir.path().join("cg.html");
    ok(&perfpack([
        "report",
        bundle.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]));
    let html = std::fs::read_to_string(&page).unwrap();
    let services = html
        .split("<section id=\"services\">")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .expect("a services section");
    for path in [&path_a, &path_b] {
        assert!(
            services.contains(&format!("<tr><td>{path}</td>")),
            "{path} not in {services}"
        );
    }

    // A report of one service: its threads' flame graphs and tables, none of the other's.
    let page_a = dir.path().join("cg-a.html");
    ok(&perfpack([
        "report",
        bundle.to_str().unwrap(),
        "--cgroup",
        &path_a,
        "-o",
        page_a.to_str().unwrap(),
    ]));
    let html_a = std::fs::read_to_string(&page_a).unwrap();
    assert!(html_a.contains("Selected: cgroup"), "no selection note");
    let cpu = html_a
        .split("<section id=\"cpu\">")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .expect("a CPU section");
    assert!(
        cpu.contains("perfpack_test_hot_loop"),
        "A's loop not in its CPU section"
    );
    assert!(
        !html_a.contains("perfpack_test_workload::syscalls"),
        "B's workload in A's report"
    );
    assert!(
        cpu.contains(&format!("<td>{pid_a}</td>")),
        "A's pid not among the top"
    );
    assert!(
        !cpu.contains(&format!("<td>{pid_b}</td>")),
        "B's pid among A's top"
    );

    // Cgroup paths name services: `redact --check` lists them, and a redacted copy keeps
    // none of them.
    let check = perfpack(["redact", bundle.to_str().unwrap(), "--check"]);
    let listed = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(listed.contains("cgroup.path"), "{listed}");
    let redacted = dir.path().join("red.ppk");
    ok(&perfpack([
        "redact",
        bundle.to_str().unwrap(),
        "-o",
        redacted.to_str().unwrap(),
    ]));
    let paths = rows(&redacted, "SELECT path FROM cgroup");
    assert!(!paths.is_empty());
    assert!(
        paths
            .iter()
            .all(|r| !r["path"].as_str().unwrap().contains("perfpack-test")),
        "{paths:?}"
    );

    // `perfpack info` counts each group's CPU samples as the cgroup_top view does.
    let info: Value = serde_json::from_str(&ok(&perfpack([
        "info",
        bundle.to_str().unwrap(),
        "--format",
        "json",
    ])))
    .unwrap();
    let listed: BTreeMap<String, u64> = info[0]["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cgroup"].as_str().unwrap().to_string(),
                c["samples"].as_u64().unwrap(),
            )
        })
        .collect();
    let viewed: BTreeMap<String, u64> = rows(
        &bundle,
        "SELECT COALESCE(cgroup, '(none)') AS cgroup, samples FROM cgroup_top",
    )
    .iter()
    .map(|r| {
        (
            r["cgroup"].as_str().unwrap().to_string(),
            r["samples"].as_u64().unwrap(),
        )
    })
    .collect();
    assert_eq!(listed, viewed);
    assert!(
        listed.contains_key(&path_a) && listed.contains_key(&path_b),
        "{listed:?}"
    );

    // Each group's CPU time by its samples is what the kernel charged the group.
    let weights: BTreeMap<String, f64> = rows(
        &bundle,
        "SELECT cgroup, weight FROM cgroup_top WHERE cgroup IS NOT NULL",
    )
    .iter()
    .map(|r| {
        (
            r["cgroup"].as_str().unwrap().to_string(),
            r["weight"].as_f64().unwrap(),
        )
    })
    .collect();
    let lost_samples = super::lost_samples(&bundle);
    for (group, path) in [(&a, &path_a), (&b, &path_b)] {
        let charged = usage_ns(&group.0);
        let sampled = weights.get(path).copied().unwrap_or(0.0);
        // A sample stands for 10.1 ms at 99 Hz; lost samples count against the sampled side.
        let slack = 0.1 * charged + lost_samples as f64 * 10.1e6;
        eprintln!(
            "{path}: {:.3} s sampled, {:.3} s charged by cpu.stat, {lost_samples} samples lost",
            sampled / 1e9,
            charged / 1e9
        );
        assert!(
            (sampled - charged).abs() <= slack,
            "{path}: {:.3} s sampled, {:.3} s charged by cpu.stat ({lost_samples} samples lost)",
            sampled / 1e9,
            charged / 1e9
        );
        assert!(charged > 1e9, "{path}: the workload ran {charged} ns");
    }
}

/// The fixture as a bundle recorded before cgroups were: no `cgroup` or `task_cgroup` table in
/// its manifest or its files.
fn bundle_from_before_cgroups(dir: &Path) -> PathBuf {
    let b = dir.join("old.ppk");
    super::copy_dir(&super::fixture("basic"), &b);
    let manifest = b.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    for t in ["cgroup", "task_cgroup"] {
        m["tables"].as_object_mut().unwrap().remove(t);
        std::fs::remove_dir_all(b.join("tables").join(t)).unwrap();
    }
    std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    b
}

#[test]
fn a_bundle_from_before_cgroups_opens_with_no_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let b = bundle_from_before_cgroups(dir.path());
    let info = ok(&perfpack(["info", b.to_str().unwrap()]));
    assert!(!info.contains("CPU samples  container"), "{info}");
    let r = rows(
        &b,
        "SELECT COUNT(*) AS n, COUNT(cgroup) AS with FROM cgroup_sample",
    );
    assert_eq!(
        (r[0]["n"].as_u64(), r[0]["with"].as_u64()),
        (Some(3960), Some(0))
    );
    ok(&perfpack([
        "latency",
        b.to_str().unwrap(),
        "--by",
        "cgroup",
    ]));
    ok(&perfpack(["report", b.to_str().unwrap(), "-o", "-"]));
    let err = super::fails(&perfpack([
        "flamegraph",
        b.to_str().unwrap(),
        "--cgroup",
        "ssh.service",
        "-o",
        "-",
    ]));
    assert!(err.contains("old.ppk: no cgroups recorded"), "{err}");
}

#[test]
fn a_bundle_without_cgroups_says_so_when_asked_for_one() {
    let b = super::fixture("basic");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("r.html");
    for command in ["flamegraph", "report"] {
        let err = super::fails(&perfpack([
            command,
            b.to_str().unwrap(),
            "--cgroup",
            "ssh.service",
            "-o",
            page.to_str().unwrap(),
        ]));
        assert!(
            err.contains("basic.ppk: no cgroups recorded"),
            "{command}: {err}"
        );
        assert!(!page.exists(), "{command} wrote {}", page.display());
    }
}
