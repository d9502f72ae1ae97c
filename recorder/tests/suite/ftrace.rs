//! Live ftrace captures on this machine: block I/O of O_DIRECT writes, wakeups of a sleeping
//! thread, and the tracing state after every way the recorder can end.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int32Type, Int64Type, UInt64Type};
use perfpack_schema::{Bundle, tables};

use super::{RECORDER, record, require_recording, source_of};

const TRACEFS: &str = "/sys/kernel/tracing";

fn require_tracefs() -> bool {
    if Path::new(TRACEFS).join("events").is_dir() {
        return true;
    }
    perfpack_schema::skip::skip(
        "PERFPACK_REQUIRE_RECORDING",
        &format!("tracefs is not mounted at {TRACEFS} (.ci/run mounts it)"),
    );
    false
}

/// Starts a recording and returns once it says it is recording: every source on, its tracefs
/// instance tracing. (Not when the instance's `tracing_on` reads 1: a new instance starts
/// with tracing on, before the recorder turns it off to set the instance up, and a loaded
/// machine widens that window.)
fn start(args: &[&str]) -> super::Recording {
    let rec = super::start_recording(args);
    let on = Path::new(TRACEFS).join(format!("instances/perfpack-{}/tracing_on", rec.id()));
    if !std::fs::read_to_string(&on).is_ok_and(|s| s.trim() == "1") {
        let (_, said) = rec.stop();
        panic!(
            "the recorder said it records but {} is not 1: {said}",
            on.display()
        );
    }
    rec
}

/// Waits for a recording to end by itself (or by a signal the test sent) and checks that it
/// ended well.
fn finish(rec: super::Recording) {
    let (ok, said) = rec.wait();
    assert!(ok, "{said}");
}

/// Stops a recording started with a long `-d` now that its workload is done (SIGINT: it
/// finishes the open segment and exits 0), and checks that it ended well.
fn stop(rec: super::Recording) {
    let (ok, said) = rec.stop();
    assert!(ok, "{said}");
}

/// The whole disk (`major:minor`) holding `path`, as block events name it.
fn disk_of(path: &Path) -> Option<String> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    if maj == 0 {
        return None; // tmpfs, overlay: no block device
    }
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    let dir = std::fs::canonicalize(&sys).ok()?;
    let disk = if dir.join("partition").exists() {
        dir.parent()?.to_path_buf()
    } else {
        dir
    };
    Some(
        std::fs::read_to_string(disk.join("dev"))
            .ok()?
            .trim()
            .to_string(),
    )
}

