//! Live recordings on this machine: symbolized stacks of a known workload, a process that exits
//! mid-recording, unavailable sources, SIGTERM, and ring mode.

use std::process::{Command, Stdio};
use std::time::Duration;

use arrow_array::{Array as _, Int32Array, StringArray};

use perfpack_schema::{Bundle, tables};

use super::{WORKLOAD, manifest_of as manifest, record, require_recording, samples};

#[test]
fn hot_function_of_a_workload_is_symbolized_with_kernel_frames_named() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("live.ppk");
    // Recording until stopped, once both workloads have exited: all of their CPU time falls
    // inside the recording, however slowly a loaded machine starts them. Frame pointers (the
    // workload keeps them, .cargo/config.toml): this test is about naming frames, user and
    // kernel. (CFI walks of this debug-built workload stop after perfpack_test_outer in 40-60%
    // of samples, where perf script's reach main: a recorder defect of its own, in the note.)
    let recording = super::start_recording(&[
        "-d",
        "120s",
        "--freq",
        "999",
        "--unwind",
        "fp",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    let workload = Command::new(WORKLOAD)
        .arg("2.5")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // A process that exits one second into the recording must keep its frames too.
    let short = Command::new(WORKLOAD)
        .arg("1.2")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let short_used = super::wait_used(short);
    let used = super::wait_used(workload);
    let (ok, said) = recording.stop();
    assert!(ok, "{said}");
    assert!(used.success && short_used.success);

    let all = samples(&bundle);
    let lost = super::lost(&bundle, "perf-lost-records");
    for (pid, label, used) in [
        (used.pid as i32, "long-running", used),
        (short_used.pid as i32, "exited", short_used),
    ] {
        let mine: Vec<_> = all.iter().filter(|s| s.pid == pid).collect();
        // Frequency mode aims at 999 samples per second of each CPU, so a process that ran
        // `cpu` seconds gets about cpu × 999 of them; at least half, for the first period the
        // kernel guesses before it adapts. Samples the recorder reported lost may be its.
        let expected = used.cpu_s() * 999.0;
        assert!(
            mine.len() as f64 + lost as f64 >= expected / 2.0,
            "{label} workload: only {} samples for {:.2} CPU s ({lost} perf records lost)",
            mine.len(),
            used.cpu_s()
        );
        // The shares below need samples to be shares of. Sharing 2 CPUs with two busy loops
        // and each other, each workload gets about a quarter of a CPU (~0.3 CPU s, ~300
        // samples for the shorter); 25 is a twelfth of that.
        assert!(
            mine.len() >= 25,
            "{label} workload: {} samples for {:.2} CPU s ({lost} perf records lost)",
            mine.len(),
            used.cpu_s()
        );
        // A sample between fork and exec carries the parent's name, as in perf; none may be
        // nameless (the process started after the recorder's /proc snapshot).
        let named = mine.iter().filter(|s| s.comm == "perfpack-test-w").count();
        assert!(
            named + 2 >= mine.len() && mine.iter().all(|s| s.comm != "[unknown]"),
            "{label}: {:?}",
            mine.iter()
                .map(|s| &s.comm)
                .collect::<std::collections::BTreeSet<_>>()
        );
        let hot = mine
            .iter()
            .filter(|s| {
                s.frames
                    .iter()
                    .any(|(name, _)| name == "perfpack_test_hot_loop")
            })
            .count();
        assert!(
            hot * 10 >= mine.len() * 7,
            "{label}: {hot} of {} samples in perfpack_test_hot_loop",
            mine.len()
        );
        // Frame pointers are kept (.cargo/config.toml): the caller is on the stack too.
        let outer = mine
            .iter()
            .filter(|s| {
                s.frames
                    .iter()
                    .any(|(name, _)| name.ends_with("perfpack_test_outer"))
            })
            .count();
        assert!(
            outer * 2 >= hot,
            "{label}: caller on only {outer} of {hot} stacks"
        );
    }
    let kernel: Vec<&String> = all
        .iter()
        .flat_map(|s| &s.frames)
        .filter(|(_, k)| k == "kernel")
        .map(|(n, _)| n)
        .collect();
    assert!(!kernel.is_empty(), "no kernel frames at all");
    let named = kernel
        .iter()
        .filter(|n| !n.starts_with("0x") && n.as_str() != "[unknown]")
        .count();
    assert!(
        named * 10 >= kernel.len() * 9,
        "{named} of {} kernel frames named",
        kernel.len()
    );
}

#[test]
fn unavailable_sources_are_reported_and_the_capture_succeeds() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("sources.ppk");
    let out = record(&["-d", "1500ms", "-o", bundle.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let m = manifest(&bundle);
    assert_eq!(m["state"], "complete");
    let sources = m["sources"].as_array().unwrap();
    for s in sources {
        let status = s["status"].as_str().unwrap();
        // A source that is not ok says why, and the summary warns about it.
        if status != "ok" {
            assert!(!s["reason"].as_str().unwrap().is_empty(), "{s}");
            assert!(
                stderr.contains(&format!(
                    "warning: {}: {status}",
                    s["name"].as_str().unwrap()
                )),
                "{stderr}"
            );
        }
    }
    let pmc = sources.iter().find(|s| s["name"] == "pmc").unwrap();
    let hw = Command::new(super::RECORDER)
        .args(["check", "--format", "json"])
        .output()
        .unwrap();
    let checks: serde_json::Value = serde_json::from_slice(&hw.stdout).unwrap();
    let cycles = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["what"] == "pmc cycles")
        .unwrap();
    if cycles["status"] == "no" {
        // This VM: no hardware PMU. The reason is the kernel's.
        assert_eq!(pmc["status"], "unavailable", "{pmc}");
        assert!(pmc["reason"].as_str().unwrap().contains("cycles"), "{pmc}");
    }
    let procfs = sources.iter().find(|s| s["name"] == "procfs").unwrap();
    // The records the manifest counts are the rows the table holds.
    let rows: usize = Bundle::open(&bundle)
        .unwrap()
        .read_table(tables::SYS_COUNTER)
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(procfs["records"].as_u64(), Some(rows as u64));
    assert!(rows > 100, "{rows} procfs rows");
    // At least what the recorder's binary and its rings take, at most what it may use.
    let rss = m["self_cost"]["peak_rss_bytes"].as_u64().unwrap();
    assert!((4 << 20..1 << 30).contains(&rss), "peak RSS {rss}");
    // The configuration snapshot: this machine's kernel command line and swappiness, as the
    // files say them.
    let config = sources.iter().find(|s| s["name"] == "config").unwrap();
    assert_eq!(config["status"], "ok", "{config}");
    let b = perfpack_schema::Bundle::open(&bundle).unwrap();
    let mut settings = std::collections::BTreeMap::new();
    for batch in b.read_table(perfpack_schema::tables::CONFIG).unwrap() {
        use arrow_array::cast::AsArray as _;
        let (k, v) = (
            batch.column(0).as_string::<i32>(),
            batch.column(1).as_string::<i32>(),
        );
        for i in 0..batch.num_rows() {
            settings.insert(k.value(i).to_string(), v.value(i).to_string());
        }
    }
    assert_eq!(config["records"].as_u64().unwrap(), settings.len() as u64);
    let swappiness = std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    assert_eq!(settings["sysctl.vm.swappiness"], swappiness.trim());
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap();
    assert_eq!(
        settings["kernel.cmdline"],
        cmdline.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert!(
        settings.keys().any(|k| k.starts_with("mount.")),
        "{settings:?}"
    );
}

#[test]
fn sigterm_mid_segment_leaves_a_complete_readable_bundle() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("term.ppk");
    let child = Command::new(super::RECORDER)
        .args([
            "-d",
            "60s",
            "--segment",
            "1s",
            "-o",
            bundle.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-capture: two segments closed and the third open, however long setup took.
    super::wait_until("two closed segments", Duration::from_secs(60), || {
        super::closed_segments(&bundle) >= 2
    });
    let closed = super::closed_segments(&bundle);
    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = manifest(&bundle);
    assert_eq!(m["state"], "complete");
    assert!(m["clocks"]["end"].is_object());
    let segs = m["tables"]["stack_sample"]["segments"]
        .as_array()
        .unwrap()
        .len();
    // The closed ones, plus the one open at the signal (and one more if a segment closed
    // between the count and the signal).
    assert!(
        (closed + 1..=closed + 2).contains(&segs),
        "{segs} segments, {closed} closed at SIGTERM"
    );
    assert!(!samples(&bundle).is_empty());
}

#[test]
fn ring_mode_keeps_about_the_newest_three_segments() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ring.ppk");
    let marker = dir.path().join("hook.log");
    let hook = format!("echo $PERFPACK_SEGMENT >> {}", marker.display());
    let out = record(&[
        "-d",
        "20s",
        "--ring",
        "6s",
        "--segment",
        "2s",
        "--on-segment",
        &hook,
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = manifest(&bundle);
    let segs: Vec<u64> = m["tables"]["stack_sample"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index"].as_u64().unwrap())
        .collect();
    assert!((3..=4).contains(&segs.len()), "kept segments {segs:?}");
    assert!(*segs.last().unwrap() >= 9, "newest kept {segs:?}");
    // Dictionary tables keep every segment, so old frames stay resolvable.
    assert!(m["tables"]["frame"]["segments"].as_array().unwrap().len() >= 10);
    assert!(!samples(&bundle).is_empty());
    let hooks = std::fs::read_to_string(&marker).unwrap();
    assert!(hooks.lines().count() >= 9, "on-segment ran for {hooks:?}");
}

#[test]
fn on_segment_gets_the_bundle_path_as_data_never_as_shell_syntax() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // A path a user (or a script building `-o` from a host name) could pass: each piece of
    // shell syntax in it would run a command as root if it reached the script.
    let bundle = format!("{d}/a;touch {d}/pwned1;$(touch {d}/pwned2)`touch {d}/pwned3`'\"x.ppk");
    let log = dir.path().join("hook.log");
    let hook = format!(
        "printf '%s\\n' {{}} >> {l}; printf '%s\\n' \"{{}}\" >> {l}; printf '%s\\n' '{{}}' >> {l}",
        l = log.display()
    );
    let out = record(&[
        "-d",
        "3s",
        "--segment",
        "1s",
        "--on-segment",
        &hook,
        "-o",
        &bundle,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pwned in ["pwned1", "pwned2", "pwned3"] {
        assert!(
            !dir.path().join(pwned).exists(),
            "{pwned}: the path ran as shell"
        );
    }
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // Three forms of `{}` per segment, each the path verbatim.
    assert!(
        lines.len() >= 6 && lines.len().is_multiple_of(3),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| *l == bundle), "{lines:?}");
    assert_eq!(manifest(std::path::Path::new(&bundle))["state"], "complete");
}

#[test]
fn refuses_to_overwrite_an_existing_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("exists.ppk");
    std::fs::create_dir(&bundle).unwrap();
    let out = record(&["-d", "1s", "-o", bundle.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exists.ppk") && err.contains("refusing to overwrite"),
        "{err}"
    );
}

#[test]
fn pid_scope_samples_only_that_process() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("pid.ppk");
    let workload = Command::new(WORKLOAD)
        .arg("120")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = workload.id().to_string();
    let recording = super::start_recording(&[
        "-d",
        "120s",
        "--freq",
        "999",
        "--pid",
        &pid,
        "-o",
        bundle.to_str().unwrap(),
    ]);
    // What the workload used while it was recorded, by the kernel's count.
    let before = super::cpu_s_of(workload.id());
    std::thread::sleep(Duration::from_millis(1500));
    let used = super::cpu_s_of(workload.id()) - before;
    let (ok, said) = recording.stop();
    // SAFETY: kill(2) of our own child, not yet reaped.
    unsafe { libc::kill(workload.id() as i32, libc::SIGKILL) };
    let pid = super::wait_used(workload).pid as i32;
    assert!(ok, "{said}");
    let all = samples(&bundle);
    // At 999 Hz, about 999 samples per CPU second it ran while recorded; at least half (the
    // kernel's first period is a guess), less what the recorder reported lost.
    let lost = super::lost(&bundle, "perf-lost-records") as f64;
    assert!(
        all.len() as f64 + lost >= used * 999.0 / 2.0 && !all.is_empty(),
        "{} samples for {used:.2} CPU s recorded ({lost} lost)",
        all.len()
    );
    assert!(
        all.iter().all(|s| s.pid == pid),
        "samples of other processes"
    );
}

/// Records the stand-in JIT of `tests/data/jit_spin.py` with its perf map owned by `owner`;
/// returns (manifest, the names of the frames its samples hit, its pid).
fn record_jit(owner: u32) -> (serde_json::Value, Vec<String>, i32) {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("jit.ppk");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/jit_spin.py");
    let mut jit = Command::new("/usr/bin/python3")
        .args([script, &owner.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(jit.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: i32 = line.split(' ').next().unwrap().parse().unwrap();
    let out = record(&[
        "-d",
        "1500ms",
        "--pid",
        &pid.to_string(),
        "-o",
        bundle.to_str().unwrap(),
    ]);
    let _ = jit.kill();
    let _ = jit.wait();
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let leaves = samples(&bundle)
        .into_iter()
        .filter(|s| s.pid == pid)
        .filter_map(|s| s.frames.last().map(|f| f.0.clone()))
        .collect();
    (manifest(&bundle), leaves, pid)
}

#[test]
fn a_jit_map_another_user_wrote_is_refused_and_the_manifest_says_why() {
    let _live = require_recording!();
    // Written by the process's own user (root here): its frames are named.
    let (_, leaves, _) = record_jit(0);
    let named = leaves.iter().filter(|l| *l == "jit_spin_loop").count();
    assert!(
        named * 2 > leaves.len(),
        "{named} of {} named: {leaves:?}",
        leaves.len()
    );
    // Written for it by another user (nobody): refused, said, and its frames left unnamed.
    let (m, leaves, pid) = record_jit(65534);
    assert!(!leaves.iter().any(|l| l == "jit_spin_loop"), "{leaves:?}");
    let src = m["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "perf-samples")
        .unwrap();
    assert_eq!(src["status"], "partial", "{src}");
    let reason = src["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "JIT map of pid {pid} refused, its frames unnamed: /tmp/perf-{pid}.map: owned by uid 65534, not by root or process {pid}, which runs as uid 0"
        )),
        "{reason}"
    );
}

#[test]
fn disk_full_stops_cleanly_and_keeps_closed_segments() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=400k", "tmpfs"])
        .arg(&mnt)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_RECORDING",
            "cannot mount a small tmpfs to fill",
        );
        return;
    }
    let bundle = mnt.join("full.ppk");
    let out = record(&[
        "-d",
        "60s",
        "--segment",
        "300ms",
        "--freq",
        "999",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let readable = perfpack_schema::Bundle::open(&bundle).and_then(|b| b.verify().map(|()| b));
    let _ = Command::new("umount").arg(&mnt).status();
    assert!(
        !out.status.success(),
        "a full disk must give a non-zero exit"
    );
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let b = readable.expect("closed segments stay readable");
    assert!(!b.segments(perfpack_schema::tables::STACK_SAMPLE).is_empty());
}

#[test]
fn process_stat_shows_a_cpu_bound_child_using_one_cpu() {
    use arrow_array::cast::AsArray as _;
    use arrow_array::types::{Int32Type, Int64Type};
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("pidstat.ppk");
    // The workload runs whole inside the recording, which is stopped once it exited; what the
    // rows say is compared with the kernel's own account of the workload at its exit.
    let recording = super::start_recording(&[
        "-d",
        "120s",
        "--preset",
        "cpu",
        "--interval",
        "500ms",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    let spawned_ns = super::monotonic_ns();
    let workload = Command::new(WORKLOAD)
        .arg("2.5")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let used = super::wait_used(workload);
    let (ok, said) = recording.stop();
    assert!(ok, "{said}");
    assert!(used.success);
    let b = perfpack_schema::Bundle::open(&bundle).unwrap();
    let mut rows: Vec<(i64, i64, i64)> = Vec::new();
    for batch in b.read_table(perfpack_schema::tables::PROCESS_STAT).unwrap() {
        let pid = batch.column(1).as_primitive::<Int32Type>();
        let ts = batch.column(0).as_primitive::<Int64Type>();
        let (ut, st) = (
            batch.column(3).as_primitive::<Int64Type>(),
            batch.column(4).as_primitive::<Int64Type>(),
        );
        for i in 0..batch.num_rows() {
            if pid.value(i) == used.pid as i32 {
                rows.push((ts.value(i), ut.value(i), st.value(i)));
            }
        }
    }
    rows.sort();
    // One row per 500 ms poll while it lived, less the polls the recorder reported missed, the
    // partial first and last intervals, and a poll late past its exit.
    let lived_ns = used.exited_ns - spawned_ns;
    let polls = lived_ns / 500_000_000;
    let missed = super::lost(&bundle, "missed-polls") as i64;
    assert!(
        rows.len() as i64 >= polls - 2 - missed,
        "{} rows for the workload over {lived_ns} ns ({missed} polls missed)",
        rows.len()
    );
    assert!(rows.len() >= 2, "{} rows for the workload", rows.len());
    let (first, last) = (rows[0], rows[rows.len() - 1]);
    let secs = (last.0 - first.0) as f64 / 1e9;
    let user = (last.1 - first.1) as f64 / 1e9;
    let cpu = user + (last.2 - first.2) as f64 / 1e9;
    // One spinning thread uses at most one CPU second per second, whatever else runs (5% for
    // the clock-tick granularity of /proc/PID/stat over the ≥ 0.5 s between rows).
    assert!(cpu / secs <= 1.05, "{cpu} CPU s in {secs} s");
    // The last row's totals are the kernel's at that moment: at most what the workload used in
    // all (its rusage at exit), and short of it by no more than it could use between that row
    // and its exit on one CPU. Both are rounded to clock ticks (10 ms at USER_HZ 100): 20 ms.
    let tick = 0.02;
    let (last_user, last_cpu) = (last.1 as f64 / 1e9, (last.1 + last.2) as f64 / 1e9);
    let after_last = (used.exited_ns - last.0) as f64 / 1e9;
    assert!(
        last_user <= used.user_s + tick && last_cpu <= used.cpu_s() + tick,
        "last row: {last_user} user / {last_cpu} CPU s; rusage {used:?}"
    );
    assert!(
        last_cpu >= used.cpu_s() - after_last - tick,
        "last row: {last_cpu} CPU s, {after_last} s before the exit; rusage {used:?}"
    );
    // A spin loop's time is user time, and the rows split it as the kernel does: the last
    // row's user share is rusage's, to a tick of the last row's total.
    let ru_user_share = used.user_s / used.cpu_s();
    assert!(ru_user_share > 0.8, "rusage: {used:?}");
    assert!(
        (last_user / last_cpu - ru_user_share).abs() <= tick / last_cpu + 0.02,
        "last row: {last_user} of {last_cpu} CPU s in user mode; rusage {used:?}"
    );
    assert!(user <= cpu, "{user} user of {cpu} CPU s");
    let m = manifest(&bundle);
    let src = m["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pidstat")
        .unwrap()
        .clone();
    assert_eq!(src["status"], "ok", "{src}");
    assert!(src["records"].as_u64().unwrap() >= rows.len() as u64);
}

#[test]
fn output_directory_removed_mid_capture_fails_in_one_line() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("gone.ppk");
    let child = Command::new(super::RECORDER)
        .args(["-d", "120s", "--segment", "1s", "--preset", "cpu", "-o"])
        .arg(&bundle)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-capture: once a segment has closed (the next close finds the directory gone).
    super::wait_until("a closed segment", Duration::from_secs(60), || {
        super::closed_segments(&bundle) >= 1
    });
    std::fs::remove_dir_all(&bundle).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("perfpack-record: ")
            && last.contains(bundle.to_str().unwrap())
            && last.contains("nothing could be kept"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!bundle.exists());
}

/// (ts_ns, pid, weight) of every stack sample.
fn sample_times(bundle: &std::path::Path) -> Vec<(i64, i32, i64)> {
    use arrow_array::cast::AsArray as _;
    use arrow_array::types::{Int32Type, Int64Type};
    let b = perfpack_schema::Bundle::open(bundle).unwrap();
    let mut out = Vec::new();
    for batch in b.read_table(perfpack_schema::tables::STACK_SAMPLE).unwrap() {
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let (ts, pid, weight) = (col("ts_ns"), col("pid"), col("weight"));
        let (ts, pid, weight) = (
            ts.as_primitive::<Int64Type>(),
            pid.as_primitive::<Int32Type>(),
            weight.as_primitive::<Int64Type>(),
        );
        for i in 0..batch.num_rows() {
            out.push((ts.value(i), pid.value(i), weight.value(i)));
        }
    }
    out.sort_unstable();
    out
}

fn source(m: &serde_json::Value, name: &str) -> serde_json::Value {
    m["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {m}"))
        .clone()
}

#[test]
fn cpu_budget_lowers_the_sampling_rate_and_stops_ftrace_and_says_so() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("budget.ppk");
    // Spinning until killed after the recording, however long the recorder's setup took.
    let workload = Command::new(WORKLOAD)
        .arg("120")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // And system calls for ftrace to record, so that reading them costs the recorder more
    // than sampling does and the budget stops ftrace (nothing else on an idle machine makes
    // them at this rate).
    let syscalls = Command::new(WORKLOAD)
        .args(["syscalls", "120"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // A budget nothing can meet: every second interval gives something up. Recorded until the
    // budget has lowered the frequency to 15 Hz, however long a loaded machine takes to get
    // there (the manifest says each step; 500 ms segments rewrite it often).
    let recording = super::start_recording(&[
        "-d",
        "120s",
        "--segment",
        "500ms",
        "--preset",
        "syscalls",
        "--freq",
        "999",
        "--interval",
        "250ms",
        "--max-cpu-pct",
        "0.01",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    super::wait_until(
        "sampling lowered to 15 Hz",
        Duration::from_secs(100),
        || {
            std::fs::read_to_string(bundle.join("manifest.json"))
                .is_ok_and(|m| m.contains("sampling lowered from 31 to 15 Hz"))
        },
    );
    let (ok, stderr) = recording.stop();
    let workload_pid = workload.id() as i32;
    for child in [workload, syscalls] {
        // SAFETY: kill(2) of our own child, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        super::wait_used(child);
    }
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: sampling lowered from 999 to 499 Hz: the recorder used"),
        "{stderr}"
    );
    let m = manifest(&bundle);
    let perf = source(&m, "perf-samples");
    let reason = perf["reason"].as_str().unwrap();
    assert_eq!(perf["status"], "partial", "{perf}");
    assert!(
        reason.contains("sampling lowered from 999 to 499 Hz")
            && reason.contains("sampling lowered from 499 to 249 Hz")
            && reason.contains("over --max-cpu-pct 0.01"),
        "{reason}"
    );
    let ftrace = source(&m, "ftrace");
    if ftrace["status"] != "unavailable" {
        assert_eq!(ftrace["status"], "partial", "{ftrace}");
        assert!(
            ftrace["reason"]
                .as_str()
                .unwrap()
                .contains("ftrace stopped: the recorder used"),
            "{ftrace}"
        );
    }

    // Each sample stands for more CPU time once the frequency fell (its weight is the period,
    // so flame graphs stay right): at 999 Hz in the first 0.2 s (the first step comes after
    // two intervals), at 62 Hz or less in the last second (the step to 31 Hz comes 0.5 s or
    // more before the one to 15 Hz the test waited for). A sixteenth of the frequency; a
    // quarter is asked. (The workload's own samples in those windows are too few to weigh on
    // a loaded machine, and their counts per wall second measure its CPU share and the
    // overloaded recorder's losses, not the frequency.)
    let all = sample_times(&bundle);
    let (t0, t1) = (all[0].0, all[all.len() - 1].0);
    let mean_ms = |from: i64, to: i64| {
        let w: Vec<_> = all.iter().filter(|s| s.0 >= from && s.0 < to).collect();
        let ms = w.iter().map(|s| s.2).sum::<i64>() as f64 / w.len().max(1) as f64 / 1e6;
        (ms, w.iter().filter(|s| s.1 == workload_pid).count())
    };
    let (first_ms, first_n) = mean_ms(t0, t0 + 200_000_000);
    let (last_ms, last_n) = mean_ms(t1 - 1_000_000_000, t1);
    eprintln!(
        "budget: mean sample weight {first_ms:.2} ms in the first 0.2 s ({first_n} of the \
         workload), {last_ms:.2} ms in the last second ({last_n} of the workload)"
    );
    assert!(first_ms < 1.5, "{first_ms} ms per sample at 999 Hz");
    assert!(
        last_ms > 4.0 * first_ms,
        "{last_ms} ms per sample at the end"
    );
}

#[test]
fn exec_storm_is_recorded_with_bounded_memory() {
    use arrow_array::cast::AsArray as _;
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("storm.ppk");
    // The whole storm inside the recording: started once it records, stopped once it ended.
    let recording = super::start_recording(&[
        "-d",
        "120s",
        "--freq",
        "999",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    let storm = Command::new(WORKLOAD)
        .args(["storm", "4"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started: u64 = String::from_utf8(storm.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (ok, stderr) = recording.stop();
    assert!(ok, "{stderr}");
    let b = perfpack_schema::Bundle::open(&bundle).unwrap();
    b.verify().unwrap();
    let m = b.manifest();
    let peak_rss_mib = m.self_cost.peak_rss_bytes as f64 / 1048576.0;

    // Each copy of the workload (comm truncated to 15 bytes) exec'd and exited.
    let mut execs = 0u64;
    for batch in b
        .read_table(perfpack_schema::tables::SCHED_PROCESS)
        .unwrap()
    {
        let event = batch.column_by_name("event").unwrap().as_string::<i32>();
        let comm = batch.column_by_name("comm").unwrap().as_string::<i32>();
        execs += (0..batch.num_rows())
            .filter(|&i| event.value(i) == "exec" && comm.value(i).starts_with("perfpack-test"))
            .count() as u64;
    }
    let mut pids = std::collections::HashSet::new();
    for batch in b.read_table(perfpack_schema::tables::THREAD).unwrap() {
        let pid = batch
            .column_by_name("pid")
            .unwrap()
            .as_primitive::<arrow_array::types::Int32Type>();
        let comm = batch.column_by_name("comm").unwrap().as_string::<i32>();
        for i in 0..batch.num_rows() {
            if comm.value(i).starts_with("perfpack-test") {
                pids.insert(pid.value(i));
            }
        }
    }
    let ftrace_lost: u64 = m
        .sources
        .iter()
        .filter(|s| s.name == "ftrace")
        .map(|s| s.total_lost())
        .sum();
    eprintln!(
        "storm: {started} processes in 4 s ({:.0}/s); recorded {execs} execs, {} processes in \
         the thread table, ftrace lost {ftrace_lost}; recorder peak RSS {peak_rss_mib:.1} MiB, \
         {:.2} CPU s",
        started as f64 / 4.0,
        pids.len(),
        m.self_cost.cpu_user_s + m.self_cost.cpu_system_s
    );
    // The whole storm was recorded: every exec is a row, or among the events ftrace reported
    // lost (most losses are counted in events; a missed page counts one, so half is asked
    // for). The storm's own exec is one more than it started.
    assert!(
        execs + ftrace_lost >= started / 2,
        "{execs} execs of {started}"
    );
    assert!(execs <= started + 1, "{execs} execs of {started}");
    // Every process has its thread row, but those whose fork record was reported lost.
    let side_band_lost = super::lost(&bundle, "perf-lost-side-band");
    assert!(
        pids.len() as u64 + side_band_lost >= started / 2,
        "{} processes of {started} ({side_band_lost} side-band records lost)",
        pids.len()
    );
    assert!(peak_rss_mib < 200.0, "peak RSS {peak_rss_mib} MiB");
}

#[test]
fn ring_bound_counts_the_dictionary_tables_and_compacts_what_process_churn_grows() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("churn.ppk");
    let max = 150 * 1024;
    // The whole storm inside the recording: started once it records, stopped once it ended.
    let recording = super::start_recording(&[
        "-d",
        "120s",
        "--segment",
        "500ms",
        "--max-bytes",
        "150K",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    // The storm goes on until the ring has dropped eight segments (4 s of events: the threads
    // that exited then lie well before the oldest kept event, and most of the storm is gone):
    // on a loaded machine it takes longer to fill 150K.
    let stop = dir.path().join("stop-storm");
    let storm = Command::new(WORKLOAD)
        .args(["storm", "100"])
        .arg(&stop)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    super::wait_until(
        "the ring to drop four segments",
        Duration::from_secs(90),
        || {
            std::fs::read_to_string(bundle.join("manifest.json"))
                .ok()
                .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
                .and_then(|m| m["tables"]["stack_sample"]["segments"][0]["index"].as_u64())
                .is_some_and(|oldest| oldest >= 8)
        },
    );
    std::fs::write(&stop, "").unwrap();
    let started: u64 = String::from_utf8_lossy(&storm.wait_with_output().unwrap().stdout)
        .trim()
        .parse()
        .unwrap();
    let (ok, stderr) = recording.stop();
    assert!(ok, "{stderr}");
    let compacted: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("ring: ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no compaction line: {stderr}"));
    let b = perfpack_schema::Bundle::open(&bundle).unwrap();
    b.verify().unwrap();
    // The threads of the storm that exited before the oldest kept event are gone from the
    // `thread` table, and every thread a kept event names is still there.
    let (mut forks, mut known) = (0u64, std::collections::HashSet::new());
    for batch in b.read_table(perfpack_schema::tables::THREAD).unwrap() {
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let tid = col("tid");
        let tid = tid.as_any().downcast_ref::<Int32Array>().unwrap();
        let reason = col("reason");
        let reason = reason.as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..batch.num_rows() {
            known.insert(tid.value(i));
            forks += u64::from(reason.value(i) == "fork");
        }
    }
    eprintln!("ring: {started} processes started, {forks} forks kept, {compacted} rows compacted");
    assert!(
        compacted > 0 && forks < started / 2,
        "{forks} forks of {started} kept"
    );
    // A thread whose fork record the kernel dropped from the side-band ring (counted as
    // `perf-lost-side-band`) has no row; with the whole suite running beside it that happens
    // on 2 CPUs. Any other missing row is a compaction that went too far.
    let m = b.manifest();
    let side_band_lost: u64 = m
        .sources
        .iter()
        .flat_map(|s| &s.losses)
        .filter(|l| l.kind == "perf-lost-side-band")
        .map(|l| l.count)
        .sum();
    let mut missing = std::collections::BTreeSet::new();
    for batch in b.read_table(perfpack_schema::tables::SCHED_SWITCH).unwrap() {
        let next = batch.column_by_name("next_tid").unwrap();
        let next = next.as_any().downcast_ref::<Int32Array>().unwrap();
        missing.extend(
            next.iter()
                .flatten()
                .filter(|&t| t != 0 && !known.contains(&t)),
        );
    }
    assert!(
        missing.len() as u64 <= side_band_lost,
        "kept switches to {} threads without a thread row ({:?}), {side_band_lost} side-band records lost",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    // The ring ran at every close but the last (at the end of the capture): at that point,
    // dictionaries and kept event segments together were within the bound, or only the newest
    // event segment was left.
    let last = m
        .tables
        .values()
        .flat_map(|t| &t.segments)
        .map(|s| s.index)
        .max()
        .unwrap();
    let (mut dictionaries, mut events) = (0, std::collections::BTreeMap::<u32, u64>::new());
    for (name, t) in &m.tables {
        let dictionary = perfpack_schema::tables::by_name(name).is_none_or(|d| d.dictionary);
        for s in t.segments.iter().filter(|s| s.index < last) {
            if dictionary {
                dictionaries += s.bytes;
            } else {
                *events.entry(s.index).or_default() += s.bytes;
            }
        }
    }
    let kept: u64 = events.values().sum();
    eprintln!("ring: dictionaries {dictionaries} B, event segments {events:?}, bound {max}");
    assert!(
        events.len() <= 1 || dictionaries + kept <= max,
        "{dictionaries} B of dictionaries and {kept} B of events in {} segments, bound {max}",
        events.len()
    );
}

/// The pid the recorder said it released the command as.
fn command_pid(stderr: &str) -> i32 {
    stderr
        .split("while the command runs (pid ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no command pid in: {stderr}"))
}

#[test]
fn a_command_is_recorded_from_exec_to_exit_with_its_process_tree_only() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("cmd.ppk");
    let child_pid = dir.path().join("child.pid");
    // A process outside the command's tree, busy all along: none of its samples may be kept.
    let outsider = Command::new(WORKLOAD)
        .arg("120")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let outsider_pid = outsider.id() as i32;
    // The tree: sh, and the workload it starts; sh exits with 7 after it.
    let script = format!(
        "{WORKLOAD} 1.5 > /dev/null & echo $! > '{}'; wait; exit 7",
        child_pid.display()
    );
    let out = record(&[
        "--freq",
        "999",
        "--unwind",
        "fp",
        "-o",
        bundle.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    // SAFETY: kill(2) of our own child, not yet reaped.
    unsafe { libc::kill(outsider_pid, libc::SIGKILL) };
    super::wait_used(outsider);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "the command's status: {stderr}");
    assert_eq!(manifest(&bundle)["state"], "complete", "{stderr}");
    let sh = command_pid(&stderr);
    let workload: i32 = std::fs::read_to_string(&child_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let all = samples(&bundle);
    let strays: Vec<_> = all
        .iter()
        .filter(|s| s.pid != sh && s.pid != workload)
        .map(|s| (s.pid, &s.comm))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        strays.is_empty(),
        "samples outside the command's tree: {strays:?}"
    );
    // The workload spun 1.5 s beside one other busy process on 2 CPUs: at least half a CPU
    // second, ~500 samples at 999 Hz; 25 are asked, for the share below.
    let mine: Vec<_> = all.iter().filter(|s| s.pid == workload).collect();
    let lost = super::lost(&bundle, "perf-lost-records") as usize;
    assert!(
        mine.len() + lost >= 25,
        "{} samples of the workload",
        mine.len()
    );
    let hot = mine
        .iter()
        .filter(|s| s.frames.iter().any(|(n, _)| n == "perfpack_test_hot_loop"))
        .count();
    assert!(
        hot * 10 >= mine.len() * 7,
        "{hot} of {} samples in perfpack_test_hot_loop",
        mine.len()
    );
    assert!(stderr.contains("exited with status 7"), "{stderr}");
}

#[test]
fn a_command_that_fails_gives_its_status_and_one_that_is_missing_127_and_no_bundle() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("three.ppk");
    let out = record(&["-o", bundle.to_str().unwrap(), "--", "sh", "-c", "exit 3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    // It exited at once: a complete bundle that says so.
    assert_eq!(manifest(&bundle)["state"], "complete", "{stderr}");
    assert!(stderr.contains("exited with status 3"), "{stderr}");

    let plain = dir.path().join("not-a-program");
    std::fs::write(&plain, "data").unwrap();
    for (cmd, status) in [
        ("no-such-command-perfpack", 127),
        (plain.to_str().unwrap(), 126),
    ] {
        let bundle = dir.path().join(format!("{status}.ppk"));
        let out = record(&["-o", bundle.to_str().unwrap(), "--", cmd]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{cmd}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("perfpack-record: ") && stderr.contains(cmd),
            "{stderr}"
        );
        assert!(!bundle.exists(), "{cmd}: a bundle was left");
    }
}
