//! Flame graphs, heat maps and latency histograms on the fixture bundles: golden pictures
//! rendered twice to the same bytes, heat-map cells and histogram percentiles checked against
//! direct SQL over the same bundle, and hostile names escaped in every output format.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{fails, fixture, golden, ok, perfpack};

/// The single number a SQL query over `bundle` returns.
fn count(bundle: &str, q: &str) -> u64 {
    ok(&perfpack(["sql", bundle, "--format", "csv", "-q", q]))
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Runs perfpack twice with the same arguments and checks the outputs are byte-identical.
fn twice(args: &[&str]) -> String {
    let a = ok(&perfpack(args));
    let b = ok(&perfpack(args));
    assert!(a == b, "two runs of {args:?} differ");
    a
}

fn basic() -> String {
    fixture("basic").display().to_string()
}

#[test]
fn pictures_match_their_golden_files_and_are_deterministic() {
    let b = basic();
    let cases: &[(&str, &[&str])] = &[
        ("flamegraph-cpu.svg", &["flamegraph", &b, "-o", "-"]),
        (
            "flamegraph-cpu-postgres-icicle-reversed.svg",
            &[
                "flamegraph",
                &b,
                "--comm",
                "postgres",
                "--from",
                "2",
                "--to",
                "8",
                "--inverted",
                "--reverse",
                "-o",
                "-",
            ],
        ),
        (
            "flamegraph-offcpu.svg",
            &[
                "flamegraph",
                &b,
                "--kind",
                "offcpu",
                "--from",
                "0",
                "--to",
                "1",
                "-o",
                "-",
            ],
        ),
        ("heatmap-block.svg", &["heatmap", &b, "-o", "-"]),
        (
            "heatmap-runq-log.svg",
            &["heatmap", &b, "--source", "runq", "--log", "-o", "-"],
        ),
        (
            "heatmap-syscall-max.svg",
            &[
                "heatmap", &b, "--source", "syscall", "--max", "2ms", "--rows", "25", "--step",
                "500ms", "-o", "-",
            ],
        ),
        (
            "heatmap-samples.svg",
            &["heatmap", &b, "--source", "samples", "-o", "-"],
        ),
        (
            "heatmap-cpu.svg",
            &["heatmap", &b, "--source", "cpu", "-o", "-"],
        ),
        (
            "heatmap-process.svg",
            &[
                "heatmap", &b, "--source", "process", "--top", "5", "-o", "-",
            ],
        ),
        (
            "latency-block-by-disk.txt",
            &["latency", &b, "--by", "disk"],
        ),
        (
            "latency-runq.csv",
            &["latency", &b, "--source", "runq", "--format", "csv"],
        ),
    ];
    // One figure of each picture, known independently: from the generator's truth file or
    // counted here from the raw rows.
    let truth = |name: &str| -> Value {
        let path = fixture(name).with_extension("truth.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let t = truth("basic");
    let thousands = super::thousands;
    let n = |v: &Value| v.as_u64().unwrap();
    let syscalls: u64 = t["syscalls_by_name"]
        .as_object()
        .unwrap()
        .values()
        .map(n)
        .sum();
    // postgres between 2 s and 8 s; switch-outs to a sleep (not preemptions) in the first second.
    let start = 1_000_000_000_000i64;
    let postgres = count(
        &b,
        &format!(
            "SELECT COUNT(*) FROM stack_sample WHERE comm = 'postgres' AND ts_ns >= {} AND ts_ns < {}",
            start + 2_000_000_000,
            start + 8_000_000_000
        ),
    );
    let blocked = count(
        &b,
        &format!(
            "SELECT COUNT(*) FROM sched_switch WHERE prev_state <> 'R' AND prev_tid <> 0 AND ts_ns >= {start} AND ts_ns < {}",
            start + 1_000_000_000
        ),
    );
    let bucket = |disk: &str, b: &str| n(&t["block_by_disk"][disk]["log2_buckets"][b]);
    let expected: BTreeMap<&str, Vec<String>> = [
        (
            "flamegraph-cpu.svg",
            vec![format!("{} cpu-clock samples", thousands(n(&t["samples"])))],
        ),
        (
            "flamegraph-cpu-postgres-icicle-reversed.svg",
            vec![format!("{postgres} cpu-clock samples")],
        ),
        (
            "flamegraph-offcpu.svg",
            vec![format!("{blocked} blocked intervals")],
        ),
        (
            "heatmap-block.svg",
            vec![format!("{} requests", thousands(n(&t["block"]["count"])))],
        ),
        (
            "heatmap-runq-log.svg",
            vec![format!("{} waits", thousands(n(&t["runq"]["count"])))],
        ),
        (
            "heatmap-syscall-max.svg",
            vec![format!("{} calls", thousands(syscalls))],
        ),
        (
            "heatmap-samples.svg",
            vec![format!("{} samples", thousands(n(&t["samples"])))],
        ),
        (
            "heatmap-cpu.svg",
            vec![format!("{} rows, % busy", t["n_cpus"])],
        ),
        // The JVM's threads are one process (231 samples), then the four postgres backends
        // (about 163 each); nginx's workers have about 110.
        (
            "heatmap-process.svg",
            [
                "3400 http-nio",
                "1210 postgres",
                "1211 postgres",
                "1212 postgres",
                "1213 postgres",
            ]
            .map(String::from)
            .into(),
        ),
        (
            "latency-block-by-disk.txt",
            vec![
                format!(
                    " 65.536 µs -> 131.072 µs : {:<10} |",
                    bucket("nvme0n1", "16")
                ),
                format!(
                    "131.072 µs -> 262.144 µs : {:<10} |",
                    bucket("nvme0n1", "17")
                ),
            ],
        ),
        (
            "latency-runq.csv",
            vec![format!(
                "all,10,1024,2048,{},{},",
                n(&t["runq"]["log2_buckets"]["10"]),
                n(&t["runq"]["count"])
            )],
        ),
    ]
    .into_iter()
    .collect();
    for (name, args) in cases {
        let out = twice(args);
        let want = &expected[name];
        for w in want {
            assert!(out.contains(w.as_str()), "{name}: no {w:?}");
        }
        golden(&format!("pictures/{name}"), &out);
    }
    assert_eq!(
        expected.len(),
        cases.len(),
        "a picture without its independent figure"
    );
    // The histogram picture goes to a file next to the text.
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("h.svg");
    let svg_arg = svg.display().to_string();
    ok(&perfpack([
        "latency", &b, "--source", "syscall", "--by", "syscall", "--svg", &svg_arg,
    ]));
    let svg = std::fs::read_to_string(&svg).unwrap();
    // Its bars hold every call the generator made.
    let calls: u64 = svg
        .split("<title>")
        .skip(1)
        .filter_map(|t| {
            t.split_once(" calls (")?
                .0
                .rsplit_once(": ")?
                .1
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(calls, syscalls);
    golden("pictures/latency-syscall-by-syscall.svg", &svg);
}

#[test]
fn flame_graph_titles_say_what_was_drawn_and_what_was_lost() {
    let svg = ok(&perfpack(["flamegraph", &basic(), "-o", "-"]));
    for want in [
        "CPU Flame Graph",
        "basic (fixture-basic)",
        "2026-11-02T09:30:00",
        "3,960 cpu-clock samples",
        "LOSSES: 3 perf-lost-records",
    ] {
        assert!(svg.contains(want), "missing {want:?}");
    }
    // Kernel frames are drawn in the kernel colour family, annotations stripped from names.
    assert!(svg.contains(">schedule_hrtimeout_range") || svg.contains("do_syscall_64"));
    assert!(!svg.contains("_[k]"));
    let off = ok(&perfpack([
        "flamegraph",
        &basic(),
        "--kind",
        "offcpu",
        "--folded",
        "-o",
        "-",
    ]));
    assert!(off.contains(";--;"), "wakers are stacked after --");
    let sub = ok(&perfpack([
        "flamegraph",
        &basic(),
        "--kind",
        "offcpu",
        "-o",
        "-",
    ]));
    assert!(sub.contains("last CPU sample before it switched out"));
}

#[test]
fn off_cpu_stacks_come_from_switch_out_samples_where_recorded() {
    // A real `perf record -e sched:sched_switch -g` capture: each switch has its kernel stack.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("sw.ppk").display().to_string();
    let text = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/import/perf-script-sched-switch.txt")
        .display()
        .to_string();
    ok(&perfpack(["import", "perf-script", &text, "-o", &bundle]));
    let switches = ok(&perfpack([
        "sql",
        &bundle,
        "--format",
        "csv",
        "-q",
        "SELECT COUNT(*) FROM sched_switch",
    ]));
    // 121 sched_switch lines, one of them of an exited task (`:-1    -1`).
    assert_eq!(switches, "count(*)\n121\n");
    let folded = ok(&perfpack([
        "flamegraph",
        &bundle,
        "--kind",
        "offcpu",
        "--folded",
        "-o",
        "-",
    ]));
    let lines: Vec<&str> = folded.lines().collect();
    assert!(!lines.is_empty());
    // Every blocked interval found its own switch-out stack, which ends in the scheduler.
    for l in &lines {
        let stack = l.rsplit_once(' ').unwrap().0;
        assert!(
            stack.ends_with("__schedule;__traceiter_sched_switch"),
            "{l}"
        );
    }
    let svg = ok(&perfpack([
        "flamegraph",
        &bundle,
        "--kind",
        "offcpu",
        "-o",
        "-",
    ]));
    assert!(svg.contains("stacks at switch-out (sched:sched_switch samples)"));
}

/// Sums folded weights by their first frame (the comm).
fn by_comm(folded: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in folded.lines() {
        let (stack, n) = l.rsplit_once(' ').unwrap();
        let comm = stack.split(';').next().unwrap().to_string();
        *m.entry(comm).or_default() += n.parse::<u64>().unwrap();
    }
    m
}

#[test]
fn filters_select_the_same_samples_as_sql() {
    let b = basic();
    let folded = ok(&perfpack([
        "flamegraph",
        &b,
        "--pid",
        "1210,1211",
        "--cpu",
        "0",
        "--cpu",
        "1",
        "--from",
        "1.5",
        "--to",
        "7s",
        "--where",
        "weight > 0",
        "--weight",
        "samples",
        "--folded",
        "-o",
        "-",
    ]));
    let start: i64 = 1_000_000_000_000; // basic's recording start, CLOCK_MONOTONIC ns
    let q = format!(
        "SELECT COUNT(*) FROM stack_sample WHERE pid IN (1210, 1211) AND cpu IN (0, 1) \
         AND ts_ns >= {} AND ts_ns < {} AND weight > 0",
        start + 1_500_000_000,
        start + 7_000_000_000
    );
    let n: u64 = ok(&perfpack(["sql", &b, "--format", "csv", "-q", &q]))
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 0);
    assert_eq!(by_comm(&folded).values().sum::<u64>(), n);
    // --reverse puts the leaves first and keeps every weight.
    let rev = ok(&perfpack([
        "flamegraph",
        &b,
        "--reverse",
        "--folded",
        "-o",
        "-",
    ]));
    let fwd = ok(&perfpack(["flamegraph", &b, "--folded", "-o", "-"]));
    let sum = |s: &str| -> u64 {
        s.lines()
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(sum(&rev), sum(&fwd));
    // Without a selection the segments are scanned directly; through SQL the result is the same.
    let via_sql = ok(&perfpack([
        "flamegraph",
        &b,
        "--where",
        "TRUE",
        "--folded",
        "-o",
        "-",
    ]));
    assert_eq!(fwd, via_sql);
    assert!(rev.lines().all(|l| !l.starts_with("postgres;")));
}

/// (col, row) → count from a heat map's cells, with its binning.
fn cells(svg: &str) -> (i64, String, i64, BTreeMap<(i64, i64), u64>) {
    let attr = |s: &str, name: &str| -> String {
        let i = s.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        s[i..i + s[i..].find('"').unwrap()].to_string()
    };
    let g = &svg[svg.find("<g id=\"cells\"").unwrap()..];
    let step = attr(g, "data-step-ns").parse().unwrap();
    let rows = attr(g, "data-rows");
    let row_ns = attr(g, "data-row-ns").parse().unwrap();
    let mut m = BTreeMap::new();
    for rect in svg.split("<rect ").filter(|r| r.contains("data-col=\"")) {
        let c = attr(rect, "data-col").parse().unwrap();
        let r = attr(rect, "data-row").parse().unwrap();
        m.insert((c, r), attr(rect, "data-count").parse().unwrap());
    }
    (step, rows, row_ns, m)
}

fn sql_cells(bundle: &str, q: &str) -> BTreeMap<(i64, i64), u64> {
    let csv = ok(&perfpack(["sql", bundle, "--format", "csv", "-q", q]));
    csv.lines()
        .skip(1)
        .map(|l| {
            let v: Vec<i64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            ((v[0], v[1]), v[2] as u64)
        })
        .collect()
}

#[test]
fn heat_map_cells_equal_a_direct_sql_count() {
    let b = basic();
    let start: i64 = 1_000_000_000_000;
    for extra in [&[][..], &["--log"][..]] {
        let mut args = vec!["heatmap", &b, "--step", "250ms", "-o", "-"];
        args.extend_from_slice(extra);
        let (step, rows, row_ns, got) = cells(&ok(&perfpack(&args)));
        assert_eq!(step, 250_000_000);
        let row = if rows == "log2" {
            "CAST(floor(log2(CAST(GREATEST(latency_ns, 1) AS DOUBLE))) AS BIGINT)".to_string()
        } else {
            format!("latency_ns / {row_ns}")
        };
        let q = format!(
            "SELECT CAST((ts_ns - {start}) / {step} AS BIGINT) AS c, {row} AS r, COUNT(*) \
             FROM block_io GROUP BY 1, 2 ORDER BY 1, 2"
        );
        let want = sql_cells(&b, &q);
        assert!(want.len() > 20);
        assert_eq!(got, want, "{rows} rows");
    }
    // FlameScope: rows are 20 ms offsets within each second.
    let (step, _, row_ns, got) = cells(&ok(&perfpack([
        "heatmap", &b, "--source", "samples", "-o", "-",
    ])));
    assert_eq!((step, row_ns), (1_000_000_000, 20_000_000));
    let q = format!(
        "SELECT CAST((ts_ns - {start}) / 1000000000 AS BIGINT), \
         CAST(((ts_ns - {start}) % 1000000000) / 20000000 AS BIGINT), COUNT(*) \
         FROM stack_sample GROUP BY 1, 2"
    );
    assert_eq!(got, sql_cells(&b, &q));
}

#[test]
fn histogram_percentiles_equal_the_block_io_view() {
    let b = basic();
    let json: Value = serde_json::from_str(&ok(&perfpack([
        "latency", &b, "--by", "disk", "--format", "json",
    ])))
    .unwrap();
    let view = ok(&perfpack([
        "sql",
        &b,
        "--format",
        "json",
        "-q",
        "SELECT disk, count, p50_ns, p90_ns, p99_ns, max_ns, min_ns FROM block_latency_percentiles WHERE disk <> 'all'",
    ]));
    let view: Vec<Value> = serde_json::from_str(&view).unwrap();
    let groups = json["groups"].as_array().unwrap();
    assert_eq!(groups.len(), view.len());
    for v in &view {
        let g = groups.iter().find(|g| g["group"] == v["disk"]).unwrap();
        for k in ["count", "p50_ns", "p90_ns", "p99_ns", "max_ns", "min_ns"] {
            assert_eq!(g[k], v[k], "{k} of {}", v["disk"]);
        }
    }
    // Buckets equal the latency_histogram view's.
    let hist = ok(&perfpack([
        "sql",
        &b,
        "--format",
        "csv",
        "-q",
        "SELECT bucket, count FROM latency_histogram WHERE source = 'runq' ORDER BY bucket",
    ]));
    let csv = ok(&perfpack([
        "latency", &b, "--source", "runq", "--format", "csv",
    ]));
    let ours: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            format!("{},{}", f[1], f[4])
        })
        .collect();
    let theirs: Vec<&str> = hist.lines().skip(1).collect();
    assert_eq!(ours, theirs);
}

pub(super) const HOSTILE: &str = "<script>alert(1)</script>";

/// A bundle whose process, symbol and block requests carry a hostile name.
pub(super) fn hostile_bundles(dir: &Path) -> (String, String) {
    let perf = dir.join("perf.txt");
    std::fs::write(
        &perf,
        format!(
            "{HOSTILE} 4242 [000] 100.000000:   10101010 cpu-clock:pppH: \n\
             \t    3333 [unknown] (/opt/<script>alert(3)<\\script>.so)\n\
             \t    1111 <img src=x onerror=alert(2)>&amp;+0x1 (/usr/bin/{HOSTILE})\n\
             \t    2222 main+0x2 (/usr/bin/{HOSTILE})\n\n\
             {HOSTILE} 4242 [000] 100.010000:   10101010 cpu-clock:pppH: \n\
             \t    2222 main+0x2 (/usr/bin/{HOSTILE})\n\n"
        ),
    )
    .unwrap();
    let trace = dir.join("trace.txt");
    let mut t = String::from("# tracer: nop\n");
    for i in 0..4 {
        let ts = 100.0 + i as f64 * 0.01;
        t.push_str(&format!(
            "{HOSTILE}-4242 (4242) [000] ..... {ts:.6}: block_rq_issue: 8,0 R 4096 () {s} + 8 be,0,4 [{HOSTILE}]\n\
             <idle>-0 (-------) [000] ..s1. {c:.6}: block_rq_complete: 8,0 R () {s} + 8 be,0,4 [0]\n",
            s = 1000 + i * 8,
            c = ts + 0.0002 * (i + 1) as f64,
        ));
    }
    std::fs::write(&trace, t).unwrap();
    let cpu = dir.join("cpu.ppk").display().to_string();
    let io = dir.join("io.ppk").display().to_string();
    ok(&perfpack([
        "import",
        "perf-script",
        &perf.display().to_string(),
        "-o",
        &cpu,
    ]));
    ok(&perfpack([
        "import",
        "ftrace-text",
        &trace.display().to_string(),
        "-o",
        &io,
    ]));
    (cpu, io)
}

fn assert_escaped_svg(svg: &str) {
    // (inferno's flame graphs carry their own `<script type="text/ecmascript">`.)
    assert!(!svg.contains(HOSTILE), "raw <script> in SVG");
    assert!(!svg.contains("<img"), "raw <img> in SVG");
    assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn hostile_names_render_as_text_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let (cpu, io) = hostile_bundles(dir.path());
    // Flame graph: SVG escaped; folded keeps the name as data.
    assert_escaped_svg(&ok(&perfpack(["flamegraph", &cpu, "-o", "-"])));
    let folded = ok(&perfpack(["flamegraph", &cpu, "--folded", "-o", "-"]));
    assert!(folded.starts_with(&format!("{HOSTILE};main")), "{folded}");
    // A title and a selection given on the command line are escaped too.
    let svg = ok(&perfpack([
        "flamegraph",
        &cpu,
        "--comm",
        HOSTILE,
        "--title",
        HOSTILE,
        "-o",
        "-",
    ]));
    assert_escaped_svg(&svg);
    let svg = ok(&perfpack([
        "heatmap", &io, "--comm", HOSTILE, "--title", HOSTILE, "-o", "-",
    ]));
    assert_escaped_svg(&svg);
    // Latency by comm: text shows it as text, JSON and CSV round-trip it, SVG escapes it.
    let text = ok(&perfpack(["latency", &io, "--by", "comm"]));
    assert!(text.contains(&format!("comm = {HOSTILE}")), "{text}");
    let json: Value = serde_json::from_str(&ok(&perfpack([
        "latency", &io, "--by", "comm", "--format", "json",
    ])))
    .unwrap();
    assert_eq!(json["groups"][0]["group"], HOSTILE);
    assert_eq!(json["groups"][0]["count"], 4);
    let csv = ok(&perfpack([
        "latency", &io, "--by", "comm", "--format", "csv",
    ]));
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("{HOSTILE},"))
    );
    let svg_path = dir.path().join("h.svg");
    ok(&perfpack([
        "latency",
        &io,
        "--by",
        "comm",
        "--svg",
        &svg_path.display().to_string(),
    ]));
    assert_escaped_svg(&std::fs::read_to_string(svg_path).unwrap());
}

#[test]
fn bad_picture_requests_fail_in_one_line_and_write_nothing() {
    let b = basic();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.svg");
    let o = out.display().to_string();
    let cases: &[(&[&str], &str)] = &[
        (
            &["flamegraph", &b, "--where", "no_such_column = 1", "-o", &o],
            "--where",
        ),
        (
            &["flamegraph", &b, "--event", "cycles", "-o", &o],
            "no stack samples of event cycles",
        ),
        (
            &["flamegraph", &b, "--comm", "nobody", "-o", &o],
            "no stack samples match",
        ),
        (
            &["flamegraph", &b, "--from", "5", "--to", "2", "-o", &o],
            "--to is not after --from",
        ),
        (
            &["heatmap", &b, "--sql", "SELECT 1 AS x", "-o", &o],
            "no ts_ns column",
        ),
        (
            &["heatmap", &b, "--source", "samples", "--log", "-o", &o],
            "--log",
        ),
        (&["latency", &b, "--by", "nonsense"], "--by nonsense"),
    ];
    // Option values clap rejects get clap's usage message, and nothing runs.
    let bad_time = perfpack(["flamegraph", &b, "--from", "yesterday", "-o", &o]);
    assert!(!bad_time.status.success());
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("\"yesterday\" is not a time"));
    for (args, want) in cases {
        let err = fails(&perfpack(*args));
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{args:?} left a file behind"
        );
    }
}

