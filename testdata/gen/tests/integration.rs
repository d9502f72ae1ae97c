//! The committed fixtures are exactly what the generator writes, and their tables agree with
//! the truth the generator reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int32Type, Int64Type, UInt64Type};
use perfpack_schema::{Bundle, tables};
use perfpack_testgen::{Scenario, fixtures, generate};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn committed_fixtures_are_what_the_generator_writes() {
    let dir = tempfile::tempdir().unwrap();
    for sc in fixtures() {
        let fresh = dir.path().join(format!("{}.ppk", sc.name));
        let truth = generate(&sc, &fresh).unwrap();
        let committed = testdata().join(format!("{}.ppk", sc.name));
        let hint =
            "stale fixture: run `cargo run -p perfpack-testgen --bin gen-testdata` and commit";
        assert_eq!(
            files_under(&fresh),
            files_under(&committed),
            "{}: {hint}",
            sc.name
        );
        for f in files_under(&fresh) {
            assert!(
                std::fs::read(fresh.join(&f)).unwrap()
                    == std::fs::read(committed.join(&f)).unwrap(),
                "{}/{}: {hint}",
                sc.name,
                f.display()
            );
        }
        let json = serde_json::to_string_pretty(&truth).unwrap() + "\n";
        let committed_truth =
            std::fs::read_to_string(testdata().join(format!("{}.truth.json", sc.name))).unwrap();
        assert!(json == committed_truth, "{}.truth.json: {hint}", sc.name);
    }
}

fn int64(batch: &arrow_array::RecordBatch, col: &str) -> Vec<i64> {
    batch
        .column_by_name(col)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

/// Busy MHz per CPU from the first and last TSC/APERF/MPERF readings (showboost's formula).
fn busy_mhz_by_cpu(bundle: &Bundle) -> BTreeMap<i32, f64> {
    let mut first_last: BTreeMap<(i32, String), (u64, u64)> = BTreeMap::new();
    for b in bundle.read_table(tables::MSR).unwrap() {
        let cpu = b.column_by_name("cpu").unwrap().as_primitive::<Int32Type>();
        let name = b.column_by_name("name").unwrap().as_string::<i32>();
        let value = b
            .column_by_name("value")
            .unwrap()
            .as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            let e = first_last
                .entry((cpu.value(i), name.value(i).to_string()))
                .or_insert((value.value(i), 0));
            e.1 = value.value(i);
        }
    }
    let delta = |cpu: i32, name: &str| {
        let (a, b) = first_last[&(cpu, name.to_string())];
        (b - a) as f64
    };
    let tsc_mhz = bundle.manifest().host.tsc_mhz.unwrap();
    (0..bundle.manifest().host.n_cpus as i32)
        .map(|cpu| (cpu, tsc_mhz * delta(cpu, "APERF") / delta(cpu, "MPERF")))
        .collect()
}

#[test]
fn msr_deltas_give_each_fixture_its_busy_mhz() {
    for (name, mhz) in [("basic", 3100.0), ("before", 2500.0), ("after", 3000.0)] {
        let bundle = Bundle::open(testdata().join(format!("{name}.ppk"))).unwrap();
        for (cpu, got) in busy_mhz_by_cpu(&bundle) {
            assert!(
                (got - mhz).abs() < 0.5,
                "{name} cpu {cpu}: {got} MHz, want {mhz}"
            );
        }
    }
}

#[test]
fn before_and_after_do_the_same_work_at_different_speeds() {
    let dir = tempfile::tempdir().unwrap();
    let before = generate(
        &Scenario::pair_side("before", 2500.0),
        &dir.path().join("b"),
    )
    .unwrap();
    let after = generate(&Scenario::pair_side("after", 3000.0), &dir.path().join("a")).unwrap();
    // Same wakeups (same work), and busy time in the ratio of the frequencies.
    assert_eq!(before.wakeups, after.wakeups);
    for (b, a) in before.busy_pct_by_cpu.iter().zip(&after.busy_pct_by_cpu) {
        let ratio = b / a;
        assert!((ratio - 1.2).abs() < 0.02, "busy ratio {ratio}");
    }
}

#[test]
fn block_rows_reproduce_the_truth_latency_distribution() {
    let bundle = Bundle::open(testdata().join("basic.ppk")).unwrap();
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(testdata().join("basic.truth.json")).unwrap(),
    )
    .unwrap();
    let mut issued: BTreeMap<(String, u64), i64> = BTreeMap::new();
    let mut lat = Vec::new();
    for b in bundle.read_table(tables::BLOCK_RQ).unwrap() {
        let ts = int64(&b, "ts_ns");
        let phase = b.column_by_name("phase").unwrap().as_string::<i32>();
        let dev = b.column_by_name("dev").unwrap().as_string::<i32>();
        let sector = b
            .column_by_name("sector")
            .unwrap()
            .as_primitive::<UInt64Type>();
        for (i, &ts) in ts.iter().enumerate() {
            let key = (dev.value(i).to_string(), sector.value(i));
            match phase.value(i) {
                "issue" => {
                    issued.insert(key, ts);
                }
                "complete" => {
                    lat.push(ts - issued.remove(&key).expect("complete matches an issue"))
                }
                _ => {}
            }
        }
    }
    lat.sort_unstable();
    assert_eq!(lat.len() as u64, truth["block"]["count"].as_u64().unwrap());
    let p99 = lat[(lat.len() * 99).div_ceil(100) - 1];
    assert_eq!(p99, truth["block"]["p99_ns"].as_i64().unwrap());
    assert_eq!(
        issued.len() as u64,
        truth["block_incomplete"].as_u64().unwrap()
    );
}
