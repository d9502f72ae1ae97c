//! `perfpack export --format firefox`: the processed profile read back, checked against the
//! fixture's known inputs (`testdata/basic.truth.json`, written by the generator from what it
//! put in), against the bundle's own rows, and loaded by the Firefox Profiler's own code
//! (`profiler-cli`, the profiler's command-line front end from npm).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{fixture, ok, perfpack};

/// The name prefix of the export's off-CPU threads (`export::firefox::OFF_CPU_THREAD`).
const OFF_CPU_THREAD: &str = "off-CPU µs: ";

fn truth() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/basic.truth.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn export(bundle: &Path, dir: &Path, name: &str) -> Vec<u8> {
    let out = dir.join(name);
    let b = bundle;
    ok(&perfpack([
        "export",
        b.to_str().unwrap(),
        "--format",
        "firefox",
        "-o",
        out.to_str().unwrap(),
    ]));
    std::fs::read(out).unwrap()
}

use super::sql_rows as rows;

/// A JSON object of counts.
fn counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array"))
}

fn len(table: &Value) -> usize {
    table["length"].as_u64().unwrap() as usize
}

/// `swapper/N` are one thread (pid 0, tid 0) in a profile, as in perf's.
fn comm_key(name: &str) -> &str {
    if name.starts_with("swapper/") {
        "swapper"
    } else {
        name
    }
}

/// What a profile holds, read back from its JSON.
#[derive(Debug, Default)]
pub struct Read {
    pub samples_by_comm: BTreeMap<String, u64>,
    /// Samples whose leaf is each function.
    pub self_by_leaf: BTreeMap<String, u64>,
    /// Samples with each function anywhere on their stack.
    pub total_by_function: BTreeMap<String, u64>,
    pub block_latencies_ns: Vec<i64>,
    pub process_markers: u64,
    pub tracepoint_markers: u64,
    /// Each counter track's values (the file holds their changes).
    pub counters: BTreeMap<String, Vec<f64>>,
}