/// Total weight of a folded output.
fn total(folded: &str) -> f64 {
    folded
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

#[test]
fn turbo_weights_normalize_cpu_time_to_a_reference_frequency() {
    // before and after did the same work at 2500 and 3000 busy MHz.
    let busy = |name: &str, weight: &str| -> f64 {
        let b = fixture(name).display().to_string();
        total(&ok(&perfpack([
            "flamegraph",
            &b,
            "--weight",
            weight,
            "--where",
            "comm NOT LIKE 'swapper%'",
            "--folded",
            "-o",
            "-",
        ])))
    };
    let raw = busy("before", "ns") / busy("after", "ns");
    assert!((raw - 1.2).abs() < 0.03, "raw before/after {raw}");
    let normalized = busy("before", "turbo") / busy("after", "turbo");
    assert!((normalized - 1.0).abs() < 0.03, "normalized {normalized}");
    // At 2500 MHz (base), before's time is unchanged and after's grows by 3000/2500.
    assert!((busy("before", "turbo") / busy("before", "ns") - 1.0).abs() < 1e-6);
    let svg = ok(&perfpack([
        "flamegraph",
        &fixture("after").display().to_string(),
        "--weight",
        "turbo",
        "--ref-mhz",
        "3000",
        "-o",
        "-",
    ]));
    assert!(svg.contains("normalized to 3000 MHz"), "subtitle");
    assert!(svg.contains("msr-dev"));
    // No frequency data: refused with the reason, never assumed.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("cpu.ppk").display().to_string();
    let text = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/import/perf-script-cpu-clock.txt")
        .display()
        .to_string();
    ok(&perfpack(["import", "perf-script", &text, "-o", &bundle]));
    let err = fails(&perfpack([
        "flamegraph",
        &bundle,
        "--weight",
        "turbo",
        "-o",
        "-",
    ]));
    assert!(err.contains("no busy-MHz figures"), "{err}");
}

#[test]
fn a_packed_bundle_draws_the_same_pictures_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("basic.ppk").display().to_string();
    ok(&perfpack([
        "pack",
        &fixture("basic").display().to_string(),
        "-o",
        &packed,
    ]));
    for args in [
        &["flamegraph", "--folded", "-o", "-"][..],
        &["heatmap", "--source", "runq", "-o", "-"][..],
    ] {
        let run = |b: &str| {
            let mut a = vec![args[0], b];
            a.extend_from_slice(&args[1..]);
            ok(&perfpack(a))
        };
        assert_eq!(run(&packed), run(&basic()), "{args:?}");
    }
}

