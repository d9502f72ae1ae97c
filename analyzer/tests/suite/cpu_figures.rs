//! CPU figures count CPU samples only. A generated bundle holds cpu-clock samples and a
//! `sched:sched_switch` switch-out sample (weight 1) at every blocked switch, as the recorder
//! writes them, plus a process that only blocks; an imported perf script adds a third event
//! (page faults). Every "top" view and the report's table must equal figures computed here
//! from the cpu-clock rows alone, read with the bundle reader (no SQL).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int32Type, Int64Type};

use super::{ok, perfpack};

/// (samples, summed weight) per key of the rows of `event`, read from the Parquet files.
fn truth_by<K: Ord>(
    bundle: &Path,
    event: &str,
    key: impl Fn(i32, i32) -> K,
) -> BTreeMap<K, (u64, i64)> {
    let b = perfpack_schema::Bundle::open(bundle).unwrap();
    let mut out = BTreeMap::new();
    for batch in b.read_table(perfpack_schema::tables::STACK_SAMPLE).unwrap() {
        let col = |n: &str| batch.column_by_name(n).unwrap().clone();
        let (pid, tid, ev, weight) = (col("pid"), col("tid"), col("event"), col("weight"));
        let (pid, tid) = (
            pid.as_primitive::<Int32Type>(),
            tid.as_primitive::<Int32Type>(),
        );
        let (ev, weight) = (ev.as_string::<i32>(), weight.as_primitive::<Int64Type>());
        for i in 0..batch.num_rows() {
            if ev.value(i) == event {
                let e = out.entry(key(pid.value(i), tid.value(i))).or_insert((0, 0));
                e.0 += 1;
                e.1 += weight.value(i);
            }
        }
    }
    out
}

/// Rows of a library view as CSV fields, header dropped.
fn view(bundle: &Path, name: &str) -> Vec<Vec<String>> {
    let out = ok(&perfpack([
        "sql".as_ref(),
        bundle.as_os_str(),
        "--format".as_ref(),
        "csv".as_ref(),
        name.as_ref(),
    ]));
    out.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn switches_bundle(dir: &Path) -> PathBuf {
    let mut sc = perfpack_testgen::Scenario::basic();
    sc.name = "switches".into();
    sc.switch_stacks = true;
    let out = dir.join("switches.ppk");
    perfpack_testgen::generate(&sc, &out).unwrap();
    out
}

#[test]
fn top_views_and_the_report_count_cpu_clock_samples_only() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = switches_bundle(dir.path());
    let cpu = truth_by(&bundle, "cpu-clock", |pid, _| pid);
    let switches = truth_by(&bundle, "sched:sched_switch", |pid, _| pid);
    let (sleeper, _) = perfpack_testgen::SLEEPER;
    // The premise: switch-outs of the same processes, and one that only blocks.
    assert!(switches.len() > 3 && switches.contains_key(&sleeper));
    assert!(!cpu.contains_key(&sleeper));
    let total: u64 = cpu.values().map(|v| v.0).sum();

    // top_processes: bundle, host, pid, comm, event, samples, pct, weight.
    let rows = view(&bundle, "top_processes");
    assert_eq!(rows.len(), cpu.len(), "{rows:?}");
    for r in &rows {
        let pid: i32 = r[2].parse().unwrap();
        let (n, w) = cpu[&pid];
        assert_eq!(r[4], "cpu-clock", "{r:?}");
        assert_eq!(r[5].parse::<u64>().unwrap(), n, "{r:?}");
        assert_eq!(r[7].parse::<i64>().unwrap(), w, "{r:?}");
        let pct: f64 = r[6].parse().unwrap();
        assert!(
            (pct - 100.0 * n as f64 / total as f64).abs() < 1e-6,
            "{r:?}"
        );
    }

    // top_threads: bundle, host, pid, tid, comm, event, samples, pct, weight.
    let by_tid = truth_by(&bundle, "cpu-clock", |pid, tid| (pid, tid));
    let rows = view(&bundle, "top_threads");
    assert_eq!(rows.len(), by_tid.len(), "{rows:?}");
    for r in &rows {
        let key = (r[2].parse().unwrap(), r[3].parse().unwrap());
        assert_eq!(r[6].parse::<u64>().unwrap(), by_tid[&key].0, "{r:?}");
        assert_eq!(r[8].parse::<i64>().unwrap(), by_tid[&key].1, "{r:?}");
    }

    // The report's Top processes: the 15 largest, the same counts, no sleeper.
    let html = dir.path().join("report.html");
    ok(&perfpack([
        "report".as_ref(),
        bundle.as_os_str(),
        "-o".as_ref(),
        html.as_os_str(),
    ]));
    let html = std::fs::read_to_string(&html).unwrap();
    let top = html
        .split("<h3>Top processes</h3>")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("a Top processes table");
    let cells = |row: &str| -> Vec<String> {
        row.split("<td>")
            .skip(1)
            .map(|c| c.split("</td>").next().unwrap().to_string())
            .collect()
    };
    let shown: Vec<Vec<String>> = top.split("<tr>").skip(2).map(cells).collect();
    assert_eq!(shown.len(), cpu.len().min(15), "{top}");
    for r in &shown {
        // pid, comm, samples, %, weight (one bundle: no bundle column).
        let pid: i32 = r[0].parse().unwrap();
        assert_eq!(
            r[2].replace(',', "").parse::<u64>().unwrap(),
            cpu[&pid].0,
            "{r:?}"
        );
    }
    assert!(!top.contains("sleeper"), "{top}");
}

