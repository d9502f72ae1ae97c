//! `perfpack sql` and the queries/ library on the committed fixtures: a diff test per view,
//! the block and run-queue views against the generator's truth, multi-bundle and packed
//! bundles, and the errors users get.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{fails, fixture, golden, ok, perfpack};

fn csv(bundles: &[&str], sql: &str) -> String {
    let mut args: Vec<std::ffi::OsString> = vec!["sql".into()];
    for b in bundles {
        args.push(fixture(b).into());
    }
    args.extend(["--format".into(), "csv".into(), "-q".into(), sql.into()]);
    ok(&perfpack(args))
}

fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn truth() -> Value {
    let path = fixture("basic").with_extension("truth.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(bucket, count)` rows of a query as a map.
fn bucket_counts(text: &str) -> BTreeMap<String, u64> {
    rows(text)
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect()
}

/// The log2 buckets of one of the truth's latency distributions.
fn truth_buckets(latency: &Value) -> BTreeMap<String, u64> {
    latency["log2_buckets"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

fn library() -> Vec<Value> {
    let out = ok(&perfpack(["queries", "--format", "json"]));
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Rounds floating-point fields to 6 decimals: parallel aggregation may add in another order
/// and move the last bits.
fn normalize(csv: &str) -> String {
    let mut lines: Vec<String> = csv
        .lines()
        .map(|l| {
            l.split(',')
                .map(|f| match f.parse::<f64>() {
                    Ok(x) if f.contains(['.', 'e']) => format!("{x:.6}"),
                    _ => f.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    // Rows that tie on a view's order may come in any order from parallel partitions.
    let header = lines.remove(0);
    lines.sort();
    // Long views keep their first rows readable in the golden file; a hash of every row
    // still checks the rest.
    let n = lines.len();
    let hash = lines.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, l| {
        l.bytes()
            .chain([b'\n'])
            .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    });
    lines.truncate(GOLDEN_ROWS);
    lines.insert(0, header);
    lines.push(format!("# {n} rows, fnv1a64 of all rows {hash:016x}"));
    lines.join("\n") + "\n"
}

/// Rows of each view written out in its golden file.
const GOLDEN_ROWS: usize = 40;

#[test]
fn every_view_matches_its_expected_csv_and_documents_its_columns() {
    let views = library();
    assert!(views.len() >= 20, "{views:?}");
    for v in &views {
        let name = v["name"].as_str().unwrap();
        let out = ok(&perfpack([
            "sql".as_ref(),
            fixture("basic").as_os_str(),
            name.as_ref(),
            "--format".as_ref(),
            "csv".as_ref(),
        ]));
        let header: Vec<&str> = out.lines().next().unwrap().split(',').collect();
        let documented: Vec<&str> = v["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            header, documented,
            "columns of view {name} vs its doc block"
        );
        // The fixture predates cgroups: the view of their spans alone has no rows there (its
        // rows are checked on a live recording, `suite::cgroups`).
        assert!(
            out.lines().count() > 1 || name == "task_cgroup_span",
            "view {name} is empty on the basic fixture"
        );
        golden(&format!("views/{name}.csv"), &normalize(&out));
    }
}

#[test]
fn block_io_reproduces_the_generated_latency_distribution() {
    let truth = truth();
    let hist = csv(
        &["basic"],
        "SELECT bucket, count FROM iolatency ORDER BY bucket",
    );
    assert_eq!(bucket_counts(&hist), truth_buckets(&truth["block"]));
    let p = csv(
        &["basic"],
        "SELECT count, p50_ns, p90_ns, p99_ns, max_ns FROM block_latency_percentiles WHERE disk = 'all'",
    );
    let r = &rows(&p)[0];
    for (i, key) in ["count", "p50_ns", "p90_ns", "p99_ns", "max_ns"]
        .iter()
        .enumerate()
    {
        assert_eq!(r[i], truth["block"][key].to_string(), "{key}");
    }
    let nvme = csv(
        &["basic"],
        "SELECT p50_ns, p99_ns FROM block_latency_percentiles WHERE disk = 'nvme0n1'",
    );
    let r = &rows(&nvme)[0];
    assert_eq!(
        r[0],
        truth["block_by_disk"]["nvme0n1"]["p50_ns"].to_string()
    );
    assert_eq!(
        r[1],
        truth["block_by_disk"]["nvme0n1"]["p99_ns"].to_string()
    );
}

#[test]
fn runqlat_and_syscount_agree_with_the_generator() {
    let truth = truth();
    let hist = csv(
        &["basic"],
        "SELECT CAST(floor(log2(CAST(latency_ns AS DOUBLE))) AS INT) AS b, COUNT(*) FROM runqueue_latency \
         WHERE reason = 'wakeup' GROUP BY b ORDER BY b",
    );
    assert_eq!(bucket_counts(&hist), truth_buckets(&truth["runq"]));
    let counts = csv(&["basic"], "SELECT name, count FROM syscount ORDER BY name");
    for r in rows(&counts) {
        assert_eq!(
            r[1],
            truth["syscalls_by_name"][&r[0]].to_string(),
            "{}",
            r[0]
        );
    }
}

#[test]
fn cpu_frequency_gives_the_generated_busy_mhz_and_ipc() {
    let out = csv(
        &["basic"],
        "SELECT MIN(bzy_mhz), MAX(bzy_mhz), MIN(tsc_mhz), MAX(tsc_mhz), MIN(ipc), MAX(ipc), COUNT(*) FROM cpu_frequency",
    );
    let r: Vec<f64> = rows(&out)[0].iter().map(|f| f.parse().unwrap()).collect();
    assert!(
        (r[0] - 3100.0).abs() < 0.01 && (r[1] - 3100.0).abs() < 0.01,
        "{r:?}"
    );
    assert!(
        (r[2] - 2500.0).abs() < 0.01 && (r[3] - 2500.0).abs() < 0.01,
        "{r:?}"
    );
    assert!(
        (r[4] - 1.6).abs() < 0.001 && (r[5] - 1.6).abs() < 0.001,
        "{r:?}"
    );
    assert_eq!(r[6], 40.0, "4 CPUs × 10 intervals");
}

#[test]
fn several_bundles_form_one_dataset_with_a_bundle_column() {
    let out = csv(
        &["before", "after", "basic"],
        "SELECT bundle, host, COUNT(*) FROM stack_sample GROUP BY bundle, host ORDER BY bundle",
    );
    assert_eq!(
        out,
        "bundle,host,count(*)\nafter,fixture-after,3980\nbasic,fixture-basic,3960\nbefore,fixture-before,3980\n"
    );
    // Views join within a bundle, never across.
    let io = csv(
        &["before", "after"],
        "SELECT bundle, COUNT(*) FROM block_io GROUP BY bundle ORDER BY bundle",
    );
    let single = csv(&["before"], "SELECT COUNT(*) FROM block_io");
    assert_eq!(rows(&io)[1][1], rows(&single)[0][0]);
}

#[test]
fn packed_bundles_are_queried_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("basic.ppk");
    ok(&perfpack([
        "pack".as_ref(),
        fixture("basic").as_os_str(),
        "-o".as_ref(),
        packed.as_os_str(),
    ]));
    let q = "SELECT COUNT(*), SUM(latency_ns) FROM block_io WHERE ts_ns > 1005000000000";
    let from_packed = ok(&perfpack([
        "sql".as_ref(),
        packed.as_os_str(),
        "-q".as_ref(),
        q.as_ref(),
    ]));
    let from_dir = ok(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "-q".as_ref(),
        q.as_ref(),
    ]));
    assert_eq!(from_packed, from_dir);
    // Nothing was extracted next to the packed file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn output_formats_json_and_parquet() {
    let out = ok(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
        "-q".as_ref(),
        "SELECT name, count FROM syscount ORDER BY name LIMIT 2".as_ref(),
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "epoll_wait");
    assert_eq!(v[0]["count"], 582);
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("io.parquet");
    ok(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "block_io".as_ref(),
        "--format".as_ref(),
        "parquet".as_ref(),
        "-o".as_ref(),
        pq.as_os_str(),
    ]));
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&pq).unwrap())
            .unwrap();
    use parquet::file::reader::FileReader as _;
    assert_eq!(reader.metadata().file_metadata().num_rows(), 1999);
    let err = fails(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "block_io".as_ref(),
        "--format".as_ref(),
        "parquet".as_ref(),
    ]));
    assert!(err.contains("give -o"), "{err}");
}