/// Exports `bundle` (twice: the bytes must not change, and `.gz` gzips), checks the format's
/// invariants, and checks it against the bundle's own rows: CPU samples per thread as SQL
/// counts them, every completed block request with its latency, and blocked time per thread
/// paired here from the raw `sched_switch` rows.
pub fn check_against_bundle(bundle: &Path) -> Read {
    let dir = tempfile::tempdir().unwrap();
    let json = export(bundle, dir.path(), "p.json");
    // Deterministic, and gzipped for a .gz name.
    let gz = export(bundle, dir.path(), "p.json.gz");
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped).unwrap();
    assert!(unzipped == json, "the same bundle gave other bytes");
    let p: Value = serde_json::from_slice(&json).unwrap();
    let mut read = Read::default();

    // Named from the bundle: the profiler is told not to symbolicate.
    assert_eq!(p["meta"]["symbolicated"], true);
    // The format's invariants: every index in range, times sorted per thread.
    let n_categories = arr(&p["meta"], "categories").len();
    let mut samples_by_tid: BTreeMap<i64, u64> = BTreeMap::new();
    let mut blocked_by_tid: BTreeMap<i64, f64> = BTreeMap::new();
    // Off-CPU threads: (µs of their samples' weights, samples) per tid.
    let mut off_cpu_by_tid: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for t in arr(&p, "threads") {
        let strings = arr(t, "stringArray");
        let (samples, stacks, frames, funcs) = (
            &t["samples"],
            &t["stackTable"],
            &t["frameTable"],
            &t["funcTable"],
        );
        for (i, prefix) in arr(stacks, "prefix").iter().enumerate() {
            if let Some(pre) = prefix.as_u64() {
                assert!(
                    (pre as usize) < i,
                    "stack {i}'s prefix {pre} is not before it"
                );
            }
            assert!((arr(stacks, "frame")[i].as_u64().unwrap() as usize) < len(frames));
        }
        for (i, f) in arr(frames, "func").iter().enumerate() {
            assert!((f.as_u64().unwrap() as usize) < len(funcs));
            assert!((arr(frames, "category")[i].as_u64().unwrap() as usize) < n_categories);
        }
        for name in arr(funcs, "name") {
            assert!((name.as_u64().unwrap() as usize) < strings.len());
        }
        assert!(
            arr(samples, "timeDeltas")
                .iter()
                .all(|d| d.as_f64().unwrap() >= 0.0),
            "samples out of order on {}",
            t["name"]
        );
        let n = len(samples) as u64;
        // A tid the profile holds twice (under two pids) gets a `.N` suffix.
        // The profile's tids are unsigned: an exited task's -1 is 4294967295 there.
        let tid: u32 = t["tid"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let tid = i64::from(tid as i32);
        if t["name"].as_str().unwrap().starts_with(OFF_CPU_THREAD) {
            let us: u64 = match samples["weight"].as_array() {
                Some(w) => w.iter().map(|x| x.as_u64().unwrap()).sum(),
                None => n,
            };
            let e = off_cpu_by_tid.entry(tid).or_default();
            e.0 += us;
            e.1 += n;
            continue;
        }
        *read
            .samples_by_comm
            .entry(comm_key(t["name"].as_str().unwrap()).to_string())
            .or_default() += n;
        if n > 0 {
            *samples_by_tid.entry(tid).or_default() += n;
        }
        // The functions of each sample: its leaf, and every one on its stack once.
        let name_of = |stack: usize| {
            let frame = arr(stacks, "frame")[stack].as_u64().unwrap() as usize;
            let func = arr(frames, "func")[frame].as_u64().unwrap() as usize;
            let name = arr(funcs, "name")[func].as_u64().unwrap() as usize;
            strings[name].as_str().unwrap().to_string()
        };
        for s in arr(samples, "stack") {
            let Some(leaf) = s.as_u64() else { continue };
            *read.self_by_leaf.entry(name_of(leaf as usize)).or_default() += 1;
            let mut on = std::collections::BTreeSet::new();
            let mut at = Some(leaf);
            while let Some(stack) = at {
                on.insert(name_of(stack as usize));
                at = arr(stacks, "prefix")[stack as usize].as_u64();
            }
            for f in on {
                *read.total_by_function.entry(f).or_default() += 1;
            }
        }
        let markers = &t["markers"];
        assert!(
            arr(markers, "startTime")
                .windows(2)
                .all(|w| w[0].as_f64() <= w[1].as_f64()),
            "markers out of order on {}",
            t["name"]
        );
        for data in arr(markers, "data") {
            match data["type"].as_str().unwrap() {
                "OffCpu" => {
                    *blocked_by_tid.entry(tid).or_default() += data["blocked"].as_f64().unwrap()
                }
                "Process" => read.process_markers += 1,
                "Tracepoint" => read.tracepoint_markers += 1,
                "BlockIO" => read
                    .block_latencies_ns
                    .push((data["latency"].as_f64().unwrap() * 1e6).round() as i64),
                _ => {}
            }
        }
    }

    for c in arr(&p, "counters") {
        let mut value = 0.0;
        let values = arr(&c["samples"], "count")
            .iter()
            .map(|d| {
                value += d.as_f64().unwrap();
                value
            })
            .collect();
        read.counters
            .insert(c["name"].as_str().unwrap().to_string(), values);
    }

    // Samples per thread, as SQL counts them.
    let by_tid: BTreeMap<i64, u64> = rows(
        bundle,
        "SELECT tid, COUNT(*) AS n FROM cpu_sample GROUP BY tid",
    )
    .iter()
    .map(|r| (r["tid"].as_i64().unwrap(), r["n"].as_u64().unwrap()))
    .collect();
    let differ: Vec<_> = samples_by_tid
        .keys()
        .chain(by_tid.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|t| samples_by_tid.get(t) != by_tid.get(t))
        .map(|t| (t, samples_by_tid.get(t), by_tid.get(t)))
        .collect();
    assert!(
        differ.is_empty(),
        "{}: samples per tid (tid, in the profile, in SQL): {differ:?}",
        bundle.display()
    );
    // Every completed block request, with its latency.
    let block = rows(
        bundle,
        "SELECT COUNT(*) AS n, SUM(latency_ns) AS ns FROM block_io",
    );
    assert_eq!(
        read.block_latencies_ns.len() as u64,
        block[0]["n"].as_u64().unwrap()
    );
    assert_eq!(
        read.block_latencies_ns.iter().sum::<i64>(),
        block[0]["ns"].as_i64().unwrap_or(0)
    );

    // Every fork, exec and exit, and every other stored tracepoint event, is a marker.
    let n = |sql: &str| rows(bundle, sql)[0]["n"].as_u64().unwrap();
    assert_eq!(
        read.process_markers,
        n("SELECT COUNT(*) AS n FROM sched_process")
    );
    assert_eq!(
        read.tracepoint_markers,
        n("SELECT COUNT(*) AS n FROM ftrace_event_stored \
           WHERE event NOT LIKE 'block:block_rq%' AND event NOT LIKE 'sched:sched_process%'")
    );

    // Blocked time per thread: each switch-out not runnable until the thread's next switch-in,
    // paired here from the raw sched_switch rows.
    let switches = rows(
        bundle,
        "SELECT ts_ns, prev_tid, prev_state, next_tid FROM sched_switch ORDER BY ts_ns, cpu",
    );
    let mut out_at: BTreeMap<i64, i64> = BTreeMap::new();
    let mut expected: BTreeMap<i64, f64> = BTreeMap::new();
    for r in &switches {
        let ts = r["ts_ns"].as_i64().unwrap();
        let (prev, next) = (
            r["prev_tid"].as_i64().unwrap(),
            r["next_tid"].as_i64().unwrap(),
        );
        if prev != 0 {
            if r["prev_state"].as_str().unwrap_or("R").starts_with('R') {
                out_at.remove(&prev);
            } else {
                out_at.insert(prev, ts);
            }
        }
        if next != 0
            && let Some(from) = out_at.remove(&next)
        {
            *expected.entry(next).or_default() += (ts - from) as f64 / 1e6;
        }
    }
    assert_eq!(
        blocked_by_tid.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (tid, ms) in &expected {
        let got = blocked_by_tid[tid];
        assert!(
            (got - ms).abs() < 1e-6 * ms.max(1.0),
            "tid {tid}: {got} ms blocked in the profile, {ms} ms from sched_switch"
        );
        // The off-CPU thread's samples weigh the same time, each rounded to a µs.
        let (us, n) = off_cpu_by_tid.get(tid).copied().unwrap_or_default();
        assert!(
            (us as f64 - ms * 1e3).abs() <= 0.5 * n as f64 + 1e-6,
            "tid {tid}: {us} µs in its off-CPU samples ({n}), {ms} ms from sched_switch"
        );
    }
    assert_eq!(
        off_cpu_by_tid.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    read
}

#[test]
fn a_firefox_profile_of_the_fixture_holds_what_the_generator_put_in() {
    let read = check_against_bundle(&fixture("basic"));
    let truth = truth();
    let mut samples_by_comm = read.samples_by_comm.clone();
    // Samples per comm as the generator made them.
    let expected: BTreeMap<String, u64> = truth["samples_by_comm"]
        .as_object()
        .unwrap()
        .iter()
        .fold(BTreeMap::new(), |mut m, (c, n)| {
            *m.entry(comm_key(c).to_string()).or_default() += n.as_u64().unwrap();
            m
        });
    samples_by_comm.retain(|_, n| *n > 0);
    assert_eq!(samples_by_comm, expected);
    let leaves = counts(&truth["samples_by_leaf"]);
    assert_eq!(read.self_by_leaf, leaves, "leaf functions");

    // Every completed block request, with its latency: the generator's own log2 histogram.
    assert_eq!(
        read.block_latencies_ns.len() as u64,
        truth["block"]["count"].as_u64().unwrap()
    );
    let mut buckets: BTreeMap<String, u64> = BTreeMap::new();
    for ns in &read.block_latencies_ns {
        let k = if *ns <= 1 { 0 } else { 63 - ns.leading_zeros() };
        *buckets.entry(k.to_string()).or_default() += 1;
    }
    let expected = counts(&truth["block"]["log2_buckets"]);
    assert_eq!(buckets, expected, "block latency buckets");

    // The clock and the IPC the generator ran the CPUs at, every second.
    for (name, want) in [("Busy MHz", "busy_mhz"), ("IPC", "ipc")] {
        let want = truth[want].as_f64().unwrap();
        let got = &read.counters[name];
        assert!(got.len() >= 9, "{name}: {got:?}");
        for v in got {
            assert!((v - want).abs() < 1e-6 * want, "{name}: {v} vs {want}");
        }
    }
}

/// The Firefox Profiler's own code (its command-line front end) loads the profile, and its call
/// tree counts what the generator put into the fixture.
#[test]
fn the_firefox_profilers_own_loader_reads_the_profile_and_counts_its_samples() {
    let Some(cli) = std::env::var_os("PERFPACK_PROFILER_CLI").filter(|p| Path::new(p).exists())
    else {
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_TOOLS",
            "PERFPACK_PROFILER_CLI does not name the Firefox Profiler's profiler-cli \
             (npm install @firefox-devtools/profiler-cli); .ci/run installs it",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    export(&fixture("basic"), dir.path(), "p.json.gz");
    let session = format!("perfpack-test-{}", std::process::id());
    let run = |args: &[&str]| -> Value {
        let out = std::process::Command::new(&cli)
            .args(args)
            .args(["--session", &session, "--json"])
            .env("HOME", dir.path())
            .output()
            .expect("profiler-cli runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "profiler-cli {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // `load` says what it does before its JSON.
        let json = &text[text.find('{').expect("JSON output")..];
        serde_json::from_str(json).unwrap()
    };
    let path = dir.path().join("p.json.gz");
    run(&["load", path.to_str().unwrap()]);
    let threads = run(&["thread", "list"]);
    let mut self_by_leaf: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    let mut off_cpu_us = 0u64;
    let mut modules = std::collections::BTreeSet::new();
    for t in arr(&threads, "threads") {
        let handle = t["threadHandle"].as_str().unwrap();
        // The off-CPU threads' samples are blocked time: the loader weighs them by their µs.
        if t["name"]
            .as_str()
            .is_some_and(|n| n.starts_with(OFF_CPU_THREAD))
        {
            let s = run(&["thread", "samples", "--thread", handle, "--include-idle"]);
            off_cpu_us += s["categoryBreakdown"]["totalSamples"].as_u64().unwrap();
            continue;
        }
        let s = run(&[
            "thread",
            "samples",
            "--thread",
            handle,
            "--include-idle",
            "--limit",
            "10000",
        ]);
        total += s["categoryBreakdown"]["totalSamples"].as_u64().unwrap();
        for f in arr(&s, "topFunctionsBySelf") {
            let n = f["selfSamples"].as_u64().unwrap();
            if n > 0 {
                // User functions come with their module (`postgres!heapgettup_pagemode`).
                let name = f["name"].as_str().unwrap();
                if let Some((module, _)) = name.split_once('!') {
                    modules.insert(module.to_string());
                }
                let function = name.split_once('!').map_or(name, |(_, f)| f);
                *self_by_leaf.entry(function.to_string()).or_default() += n;
            }
        }
    }
    // The fixture's user modules, as the profiler names them.
    assert_eq!(
        modules.into_iter().collect::<Vec<_>>(),
        ["libjvm.so", "nginx", "postgres"],
        "modules of the leaf functions"
    );
    let _ = std::process::Command::new(&cli)
        .args(["stop", &session])
        .env("HOME", dir.path())
        .output();
    let truth = truth();
    assert_eq!(total, truth["samples"].as_u64().unwrap());
    // What the file says the threads were blocked, read back by the test, is what the
    // profiler's loader counts.
    let file: Value = {
        let mut json = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()),
            &mut json,
        )
        .unwrap();
        serde_json::from_slice(&json).unwrap()
    };
    let written: u64 = arr(&file, "threads")
        .iter()
        .filter(|t| t["name"].as_str().unwrap().starts_with(OFF_CPU_THREAD))
        .flat_map(|t| arr(&t["samples"], "weight").clone())
        .map(|w| w.as_u64().unwrap())
        .sum();
    assert!(written > 0);
    assert_eq!(off_cpu_us, written);
    let leaves = counts(&truth["samples_by_leaf"]);
    assert_eq!(self_by_leaf, leaves);
}

#[test]
fn a_firefox_export_holds_only_what_the_options_select() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.json");
    let b = fixture("basic");
    ok(&perfpack([
        "export",
        b.to_str().unwrap(),
        "--format",
        "firefox",
        "--pid",
        "1210",
        "-o",
        out.to_str().unwrap(),
    ]));
    let p: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let mut samples = 0;
    for t in arr(&p, "threads") {
        let pid = t["pid"].as_str().unwrap();
        let n = len(&t["samples"]) + len(&t["markers"]);
        // The perfpack process holds the counters and the losses.
        assert!(
            pid == "1210" || (pid == i32::MAX.to_string() && len(&t["samples"]) == 0) || n == 0,
            "pid {pid} has {n} samples and markers"
        );
        // CPU samples: the off-CPU threads' samples are blocked intervals.
        if pid == "1210" && !t["name"].as_str().unwrap().starts_with(OFF_CPU_THREAD) {
            samples += len(&t["samples"]);
        }
    }
    let r = rows(&b, "SELECT COUNT(*) AS n FROM cpu_sample WHERE pid = 1210");
    assert_eq!(samples as u64, r[0]["n"].as_u64().unwrap());
    // A perfetto-json export holds everything: a selection is refused in one line.
    let err = super::fails(&perfpack([
        "export",
        b.to_str().unwrap(),
        "--format",
        "perfetto-json",
        "--pid",
        "1210",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(
        err.contains("perfetto-json export holds everything"),
        "{err}"
    );
}