#[test]
fn direct_writes_are_accounted_in_block_rq() {
    let _live = require_recording!();
    if !require_tracefs() {
        return;
    }
    // Alone among the live tests (LIVE): under another test's load, a write it issued just
    // before this recording started could complete more than 200 ms into it, without its
    // issue event.
    let work =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("odirect-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let Some(disk) = disk_of(&work) else {
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_RECORDING",
            &format!("{} is not on a block device", work.display()),
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("io.ppk");
    // Recording until stopped once the writes are done, however long they take.
    let rec = start(&[
        "-d",
        "120s",
        "--preset",
        "io",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    // 256 blocks of 4 KiB with O_DIRECT: each write goes to the device.
    const BLOCKS: usize = 256;
    let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: a non-zero-sized layout; freed below.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    let data = unsafe { std::slice::from_raw_parts(buf, 4096) };
    let file_path = work.join("blocks");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&file_path);
    let Ok(f) = f else {
        finish(rec);
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_RECORDING",
            &format!("O_DIRECT not supported on {}", work.display()),
        );
        return;
    };
    use std::os::unix::fs::FileExt as _;
    // SAFETY: gettid has no preconditions.
    let writer = unsafe { libc::gettid() };
    for i in 0..BLOCKS {
        f.write_all_at(data, (i * 4096) as u64).unwrap();
    }
    f.sync_all().unwrap();
    unsafe { std::alloc::dealloc(buf, layout) };
    drop(f);
    stop(rec);
    let _ = std::fs::remove_dir_all(&work);

    let b = Bundle::open(&bundle).unwrap();
    let mut issued: HashMap<(String, u64), i64> = HashMap::new();
    let (mut written, mut completes, mut unmatched) = (0u64, 0, Vec::new());
    let mut first_ts = None;
    // Who made each request (block_io_start's task), and the requests that were then issued.
    let (mut started, mut has_start) = (HashMap::new(), false);
    let mut attributed = 0u64;
    let mut dispatchers = std::collections::BTreeSet::new();
    for batch in b.read_table(tables::BLOCK_RQ).unwrap() {
        let ts = batch
            .column_by_name("ts_ns")
            .unwrap()
            .as_primitive::<Int64Type>();
        let phase = batch.column_by_name("phase").unwrap().as_string::<i32>();
        let dev = batch.column_by_name("dev").unwrap().as_string::<i32>();
        let sector = batch
            .column_by_name("sector")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let bytes = batch
            .column_by_name("bytes")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let rwbs = batch.column_by_name("rwbs").unwrap().as_string::<i32>();
        let nr_sector = batch
            .column_by_name("nr_sector")
            .unwrap()
            .as_primitive::<arrow_array::types::UInt32Type>();
        let tid = batch
            .column_by_name("tid")
            .unwrap()
            .as_primitive::<arrow_array::types::Int32Type>();
        let comm = batch.column_by_name("comm").unwrap().as_string::<i32>();
        for i in 0..batch.num_rows() {
            first_ts.get_or_insert(ts.value(i));
            if dev.value(i) != disk {
                continue;
            }
            let key = (dev.value(i).to_string(), sector.value(i));
            match phase.value(i) {
                "start" => {
                    has_start = true;
                    started.insert(key, tid.value(i));
                }
                "issue" => {
                    if started.get(&key) == Some(&writer) && rwbs.value(i).contains('W') {
                        attributed += bytes.value(i);
                        if tid.value(i) != writer {
                            dispatchers.insert(comm.value(i).to_string());
                        }
                    }
                    if rwbs.value(i).contains('W') {
                        written += bytes.value(i);
                    }
                    issued.insert(key, ts.value(i));
                }
                // Cache flushes (nr_sector 0, sector -1) complete without an issue event of their
                // own; biosnoop skips them too.
                "complete" if nr_sector.value(i) == 0 => {}
                "complete" => {
                    completes += 1;
                    // Requests issued before the capture began complete without an issue in it;
                    // this test's writes, all made after the start, must all pair. Where the
                    // kernel says who made each request (block_io_start), those are the
                    // writer's; other processes' writes (a build beside the tests) can be issued
                    // before the start and complete any time later. Without it, a write
                    // completing more than 200 ms into the capture is taken for one of ours.
                    let ours = if has_start {
                        started.get(&key) == Some(&writer)
                    } else {
                        ts.value(i) > first_ts.unwrap() + 200_000_000
                    };
                    if issued.remove(&key).is_none() && ours && rwbs.value(i).contains('W') {
                        unmatched.push(key);
                    }
                }
                _ => {}
            }
        }
    }
    assert!(
        written >= (BLOCKS * 4096) as u64,
        "only {written} bytes written to {disk} in block_rq"
    );
    assert!(completes >= BLOCKS / 2, "{completes} completes");
    assert!(
        unmatched.is_empty(),
        "completes without an issue: {unmatched:?}"
    );
    // Every byte this thread wrote is a request this thread made, whoever issued it (the
    // kernels before 6.5 have no block_io_start: the insert says it there, when there is one).
    if has_start {
        assert!(
            attributed >= (BLOCKS * 4096) as u64,
            "only {attributed} of {} bytes attributed to the writer (issued by {dispatchers:?})",
            BLOCKS * 4096
        );
    } else {
        assert!(
            b.manifest()
                .sources
                .iter()
                .any(|s| s.name == "ftrace" && s.reason.contains("block:block_io_start")),
            "no block_io_start rows and no word of it"
        );
    }
    eprintln!("issued by others than the writer: {dispatchers:?}");
}

#[test]
fn wakeups_and_switches_of_a_sleeping_thread_are_counted() {
    let _live = require_recording!();
    if !require_tracefs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("sched.ppk");
    // Recording until stopped once the wakeups are done, however long they take.
    let rec = start(&[
        "-d",
        "120s",
        "--preset",
        "sched",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    const WAKES: usize = 40;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        for _ in 0..WAKES {
            rx.recv().unwrap();
        }
    });
    let tid = tid_rx.recv().unwrap();
    for _ in 0..WAKES {
        std::thread::sleep(Duration::from_millis(15));
        tx.send(()).unwrap();
    }
    worker.join().unwrap();
    stop(rec);

    let b = Bundle::open(&bundle).unwrap();
    let count = |table, col: &str| -> usize {
        b.read_table(table)
            .unwrap()
            .iter()
            .map(|batch| {
                let c = batch
                    .column_by_name(col)
                    .unwrap()
                    .as_primitive::<Int32Type>();
                c.iter().filter(|v| *v == Some(tid)).count()
            })
            .sum()
    };
    let wakeups = count(tables::SCHED_WAKEUP, "tid");
    let switches_in = count(tables::SCHED_SWITCH, "next_tid");
    // Each send wakes the worker once (its first wait may find the message there already);
    // preemptions and spurious futex wakes add some. What ftrace reported lost may be its.
    let m = b.manifest();
    let ftrace = m.sources.iter().find(|s| s.name == "ftrace").unwrap();
    assert_eq!(ftrace.status.as_str(), "ok", "{}", ftrace.reason);
    let lost = ftrace.total_lost() as usize;
    assert!(
        (WAKES..WAKES * 3).contains(&(wakeups + lost.min(WAKES))) && wakeups < WAKES * 3,
        "{wakeups} wakeups of tid {tid} ({lost} ftrace events lost: {:?})",
        ftrace.losses
    );
    assert!(
        (WAKES..WAKES * 3).contains(&(switches_in + lost.min(WAKES))) && switches_in < WAKES * 3,
        "{switches_in} switches to tid {tid} ({lost} ftrace events lost: {:?})",
        ftrace.losses
    );
}

/// The global tracing state that the recorder must leave as it found it.
fn global_state() -> Vec<(String, String)> {
    [
        "tracing_on",
        "trace_clock",
        "current_tracer",
        "set_event",
        "buffer_size_kb",
        "set_event_notrace_pid",
    ]
    .iter()
    .map(|f| {
        (
            f.to_string(),
            std::fs::read_to_string(Path::new(TRACEFS).join(f)).unwrap_or_default(),
        )
    })
    .collect()
}

fn instance_of(pid: u32) -> PathBuf {
    Path::new(TRACEFS).join(format!("instances/perfpack-{pid}"))
}

#[test]
fn tracing_state_is_restored_on_every_exit_path() {
    let _live = require_recording!();
    if !require_tracefs() {
        return;
    }
    let before = global_state();
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).to_str().unwrap().to_string();

    // Normal end.
    let rec = start(&["-d", "1s", "-o", &out("a.ppk")]);
    let pid = rec.id();
    finish(rec);
    assert!(
        !instance_of(pid).exists(),
        "instance left after a normal end"
    );

    // SIGTERM.
    let rec = start(&["-d", "60s", "-o", &out("b.ppk")]);
    let pid = rec.id();
    // SAFETY: kill(2) of our child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    finish(rec);
    assert!(!instance_of(pid).exists(), "instance left after SIGTERM");

    // SIGKILL leaves the instance; the next start removes it.
    let rec = start(&["-d", "60s", "-o", &out("c.ppk")]);
    let killed = rec.id();
    unsafe { libc::kill(killed as i32, libc::SIGKILL) };
    rec.wait();
    assert!(
        instance_of(killed).exists(),
        "SIGKILL cannot clean up; the instance should still be there"
    );
    let rec = start(&["-d", "1s", "-o", &out("d.ppk")]);
    let pid = rec.id();
    finish(rec);
    assert!(
        !instance_of(killed).exists(),
        "stale instance of a killed recorder not removed"
    );
    assert!(!instance_of(pid).exists());
    assert_eq!(global_state(), before, "global tracing state changed");
}

