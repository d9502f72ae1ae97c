//! Stacks without frame pointers, unwound on the box: a C program built `-O2
//! -fomit-frame-pointer` (`tests/data/unwind/chain.c`, built here with `cc`), the machine's own
//! python3, and a thread that blocks under a known chain (off-CPU stacks at switch-out). Like
//! every live test, each holds `LIVE` while it records.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use arrow_array::types::{Int32Type, Int64Type};
use perfpack_schema::{Bundle, tables};

use super::{Sample, col, require_recording, samples, source_of, str_col};

/// The chain `chain.c` burns its CPU in, root first.
const CHAIN: [&str; 5] = ["main", "chain_a", "chain_b", "chain_c", "chain_leaf"];

/// Builds `chain.c` into `dir` with `cc -O2 -fomit-frame-pointer`.
fn build_chain(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/unwind/chain.c");
    let exe = dir.join("chain");
    let out = Command::new("cc")
        .args(["-O2", "-fomit-frame-pointer", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("cc (the C compiler) runs");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The premise: no frame-pointer prologue in the chain's functions.
    let dis = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(&exe)
        .output()
        .expect("objdump runs");
    let dis = String::from_utf8_lossy(&dis.stdout);
    let body = dis
        .split("<chain_b>:")
        .nth(1)
        .expect("chain_b in the binary");
    let first = body.lines().nth(1).unwrap_or_default();
    assert!(
        !first.contains("push   %rbp"),
        "chain_b keeps a frame pointer: {first}"
    );
    exe
}

fn start(exe: &Path, args: &[&str]) -> Child {
    Command::new(exe)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Whether `frames` (names root first) holds `chain` as consecutive frames.
fn has_chain(frames: &[(String, String)], chain: &[&str]) -> bool {
    frames
        .windows(chain.len())
        .any(|w| w.iter().zip(chain).all(|((n, _), c)| n == c))
}

/// What the recorded process did while it was recorded, by the kernel's counts.
#[derive(Debug)]
struct Window {
    /// The process recorded.
    pid: u32,
    /// CPU seconds it used (/proc/PID/stat).
    cpu_s: f64,
    /// Times it blocked (voluntary context switches of its main thread, /proc/PID/status).
    blocked: u64,
    /// Perf records the recorder reported lost.
    lost: u64,
}

/// Voluntary context switches of `pid`'s main thread so far.
fn voluntary_switches(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches in /proc/PID/status")
}

/// Records the running `child` with `--pid` at 199 Hz and these extra arguments for 2.5 s
/// after the recorder says it is recording, then kills the child; returns its samples, the
/// bundle, and what it did meanwhile.
fn record_pid(
    dir: &Path,
    name: &str,
    child: Child,
    extra: &[&str],
) -> (Vec<Sample>, PathBuf, Window) {
    let bundle = dir.join(name);
    let pid = child.id().to_string();
    let b = bundle.to_str().unwrap().to_string();
    let mut args = vec!["-d", "120s", "--pid", &pid, "--freq", "199", "-o", &b];
    args.extend_from_slice(extra);
    let recording = super::start_recording(&args);
    let (cpu, blocked) = (super::cpu_s_of(child.id()), voluntary_switches(child.id()));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let cpu = super::cpu_s_of(child.id()) - cpu;
    let blocked = voluntary_switches(child.id()) - blocked;
    let (ok, said) = recording.stop();
    // SAFETY: kill(2) of our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let pid = super::wait_used(child).pid;
    assert!(ok, "{said}");
    let mine = samples(&bundle)
        .into_iter()
        .filter(|s| s.pid == pid as i32)
        .collect();
    let lost = super::lost(&bundle, "perf-lost-records");
    (
        mine,
        bundle,
        Window {
            pid,
            cpu_s: cpu,
            blocked,
            lost,
        },
    )
}

/// Asserts that `n` CPU samples are what 199 Hz gives for the CPU time the process used while
/// recorded: frequency mode aims at 199 per CPU second; at least half (the kernel's first
/// period is a guess), less what the recorder reported lost. And at least 50, for the shares
/// the tests take of them: 2.5 s of a CPU burner give ~500 on an idle machine, and ~125 when
/// two busy loops share both CPUs with it.
fn assert_sampled(what: &str, n: usize, w: &Window) {
    assert!(
        n as f64 + w.lost as f64 >= w.cpu_s * 199.0 / 2.0 && n >= 50,
        "{what}: only {n} samples for {:.2} CPU s recorded ({} perf records lost)",
        w.cpu_s,
        w.lost
    );
}

#[test]
fn omitted_frame_pointers_are_unwound_from_cfi_and_lost_without() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_chain(dir.path());
    let mut shares = Vec::new();
    for unwind in ["auto", "fp"] {
        let child = start(&exe, &["burn", "120"]);
        let (mine, bundle, window) = record_pid(
            dir.path(),
            &format!("{unwind}.ppk"),
            child,
            &["--preset", "cpu", "--unwind", unwind],
        );
        let cpu: Vec<&Sample> = mine
            .iter()
            .filter(|s| s.event != "sched:sched_switch")
            .collect();
        assert_sampled(unwind, cpu.len(), &window);
        let whole = cpu.iter().filter(|s| has_chain(&s.frames, &CHAIN)).count();
        let share = whole as f64 / cpu.len() as f64;
        eprintln!(
            "--unwind {unwind}: {whole} of {} samples carry main→…→chain_leaf",
            cpu.len()
        );
        if unwind == "auto" {
            assert!(
                share >= 0.95,
                "--unwind auto: {whole} of {} samples carry the whole chain; e.g. {:?}",
                cpu.len(),
                cpu.iter()
                    .find(|s| !has_chain(&s.frames, &CHAIN))
                    .map(|s| &s.frames)
            );
            // Said so, per sample: the user part was unwound with CFI, and reached the root.
            // The manifest counts the same, per process, for `perfpack info`.
            let perf = source_of(&bundle, "perf-samples");
            let stat = perf["unwind"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["pid"] == window.pid)
                .unwrap_or_else(|| panic!("no unwind counts of the program: {perf}"));
            assert_eq!(
                stat["samples"].as_u64().unwrap(),
                cpu.len() as u64,
                "{stat}"
            );
            assert_eq!(
                stat["dwarf"].as_u64().unwrap(),
                cpu.iter().filter(|s| s.unwind == "dwarf").count() as u64,
                "{stat}"
            );
            let dwarf = cpu.iter().filter(|s| s.unwind == "dwarf").count();
            let truncated = cpu.iter().filter(|s| s.truncated == Some(true)).count();
            assert!(
                dwarf * 100 >= cpu.len() * 95,
                "{dwarf} of {} by CFI",
                cpu.len()
            );
            assert!(truncated * 100 <= cpu.len() * 5, "{truncated} truncated");
        } else {
            assert!(cpu.iter().all(|s| s.unwind == "fp" || s.unwind == "kernel"));
        }
        shares.push(share);
    }
    // The frame-pointer walk loses the chain: the unwinder did the work.
    assert!(
        shares[1] < 0.5,
        "--unwind fp still finds the chain in {:.0}%",
        shares[1] * 100.0
    );
}

/// The machine's python3 (Debian's: python, libc and libz without frame pointers).
fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn python3_stacks_reach_main_with_named_leaves() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let script = "import json, zlib, re, time\n\
                  end = time.time() + 120\n\
                  doc = {'k%d' % i: [i, str(i) * 10, {'x': i / 3}] for i in range(300)}\n\
                  while time.time() < end:\n\
                  \x20   s = json.dumps(doc)\n\
                  \x20   z = zlib.compress(s.encode(), 6)\n\
                  \x20   json.loads(zlib.decompress(z))\n\
                  \x20   re.findall(r'k[0-9]+', s)\n";
    let child = Command::new(python3())
        .args(["-c", script])
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let (mine, _, window) = record_pid(dir.path(), "py.ppk", child, &["--preset", "cpu"]);
    let cpu: Vec<&Sample> = mine
        .iter()
        .filter(|s| s.event != "sched:sched_switch")
        .collect();
    assert_sampled("python3", cpu.len(), &window);
    let is_main = |n: &str| n == "main" || n == "Py_BytesMain" || n == "__libc_start_call_main";
    let reach = cpu
        .iter()
        .filter(|s| s.frames.iter().any(|(n, k)| k == "user" && is_main(n)))
        .count();
    // Debian strips python3.11, libz and libc: their static functions have no name without
    // debug symbols (perf shows them as [unknown] too), so the leaves are checked for lying in
    // a real mapped file, which wrong unwinding does not give, and their names are counted.
    // The leaf: the last frame outside the kernel (`user`, or `unknown` outside any mapping).
    let leaf_of = |s: &Sample| s.frames.iter().rev().find(|(_, k)| k != "kernel").cloned();
    let in_file = cpu
        .iter()
        .filter(|s| leaf_of(s).is_some_and(|(_, k)| k == "user"))
        .count();
    let named_leaf = cpu
        .iter()
        .filter(|s| leaf_of(s).is_some_and(|(n, _)| n != "[unknown]"))
        .count();
    let depth: Vec<usize> = cpu.iter().map(|s| s.frames.len()).collect();
    let mut sorted = depth.clone();
    sorted.sort_unstable();
    eprintln!(
        "python3: {reach} of {} samples reach main, {named_leaf} with a named user leaf, median depth {}",
        cpu.len(),
        sorted[sorted.len() / 2]
    );
    assert!(
        reach * 100 >= cpu.len() * 90,
        "{reach} of {} samples reach main; e.g. {:?}",
        cpu.len(),
        cpu.iter()
            .find(|s| !s.frames.iter().any(|(n, _)| is_main(n)))
            .map(|s| &s.frames)
    );
    assert!(
        in_file * 100 >= cpu.len() * 90,
        "{in_file} of {} samples have a user leaf in a mapped file",
        cpu.len()
    );
}

/// Blocked intervals of `tid` from the bundle's `sched_switch` rows (switch-out in a state
/// other than runnable → its next switch-in): (start, duration ns).
fn blocked_intervals(bundle: &Path, tid: i32) -> Vec<(i64, i64)> {
    let b = Bundle::open(bundle).unwrap();
    let mut ev: Vec<(i64, bool, bool)> = Vec::new(); // (ts, out, blocked)
    for batch in b.read_table(tables::SCHED_SWITCH).unwrap() {
        let ts = col::<Int64Type>(&batch, "ts_ns");
        let prev = col::<Int32Type>(&batch, "prev_tid");
        let next = col::<Int32Type>(&batch, "next_tid");
        let state = str_col(&batch, "prev_state");
        for i in 0..batch.num_rows() {
            if prev.value(i) == tid {
                ev.push((ts.value(i), true, !state.value(i).starts_with('R')));
            }
            if next.value(i) == tid {
                ev.push((ts.value(i), false, false));
            }
        }
    }
    ev.sort_unstable_by_key(|e| (e.0, !e.1));
    ev.windows(2)
        .filter(|w| w[0].1 && w[0].2 && !w[1].1)
        .map(|w| (w[0].0, w[1].0 - w[0].0))
        .collect()
}

#[test]
fn blocked_time_is_under_the_functions_that_blocked() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_chain(dir.path());
    let child = start(&exe, &["sleep", "120"]);
    let pid = child.id() as i32;
    let (mine, bundle, window) = record_pid(dir.path(), "off.ppk", child, &["--preset", "sched"]);
    let switches: Vec<&Sample> = mine
        .iter()
        .filter(|s| s.event == "sched:sched_switch" && s.tid == pid)
        .collect();
    let intervals = blocked_intervals(&bundle, pid);
    // Every time the kernel counted it blocking while recorded is an interval, less the last
    // (its switch-in may follow the stop) and what ftrace reported lost. At least 50, for the
    // share below: 2.5 s of 2 ms sleeps give ~1,000 on an idle machine.
    let ftrace_lost = source_of(&bundle, "ftrace")["losses"]
        .as_array()
        .map_or(0, |l| {
            l.iter()
                .map(|l| l["count"].as_u64().unwrap_or(0))
                .sum::<u64>()
        });
    assert!(
        intervals.len() as u64 + 1 + ftrace_lost >= window.blocked && intervals.len() >= 50,
        "{} blocked intervals, {} blocking switches counted by the kernel, {ftrace_lost} ftrace \
         events lost; the ftrace source: {}; its switch-out samples: {}",
        intervals.len(),
        window.blocked,
        source_of(&bundle, "ftrace"),
        switches.len(),
    );
    // Each blocked interval's stack: the switch-out sample of the same switch (stamped within
    // 100 µs of the ftrace event), weighted by the interval's length. An interval whose sample
    // the recorder reported lost has no stack to be under: the longest as many such intervals
    // as were lost leave the total.
    let switch_lost = super::lost(&bundle, "perf-lost-switch-samples") as usize;
    let (mut total, mut under, mut stackless) = (0i64, 0i64, Vec::new());
    for &(start, dur) in &intervals {
        total += dur;
        let stack = switches
            .iter()
            .filter(|s| (s.ts_ns - start).abs() <= 100_000)
            .min_by_key(|s| (s.ts_ns - start).abs());
        match stack {
            Some(s) if has_chain(&s.frames, &CHAIN) => under += dur,
            Some(_) => {}
            None => stackless.push(dur),
        }
    }
    stackless.sort_unstable_by(|a, b| b.cmp(a));
    total -= stackless.iter().take(switch_lost).sum::<i64>();
    eprintln!(
        "off-CPU: {under} of {total} blocked ns under main→…→chain_leaf ({} intervals, {} switch-out samples, {switch_lost} lost)",
        intervals.len(),
        switches.len()
    );
    assert!(
        under * 100 >= total * 90,
        "{under} of {total} blocked ns under the chain; e.g. {:?}",
        switches.first().map(|s| &s.frames)
    );
    // The kernel part is there too, on top: the switch happened in the scheduler.
    let kernel_top = switches
        .iter()
        .filter(|s| s.frames.last().is_some_and(|(_, k)| k == "kernel"))
        .count();
    assert!(
        kernel_top * 10 >= switches.len() * 9,
        "{kernel_top} of {}",
        switches.len()
    );

    // And the analyzer's off-CPU flame graph, built from the same bundle, agrees.
    let analyzer = Path::new(super::RECORDER).with_file_name("perfpack");
    if !analyzer.exists() {
        panic!(
            "{} is not built: run the workspace's tests (cargo test --workspace) to check the off-CPU flame graph too",
            analyzer.display()
        );
    }
    let out = Command::new(&analyzer)
        .args([
            "flamegraph",
            "--kind",
            "offcpu",
            "--folded",
            "--no-wakers",
            "-o",
            "-",
            "--pid",
        ])
        .arg(pid.to_string())
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let folded = String::from_utf8(out.stdout).unwrap();
    let (mut all, mut chain) = (0u64, 0u64);
    for line in folded.lines() {
        let (stack, n) = line.rsplit_once(' ').unwrap();
        let n: u64 = n.parse().unwrap();
        all += n;
        if stack.contains("main;chain_a;chain_b;chain_c;chain_leaf") {
            chain += n;
        }
    }
    assert!(
        chain * 100 >= all * 90,
        "flame graph: {chain} of {all} ns under the chain:\n{folded}"
    );
}