#[test]
fn perfetto_json_export_has_every_slice_request_and_sample() {
    let b = basic();
    let text = ok(&perfpack([
        "export",
        &b,
        "--format",
        "perfetto-json",
        "-o",
        "-",
    ]));
    let trace: Value = serde_json::from_str(&text).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let events_of = |ph: &str, cat: &str| {
        events
            .iter()
            .filter(|e| e["ph"] == ph && e["cat"].as_str().unwrap_or("") == cat)
            .count()
    };
    let sql = |q: &str| count(&b, q) as usize;
    assert_eq!(
        events_of("X", "sched"),
        sql("SELECT COUNT(*) FROM thread_state WHERE state = 'running'")
    );
    assert_eq!(
        events_of("i", "sample"),
        sql("SELECT COUNT(*) FROM stack_sample")
    );
    let requests = sql("SELECT COUNT(*) FROM block_io");
    assert_eq!(
        (events_of("b", "block"), events_of("e", "block")),
        (requests, requests)
    );
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "M" && e["args"]["name"] == "disk nvme0n1")
    );
    // Deterministic.
    assert_eq!(
        text,
        ok(&perfpack([
            "export",
            &b,
            "--format",
            "perfetto-json",
            "-o",
            "-"
        ]))
    );
    // Hostile names stay data.
    let dir = tempfile::tempdir().unwrap();
    let (cpu, _) = hostile_bundles(dir.path());
    let trace: Value = serde_json::from_str(&ok(&perfpack([
        "export",
        &cpu,
        "--format",
        "perfetto-json",
    ])))
    .unwrap();
    assert!(
        trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["args"]["name"] == HOSTILE)
    );
}