#[test]
fn function_tracing_counts_calls_or_says_why_not() {
    let _live = require_recording!();
    if !require_tracefs() {
        return;
    }
    const READS: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("fn.ppk");
    let child = start(&[
        "-d",
        "3s",
        "--preset",
        "cpu",
        "--funccount",
        "vfs_read",
        "--kprobe",
        "p:ppopen do_sys_openat2",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    // Reads the recorder cannot miss: a file read 2,000 times, one byte each.
    let file = dir.path().join("data");
    std::fs::write(&file, b"x").unwrap();
    let f = std::fs::File::open(&file).unwrap();
    let mut buf = [0u8; 1];
    for _ in 0..READS {
        assert_eq!(
            std::os::unix::fs::FileExt::read_at(&f, &mut buf, 0).unwrap(),
            1
        );
    }
    finish(child);

    let funccount = source_of(&bundle, "funccount");
    let kprobe = source_of(&bundle, "kprobe");
    // Whatever the kernel allowed, the rest of the capture went on.
    assert_eq!(source_of(&bundle, "perf-samples")["status"], "ok");
    if funccount["status"] == "ok" {
        let b = Bundle::open(&bundle).unwrap();
        let mut calls = 0;
        for batch in b.read_table(tables::FUNC_COUNT).unwrap() {
            let func = batch.column_by_name("function").unwrap().as_string::<i32>();
            let count = batch
                .column_by_name("count")
                .unwrap()
                .as_primitive::<UInt64Type>();
            calls += (0..batch.num_rows())
                .filter(|&i| func.value(i) == "vfs_read")
                .map(|i| count.value(i))
                .sum::<u64>();
        }
        assert!(
            calls >= READS,
            "vfs_read counted {calls} times, {READS} reads made"
        );
    } else {
        // This VM: the kernel refuses the filter; its words are the reason.
        assert_eq!(funccount["status"], "unavailable", "{funccount}");
        let why = funccount["reason"].as_str().unwrap();
        assert!(
            why.contains("set_ftrace_filter") || why.contains("tracer"),
            "{why}"
        );
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_FUNCTION_TRACING",
            &format!("the counting part: function tracing refused here: {why}"),
        );
    }
    if kprobe["status"] != "ok" {
        let why = kprobe["reason"].as_str().unwrap();
        assert!(why.contains("kprobe_events"), "{why}");
    }
    // No probe of ours is left defined.
    let defined =
        std::fs::read_to_string(Path::new(TRACEFS).join("kprobe_events")).unwrap_or_default();
    assert!(!defined.contains("perfpack_"), "{defined}");
}

#[test]
fn function_graph_is_recorded_or_said_unavailable() {
    let _live = require_recording!();
    if !require_tracefs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("fg.ppk");
    let out = Command::new(RECORDER)
        .args([
            "-d",
            "1s",
            "--preset",
            "cpu",
            "--funcgraph",
            "vfs_read",
            "-o",
        ])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fg = source_of(&bundle, "funcgraph");
    if fg["status"] == "ok" {
        assert!(
            fg["detail"].as_str().unwrap().contains("function_graph"),
            "{fg}"
        );
    } else {
        let why = fg["reason"].as_str().unwrap();
        assert!(!why.is_empty(), "{fg}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("warning: funcgraph: unavailable"),
            "{stderr}"
        );
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_FUNCTION_TRACING",
            &format!("the tracing part: function_graph unavailable here: {why}"),
        );
    }
}