#[test]
fn sql_errors_are_one_line_and_name_the_known_tables() {
    let err = fails(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "-q".as_ref(),
        "SELECT * FROM blockio".as_ref(),
    ]));
    assert!(
        err.contains("blockio") && err.contains("block_io") && err.contains("stack_sample"),
        "{err}"
    );
    let err = fails(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "-q".as_ref(),
        "SELEC 1".as_ref(),
    ]));
    assert!(
        err.starts_with("perfpack: ") && err.contains("SELEC"),
        "{err}"
    );
    let err = fails(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "-q".as_ref(),
        "SELECT no_such_col FROM block_rq".as_ref(),
    ]));
    assert!(err.contains("no_such_col"), "{err}");
}

#[test]
fn statements_that_touch_paths_need_allow_ddl() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.csv");
    let copy = format!("COPY (SELECT 1 AS a) TO '{}'", target.display());
    let err = fails(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "-q".as_ref(),
        copy.as_ref(),
    ]));
    assert!(err.contains("--allow-ddl"), "{err}");
    assert!(!target.exists());
    let create = "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'";
    let err = fails(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "-q".as_ref(),
        create.as_ref(),
    ]));
    assert!(err.contains("--allow-ddl"), "{err}");
    ok(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "--allow-ddl".as_ref(),
        "-q".as_ref(),
        copy.as_ref(),
    ]));
    assert!(target.exists());
}