#[test]
fn inlined_functions_are_frames_with_lines_from_split_debug_info() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/unwind/chain.c");
    let exe = dir.path().join("inl");
    let debug = dir.path().join("inl.debug");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("the toolchain runs");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("cc")
        .args(["-O2", "-g", "-fomit-frame-pointer", "-o"])
        .arg(&exe)
        .arg(&src));
    // Split debug info: the binary keeps no symbols and no DWARF, only a .gnu_debuglink.
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&exe)
        .arg(&debug));
    run(Command::new("objcopy")
        .args(["--strip-debug", "--strip-unneeded"])
        .arg(&exe));
    run(Command::new("objcopy")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(&exe));
    let sections = Command::new("readelf")
        .arg("-S")
        .arg(&exe)
        .output()
        .unwrap();
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(
        !sections.contains(".debug_info") && !sections.contains(".symtab"),
        "the binary still has its own symbols"
    );
    // Where chain_mix's loop is in the source: the truth the frame's line is checked against.
    let text = std::fs::read_to_string(&src).unwrap();
    let body: Vec<u32> = text
        .lines()
        .enumerate()
        .skip_while(|(_, l)| !l.contains("unsigned long chain_mix("))
        .skip(1)
        .take_while(|(_, l)| !l.starts_with('}'))
        .map(|(i, _)| i as u32 + 1)
        .collect();
    assert!(body.len() >= 3, "chain_mix's body in {}", src.display());

    let child = start(&exe, &["burn", "120"]);
    let (mine, bundle, window) = record_pid(dir.path(), "inl.ppk", child, &["--preset", "cpu"]);
    assert_sampled("inlined", mine.len(), &window);
    let with_inline = mine
        .iter()
        .filter(|s| has_chain(&s.frames, &["chain_c", "chain_leaf", "chain_mix"]))
        .count();
    assert!(
        with_inline * 100 >= mine.len() * 90,
        "{with_inline} of {} samples show chain_mix inlined in chain_leaf; e.g. {:?}",
        mine.len(),
        mine.first().map(|s| &s.frames)
    );
    // Its frame rows carry the source file and a line of chain_mix's body.
    let b = Bundle::open(&bundle).unwrap();
    let mut lines = Vec::new();
    for batch in b.read_table(tables::FRAME).unwrap() {
        let name = str_col(&batch, "name");
        let file = str_col(&batch, "file");
        let line = col::<Int32Type>(&batch, "line");
        for i in 0..batch.num_rows() {
            if name.value(i) == "chain_mix" {
                assert!(
                    file.value(i).ends_with("tests/data/unwind/chain.c"),
                    "{}",
                    file.value(i)
                );
                lines.push(line.value(i) as u32);
            }
        }
    }
    assert!(!lines.is_empty(), "no chain_mix frame row");
    assert!(
        lines.iter().all(|l| body.contains(l)),
        "chain_mix lines {lines:?}, its body is lines {body:?}"
    );
}

#[test]
fn a_binary_deleted_while_it_runs_still_unwinds_and_symbolizes() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let built = build_chain(dir.path());
    let exe = dir.path().join("chain-deleted");
    std::fs::copy(&built, &exe).unwrap();
    // Spawned means exec'd: the process maps the file before it is gone from the file system
    // (as after a package upgrade).
    let child = start(&exe, &["burn", "120"]);
    std::fs::remove_file(&exe).unwrap();
    let (mine, _, window) = record_pid(dir.path(), "del.ppk", child, &["--preset", "cpu"]);
    assert_sampled("deleted", mine.len(), &window);
    let whole = mine.iter().filter(|s| has_chain(&s.frames, &CHAIN)).count();
    assert!(
        whole * 100 >= mine.len() * 95,
        "{whole} of {} samples carry the chain; e.g. {:?}",
        mine.len(),
        mine.iter()
            .find(|s| !has_chain(&s.frames, &CHAIN))
            .map(|s| &s.frames)
    );
}