#[test]
fn pprof_export_parses_and_counts_every_sample() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    if Command::new("protoc").arg("--version").output().is_err() {
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_TOOLS",
            "`protoc` is not installed (apt-get install protobuf-compiler); .ci/run installs it",
        );
        return;
    }
    let b = basic();
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("cpu.pb.gz");
    let gz_arg = gz.display().to_string();
    ok(&perfpack([
        "export", &b, "--format", "pprof", "-o", &gz_arg,
    ]));
    let raw = Command::new("gunzip")
        .args(["-c", &gz_arg])
        .output()
        .unwrap();
    assert!(raw.status.success(), "not gzip");
    // protoc decodes any protobuf message without its schema.
    let mut protoc = Command::new("protoc")
        .arg("--decode_raw")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    protoc.stdin.take().unwrap().write_all(&raw.stdout).unwrap();
    let decoded = protoc.wait_with_output().unwrap();
    assert!(decoded.status.success(), "protoc could not decode it");
    let text = String::from_utf8(decoded.stdout).unwrap();
    // Top-level field 2 is a sample: its first `2:` value is the sample count, the second
    // the summed period.
    let (mut samples, mut period, mut blocks) = (0u64, 0u64, 0);
    let mut in_sample = false;
    let mut values = Vec::new();
    for line in text.lines() {
        if line == "2 {" {
            in_sample = true;
            values.clear();
        } else if in_sample && line == "}" {
            in_sample = false;
            blocks += 1;
            samples += values[0];
            period += values[1];
        } else if in_sample && let Some(v) = line.strip_prefix("  2: ") {
            values.push(v.parse::<u64>().unwrap());
        }
    }
    let sql = |q: &str| count(&b, q);
    assert_eq!(samples, sql("SELECT COUNT(*) FROM stack_sample"));
    assert_eq!(period, sql("SELECT SUM(weight) FROM stack_sample"));
    let folded = ok(&perfpack(["flamegraph", &b, "--folded", "-o", "-"]));
    assert_eq!(
        blocks,
        folded.lines().count(),
        "one pprof sample per folded line"
    );
    assert!(
        text.contains("\"ExecScan\""),
        "function names in the string table"
    );
}