#[test]
fn writes_nested_in_explain_or_other_statements_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("leak.csv");
    let t = target.display();
    for sql in [
        format!("EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{t}'"),
        format!("EXPLAIN COPY (SELECT 1 AS x) TO '{t}'"),
        format!("EXPLAIN VERBOSE COPY (SELECT 1 AS x) TO '{t}'"),
        format!("EXPLAIN ANALYZE VERBOSE COPY (SELECT 1 AS x) TO '{t}' STORED AS CSV"),
        format!("SELECT 1; COPY (SELECT 1 AS x) TO '{t}'"),
        format!(
            "SET datafusion.execution.batch_size = 8; EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{t}'"
        ),
        format!("EXPLAIN ANALYZE CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '{t}'"),
        "EXPLAIN ANALYZE CREATE VIEW v AS SELECT 1".to_string(),
        "EXPLAIN ANALYZE CREATE TABLE m AS SELECT 1 AS x".to_string(),
        "EXPLAIN ANALYZE INSERT INTO stack_sample SELECT * FROM stack_sample".to_string(),
        "PREPARE p AS SELECT 1".to_string(),
    ] {
        let err = fails(&perfpack([
            "sql".as_ref(),
            fixture("basic").as_os_str(),
            "-q".as_ref(),
            sql.as_ref(),
        ]));
        assert!(err.contains("--allow-ddl"), "{sql}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{sql}: {err}");
        assert!(!target.exists(), "{sql} wrote {t}");
    }
    // Reading stays allowed in every form.
    for sql in [
        "EXPLAIN SELECT COUNT(*) FROM block_rq",
        "EXPLAIN ANALYZE SELECT COUNT(*) FROM block_rq",
        "SET datafusion.execution.batch_size = 1024; SELECT COUNT(*) FROM block_rq",
    ] {
        ok(&perfpack([
            "sql".as_ref(),
            fixture("basic").as_os_str(),
            "-q".as_ref(),
            sql.as_ref(),
        ]));
    }
}

#[test]
fn statements_from_a_file_run_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("q.sql");
    std::fs::write(
        &f,
        "SET datafusion.execution.batch_size = 1024;\nSELECT COUNT(*) AS n FROM sched_process;\n",
    )
    .unwrap();
    let out = ok(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "-f".as_ref(),
        f.as_os_str(),
        "--format".as_ref(),
        "csv".as_ref(),
    ]));
    assert_eq!(out, "n\n3\n");
    let err = fails(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "-f".as_ref(),
        dir.path().join("missing.sql").as_os_str(),
    ]));
    assert!(err.contains("missing.sql"), "{err}");
}

#[test]
fn time_filters_skip_segments_by_their_statistics() {
    // basic has two 5 s segments; a filter on the first 2 s reads one file.
    let plan = csv(
        &["basic"],
        "EXPLAIN ANALYZE SELECT COUNT(*) FROM sched_switch WHERE ts_ns < 1002000000000",
    );
    assert!(
        plan.contains("files_ranges_pruned_statistics=2 total → 1 matched"),
        "{plan}"
    );
}