/// A perf script of two events: cpu-clock samples of `app` and page faults of `app` and of
/// `faulter`, which never had a CPU sample.
const THREE_EVENTS: &str = "\
app 100/100 [000] 1.000000:    1000000 cpu-clock:
\t    1111 leaf (/usr/bin/app)
\t    2222 main (/usr/bin/app)

app 100/100 [000] 1.001000:    1000000 cpu-clock:
\t    1111 leaf (/usr/bin/app)
\t    2222 main (/usr/bin/app)

app 100/100 [000] 1.001500:          1 page-faults:
\t    3333 memset (/usr/lib/libc.so.6)
\t    2222 main (/usr/bin/app)

faulter 200/200 [001] 1.002000:          1 page-faults:
\t    3333 memset (/usr/lib/libc.so.6)
\t    4444 main (/usr/bin/faulter)

faulter 200/200 [001] 1.003000:          1 page-faults:
\t    3333 memset (/usr/lib/libc.so.6)
\t    4444 main (/usr/bin/faulter)

";

#[test]
fn a_third_event_is_not_cpu_time_either() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("perf.txt");
    std::fs::write(&text, THREE_EVENTS).unwrap();
    let bundle = dir.path().join("three.ppk");
    ok(&perfpack([
        "import".as_ref(),
        "perf-script".as_ref(),
        text.as_os_str(),
        "-o".as_ref(),
        bundle.as_os_str(),
    ]));
    // Counted by hand from the text above: app has 2 cpu-clock samples of 1 ms each.
    assert_eq!(truth_by(&bundle, "page-faults", |pid, _| pid).len(), 2);
    let rows = view(&bundle, "top_processes");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            rows[0][2].as_str(),
            rows[0][5].as_str(),
            rows[0][7].as_str()
        ),
        ("100", "2", "2000000"),
        "{rows:?}"
    );
    // The CPU flame graph is of cpu-clock, not of the page faults.
    let folded = ok(&perfpack([
        "flamegraph".as_ref(),
        "--folded".as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
        bundle.as_os_str(),
    ]));
    assert_eq!(folded.trim(), "app;main;leaf 2000000", "{folded}");
    // The report draws the page faults in a section of their own, counted as the text has them
    // (three samples of weight 1).
    let page = dir.path().join("three.html");
    ok(&perfpack([
        "report".as_ref(),
        bundle.as_os_str(),
        "-o".as_ref(),
        page.as_os_str(),
    ]));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("<h2>Page Fault Flame Graph</h2>"),
        "no page-fault section"
    );
    assert!(html.contains("3 page-faults samples"), "its count");
    assert!(
        !html.contains("<h2>sched:sched_switch"),
        "switch-outs are the off-CPU section's"
    );

    // Page faults alone: no CPU event, so no CPU figures; a flame graph of the faults on
    // request.
    let faults = dir.path().join("faults.txt");
    let only: String = THREE_EVENTS
        .split("\n\n")
        .filter(|s| s.contains("page-faults"))
        .map(|s| format!("{s}\n\n"))
        .collect();
    std::fs::write(&faults, only).unwrap();
    let bundle = dir.path().join("faults.ppk");
    ok(&perfpack([
        "import".as_ref(),
        "perf-script".as_ref(),
        faults.as_os_str(),
        "-o".as_ref(),
        bundle.as_os_str(),
    ]));
    assert!(view(&bundle, "top_processes").is_empty());
    assert!(view(&bundle, "cpu_event").is_empty());
    let folded = ok(&perfpack([
        "flamegraph".as_ref(),
        "--folded".as_ref(),
        "--event".as_ref(),
        "page-faults".as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
        bundle.as_os_str(),
    ]));
    assert!(folded.contains("faulter;main;memset 2"), "{folded}");
    // Its picture says what it is: page faults, counted as such.
    let svg = ok(&perfpack([
        "flamegraph".as_ref(),
        "--event".as_ref(),
        "page-faults".as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
        bundle.as_os_str(),
    ]));
    assert!(svg.contains(">Page Fault Flame Graph<"), "title");
    assert!(svg.contains("3 page-faults samples"), "subtitle");
}