#[test]
fn fifty_sigkills_at_random_points_leave_readable_bundles_and_no_instance() {
    let _live = require_recording!();
    if !require_tracefs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Deterministic "random" kill times (an LCG), so a failure replays: 50 ms to 1.5 s after the
    // start (even runs), or 0 to 1 s after the first segment closed (odd runs).
    let mut seed: u64 = 0x5eed;
    let mut killed = Vec::new();
    let mut with_segments = 0;
    for run in 0..50 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let after = if run % 2 == 1 {
            Duration::from_millis((seed >> 33) % 1_000)
        } else {
            Duration::from_millis(50 + (seed >> 33) % 1_450)
        };
        let bundle = dir.path().join(format!("k{run}.ppk"));
        let mut child = Command::new(RECORDER)
            .args(["-d", "10s", "--segment", "200ms", "--preset", "io", "-o"])
            .arg(&bundle)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Even runs die anywhere from setup on; odd runs while segments close, after the
        // first (a condition, not a time: setup takes seconds on a loaded machine).
        if run % 2 == 1 {
            super::wait_until("a closed segment", Duration::from_secs(60), || {
                super::closed_segments(&bundle) > 0
            });
        }
        std::thread::sleep(after);
        // SAFETY: kill(2) of our child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        killed.push(child.id());
        // Killed before the manifest was first written: nothing to read.
        if !bundle.join("manifest.json").exists() {
            continue;
        }
        let b = Bundle::open(&bundle).unwrap_or_else(|e| panic!("run {run} ({after:?}): {e}"));
        for t in tables::ALL {
            b.read_table(t)
                .unwrap_or_else(|e| panic!("run {run} ({after:?}) {}: {e}", t.name));
        }
        if !b.segments(tables::STACK_SAMPLE).is_empty() {
            with_segments += 1;
        } else {
            assert!(run % 2 == 0, "run {run} lost the segment it had closed");
        }
    }
    // A run killed before it reached its own instance setup leaves the earlier ones for the
    // next start: after one start that completes, none of the fifty is left.
    let out = Command::new(RECORDER)
        .args(["-d", "100ms", "--preset", "io", "-o"])
        .arg(dir.path().join("last.ppk"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = killed
        .iter()
        .filter(|&&p| instance_of(p).exists())
        .collect();
    assert!(left.is_empty(), "instances left by {left:?}");
    // Every odd run was killed after its first segment closed (25 runs), and kept it.
    assert!(
        with_segments >= 25,
        "only {with_segments} runs closed a segment"
    );
}

/// An `--event` this kernel does not have, or a malformed `--kprobe`, is the user's mistake: one
/// line naming it, a failed exit and no bundle; whereas a preset's missing tracepoint only makes
/// the source partial (the other tests).
#[test]
fn an_unknown_event_or_a_malformed_kprobe_stops_before_recording() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    for (option, value, says) in [
        (
            "--event",
            "block:no_such_tracepoint",
            "--event block:no_such_tracepoint: no such tracepoint on this kernel",
        ),
        (
            "--event",
            "no_colon",
            "--event \"no_colon\": expected system:name",
        ),
        ("--kprobe", "x", "--kprobe \"x\": expected"),
    ] {
        let bundle = dir.path().join("none.ppk");
        let out = record(&[
            "--preset",
            "cpu",
            option,
            value,
            "-d",
            "1s",
            "-o",
            bundle.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{option} {value}: {stderr}");
        assert!(stderr.contains(says), "{option} {value}: {stderr}");
        let lines = stderr.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(lines, 1, "{option} {value}: one line: {stderr}");
        assert!(!bundle.exists(), "{option} {value}: a bundle was left");
    }
}