#[test]
fn sql_from_stdin_when_no_query_is_given_and_stdin_is_not_a_terminal() {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_perfpack"))
        .args([
            "sql".as_ref(),
            fixture("basic").as_os_str(),
            "--format".as_ref(),
            "csv".as_ref(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT COUNT(*) AS n\nFROM sched_process;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(ok(&out), "n\n3\n");
}

#[test]
fn disk_utilization_ranks_first_against_block_latency() {
    // In the basic fixture the nvme disk's busy time comes from its requests: its utilization
    // and queue length move with the latency second by second, the other disk's do not.
    let out = ok(&perfpack([
        "correlate".as_ref(),
        fixture("basic").as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
    ]));
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ranked = c["ranked"].as_array().unwrap();
    let top: Vec<&str> = ranked[..3]
        .iter()
        .map(|r| r["metric"].as_str().unwrap())
        .collect();
    // The queue length first; utilization (the time with a request in flight) and the read
    // wait next, tied (ties go by name).
    assert_eq!(
        top,
        [
            "disk nvme0n1 aqu_sz",
            "disk nvme0n1 r_await_ms",
            "disk nvme0n1 util_pct"
        ],
        "{out}"
    );
    for r in &ranked[..3] {
        assert!(r["rho"].as_f64().unwrap() > 0.8, "{out}");
    }
    assert!(c["note"].as_str().unwrap().contains("not causation"));
    // The library's view ranks the same way in SQL, with the same rho.
    let view = ok(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "-q".as_ref(),
        "SELECT metric, rho FROM latency_correlation WHERE source = 'block' \
         ORDER BY abs(rho) DESC, metric LIMIT 3"
            .as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
    ]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&view).unwrap();
    let view_top: Vec<&str> = rows.iter().map(|r| r["metric"].as_str().unwrap()).collect();
    assert_eq!(view_top, top, "{view}");
    let rho = rows[0]["rho"].as_f64().unwrap();
    assert!(
        (rho - ranked[0]["rho"].as_f64().unwrap()).abs() < 1e-9,
        "{view}\n{out}"
    );
    // Little's law: latency × throughput is the queue length diskstats measured.
    for d in c["demand"].as_array().unwrap() {
        let (l, m) = (
            d["in_service"].as_f64().unwrap(),
            d["measured_aqu_sz"].as_f64().unwrap(),
        );
        assert!((l - m).abs() <= 0.05 * m.max(0.01), "{d}");
    }
}

#[test]
fn memory_limit_spills_or_fails_cleanly_and_timeout_stops_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let b = fixture("basic").display().to_string();
    // A join, an aggregation and a sort under 256 KiB: the same rows as without a limit.
    let q = "SELECT a.comm, b.comm, COUNT(*) AS n FROM stack_sample a JOIN stack_sample b \
             ON a.cpu = b.cpu GROUP BY a.comm, b.comm ORDER BY n DESC, a.comm, b.comm";
    let free = ok(&perfpack(["sql", &b, "-q", q, "--format", "csv"]));
    let tight = ok(&perfpack([
        "sql",
        &b,
        "-q",
        q,
        "--format",
        "csv",
        "--memory-limit",
        "256K",
    ]));
    assert_eq!(free, tight);
    assert!(free.lines().count() > 50);
    // A sort of wide rows that cannot fit in 1 MiB: one line, and no output file.
    let out = dir.path().join("sorted.csv");
    let err = fails(&perfpack([
        "sql",
        &b,
        "-q",
        "SELECT * FROM ftrace_event ORDER BY comm, ts_ns",
        "--memory-limit",
        "1M",
        "-o",
        &out.display().to_string(),
    ]));
    assert!(err.contains("memory"), "{err}");
    assert!(!out.exists());
    // --timeout: a triple cross join of 3,960 samples would run for hours.
    let out = dir.path().join("cross.csv");
    let t = std::time::Instant::now();
    let err = fails(&perfpack([
        "sql",
        &b,
        "-q",
        "SELECT SUM(a.ts_ns % 7 + b.ts_ns % 5 + c.ts_ns % 3) FROM stack_sample a, stack_sample b, stack_sample c",
        "--timeout",
        "500ms",
        "-o",
        &out.display().to_string(),
    ]));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        t.elapsed()
    );
    assert!(err.contains("--timeout 500 ms"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    // A query that ends in time is not affected.
    let n = ok(&perfpack([
        "sql",
        &b,
        "-q",
        "SELECT COUNT(*) AS n FROM stack_sample",
        "--format",
        "csv",
        "--timeout",
        "60s",
    ]));
    assert_eq!(n.lines().nth(1), Some("3960"));
}