#[test]
fn no_idle_leaves_out_pid_0_and_says_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = switches_bundle(dir.path());
    // Truth from the Parquet rows: cpu-clock samples of pid 0 and of everything.
    let by_pid = truth_by(&bundle, "cpu-clock", |pid, _| pid);
    let all: u64 = by_pid.values().map(|v| v.0).sum();
    let idle = by_pid.get(&0).map_or(0, |v| v.0);
    let busy_ns: i64 = by_pid
        .iter()
        .filter(|(pid, _)| **pid != 0)
        .map(|(_, v)| v.1)
        .sum();
    assert!(
        idle > 0 && idle < all,
        "the fixture has idle and busy samples"
    );
    let b = bundle.as_os_str();
    let folded = ok(&perfpack([
        "flamegraph".as_ref(),
        b,
        "--no-idle".as_ref(),
        "--folded".as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
    ]));
    let total: i64 = folded
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, busy_ns, "{folded}");
    let svg = ok(&perfpack([
        "flamegraph".as_ref(),
        b,
        "--no-idle".as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
    ]));
    let said = format!(
        "idle (pid 0): {:.1}% of samples, hidden",
        100.0 * idle as f64 / all as f64
    );
    assert!(svg.contains(&said), "no {said:?}");
    let busy = (all - idle).to_string();
    let mut grouped = String::new();
    for (i, c) in busy.chars().enumerate() {
        if i > 0 && (busy.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    assert!(
        svg.contains(&format!("{grouped} cpu-clock samples")),
        "{grouped}"
    );
    // Off-CPU has no idle to leave out: one line, non-zero.
    let out = perfpack([
        "flamegraph".as_ref(),
        b,
        "--kind".as_ref(),
        "offcpu".as_ref(),
        "--no-idle".as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
    ]);
    let err = super::fails(&out);
    assert!(err.contains("--no-idle is for CPU flame graphs"), "{err}");
}