/// (row label, column) → value of a utilization heat map's cells.
fn util_cells(svg: &str) -> BTreeMap<(String, i64), f64> {
    let attr = |s: &str, name: &str| -> String {
        let i = s.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        s[i..i + s[i..].find('"').unwrap()].to_string()
    };
    svg.split("<rect ")
        .filter(|r| r.contains("data-value=\""))
        .map(|r| {
            let title = &r[r.find("<title>").unwrap() + 7..];
            let label = title[..title.find(" · ").unwrap()].to_string();
            (
                (label, attr(r, "data-col").parse().unwrap()),
                attr(r, "data-value").parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn utilization_heat_maps_equal_the_counters_and_the_samples() {
    let b = basic();
    let info: Value =
        serde_json::from_str(&ok(&perfpack(["info", &b, "--format", "json"]))).unwrap();
    let start = info[0]["manifest"]["clocks"]["start"]["monotonic_ns"]
        .as_i64()
        .unwrap();
    // CPUs: each cell is the busy % of the counter interval whose middle falls in its second.
    let got = util_cells(&ok(&perfpack([
        "heatmap", &b, "--source", "cpu", "-o", "-",
    ])));
    let csv = ok(&perfpack([
        "sql",
        &b,
        "--format",
        "csv",
        "-q",
        &format!(
            "SELECT cpu, CAST(FLOOR((ts_ns - dur_ns / 2 - {start}) / 1e9) AS BIGINT) AS col, busy_pct \
             FROM cpu_utilization WHERE cpu <> 'all' AND busy_pct IS NOT NULL"
        ),
    ]));
    let want: BTreeMap<(String, i64), f64> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                (f[0].to_string(), f[1].parse().unwrap()),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got.len() >= 36, "{}", got.len());
    for (k, v) in &want {
        assert!((got[k] - v).abs() < 0.006, "{k:?}: {} vs {v}", got[k]);
    }
    // Processes: % of one CPU = sampled ns in the second / 1 s; the top 3 by CPU time.
    let got = util_cells(&ok(&perfpack([
        "heatmap", &b, "--source", "process", "--top", "3", "-o", "-",
    ])));
    let csv = ok(&perfpack([
        "sql",
        &b,
        "--format",
        "csv",
        "-q",
        &format!(
            "WITH t AS (SELECT pid FROM stack_sample WHERE pid <> 0 GROUP BY pid ORDER BY SUM(weight) DESC, pid LIMIT 3) \
             SELECT s.pid, CAST(FLOOR((ts_ns - {start}) / 1e9) AS BIGINT) AS col, 100.0 * SUM(weight) / 1e9 AS pct \
             FROM stack_sample s JOIN t ON s.pid = t.pid GROUP BY s.pid, col"
        ),
    ]));
    let mut n = 0;
    for l in csv.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let (pid, col, pct): (&str, i64, f64) =
            (f[0], f[1].parse().unwrap(), f[2].parse().unwrap());
        let (_, v) = got
            .iter()
            .find(|((label, c), _)| *c == col && label.split(' ').next() == Some(pid))
            .unwrap_or_else(|| panic!("no cell for pid {pid} at {col}"));
        assert!((v - pct).abs() < 0.006, "pid {pid} col {col}: {v} vs {pct}");
        n += 1;
    }
    assert_eq!(n, got.len());
    let rows: std::collections::BTreeSet<&str> = got.keys().map(|(l, _)| l.as_str()).collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
}

/// Each frame's fill colour, by its name (`<title>NAME (…)</title><rect … fill="…"`).
fn fills(svg: &str) -> BTreeMap<String, String> {
    svg.split("<title>")
        .skip(1)
        .filter_map(|part| {
            let name = part.split(" (").next()?;
            let fill = part.split("fill=\"").nth(1)?.split('"').next()?;
            Some((name.to_string(), fill.to_string()))
        })
        .collect()
}

#[test]
fn colors_paint_each_frame_as_inferno_paints_the_exported_folded_stacks() {
    // What a FlameGraph user does: `perfpack flamegraph --folded | inferno-flamegraph
    // --colors mem --deterministic` (the inferno library here; its CLI gives the same fills).
    let b = basic();
    let folded = ok(&perfpack(["flamegraph", b.as_str(), "--folded", "-o", "-"]));
    for palette in ["mem", "io", "hot", "blue"] {
        let ours = ok(&perfpack([
            "flamegraph",
            b.as_str(),
            "--colors",
            palette,
            "-o",
            "-",
        ]));
        let mut o = inferno::flamegraph::Options::default();
        o.colors = palette.parse().unwrap();
        o.deterministic = true;
        let mut theirs = Vec::new();
        inferno::flamegraph::from_lines(&mut o, folded.lines(), &mut theirs).unwrap();
        let (ours, theirs) = (fills(&ours), fills(&String::from_utf8(theirs).unwrap()));
        assert!(ours.len() > 50, "{palette}: {} frames", ours.len());
        assert_eq!(ours, theirs, "{palette}");
    }
    // Not a palette: one line naming it, nothing written.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.svg");
    let err = fails(&perfpack([
        "flamegraph",
        b.as_str(),
        "--colors",
        "mauve",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(err.contains("--colors \"mauve\": not a palette"), "{err}");
    assert!(!out.exists());
}
