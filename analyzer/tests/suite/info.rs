//! `perfpack info`, `pack` and `unpack` on the committed fixtures.

use super::{copy_dir, fixture, ok, perfpack};

#[test]
fn info_lists_every_source_table_and_the_wall_clock_window() {
    let out = ok(&perfpack(["info".as_ref(), fixture("basic").as_os_str()]));
    for source in ["perf-samples", "ftrace", "pmc", "msr", "procfs"] {
        assert!(
            out.lines().any(|l| l.starts_with(source)),
            "no {source} in\n{out}"
        );
    }
    for table in perfpack_schema::tables::ALL {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{} ", table.name))),
            "no {} in\n{out}",
            table.name
        );
    }
    assert!(out.contains("stack_sample    3960"), "{out}");
    assert!(
        out.contains("2026-11-02T09:30:00.000Z to 2026-11-02T09:30:10.000Z (10.0 s)"),
        "{out}"
    );
    assert!(out.contains("perf-lost-records"), "{out}");
    assert!(out.contains("state      complete"), "{out}");
}

#[test]
fn packed_and_unpacked_forms_give_the_same_info() {
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("basic.ppk");
    ok(&perfpack([
        "pack".as_ref(),
        fixture("basic").as_os_str(),
        "-o".as_ref(),
        packed.as_os_str(),
    ]));
    let a = ok(&perfpack(["info".as_ref(), fixture("basic").as_os_str()]));
    let b = ok(&perfpack(["info".as_ref(), packed.as_os_str()]));
    // Only the first line (path, and directory vs packed file) differs.
    assert_eq!(
        a.lines().skip(1).collect::<Vec<_>>(),
        b.lines().skip(1).collect::<Vec<_>>()
    );
    assert!(b.lines().next().unwrap().contains("(packed file)"));

    // Packing is deterministic, and unpacking gives back the same bytes.
    let again = dir.path().join("again.ppk");
    ok(&perfpack([
        "pack".as_ref(),
        fixture("basic").as_os_str(),
        "-o".as_ref(),
        again.as_os_str(),
    ]));
    assert_eq!(
        std::fs::read(&packed).unwrap(),
        std::fs::read(&again).unwrap()
    );
    let unpacked = dir.path().join("unpacked.ppk");
    ok(&perfpack([
        "unpack".as_ref(),
        packed.as_os_str(),
        "-o".as_ref(),
        unpacked.as_os_str(),
    ]));
    let c = ok(&perfpack(["info".as_ref(), unpacked.as_os_str()]));
    assert_eq!(
        a.lines().skip(1).collect::<Vec<_>>(),
        c.lines().skip(1).collect::<Vec<_>>()
    );

    // Refuses to overwrite unless told.
    let out = perfpack([
        "pack".as_ref(),
        fixture("basic").as_os_str(),
        "-o".as_ref(),
        packed.as_os_str(),
    ]);
    assert!(super::fails(&out).contains("refusing to overwrite"));
    ok(&perfpack([
        "pack".as_ref(),
        fixture("basic").as_os_str(),
        "-o".as_ref(),
        packed.as_os_str(),
        "--force".as_ref(),
    ]));
}

#[test]
fn packed_bundle_is_a_standard_zip_that_unzip_reads() {
    let Ok(status) = std::process::Command::new("unzip").arg("-v").output() else {
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_TOOLS",
            "`unzip` is not installed (apt-get install unzip); .ci/run installs it",
        );
        return;
    };
    assert!(status.status.success());
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("b.ppk");
    ok(&perfpack([
        "pack".as_ref(),
        fixture("before").as_os_str(),
        "-o".as_ref(),
        packed.as_os_str(),
    ]));
    let out = std::process::Command::new("unzip")
        .args(["-q", "-d"])
        .arg(dir.path().join("x"))
        .arg(&packed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = std::fs::read(dir.path().join("x/manifest.json")).unwrap();
    assert_eq!(
        manifest,
        std::fs::read(fixture("before").join("manifest.json")).unwrap()
    );
}

#[test]
fn json_format_and_globs() {
    let glob = format!("{}/../testdata/*f*.ppk", env!("CARGO_MANIFEST_DIR"));
    let out = ok(&perfpack(["info", "--format", "json", glob.as_str()]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arr = v.as_array().unwrap();
    // `*f*.ppk` matches before.ppk and after.ppk.
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["manifest"]["bundle_id"], "fixture-after-7");
    assert_eq!(arr[1]["manifest"]["host"]["n_cpus"], 2);
    let stack = arr[1]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "stack_sample")
        .unwrap();
    // before.ppk's samples, as its generator counted them.
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(super::fixture("before").with_extension("truth.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stack["rows"], truth["samples"]);
}

#[test]
fn unlisted_segment_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.ppk");
    copy_dir(&fixture("basic"), &b);
    std::fs::write(
        b.join("tables/stack_sample/seg-000002.parquet"),
        b"PAR1 half-written",
    )
    .unwrap();
    let out = perfpack(["info".as_ref(), b.as_os_str()]);
    let text = ok(&out);
    assert!(text.contains("stack_sample    3960"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning")
            && err.contains("seg-000002.parquet")
            && err.contains("never closed"),
        "{err}"
    );
}

#[test]
fn info_states_the_truncated_share_of_each_processes_stacks() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.ppk");
    copy_dir(&fixture("basic"), &b);
    // The recorder's per-process unwinding counts, as it writes them; 50 of 200 is 25.0%.
    let path = b.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let perf = m["sources"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["name"] == "perf-samples")
        .unwrap();
    perf["unwind"] = serde_json::json!([
        {"pid": 3400, "comm": "java", "samples": 200, "dwarf": 150, "mixed": 30, "fp": 20, "truncated": 50},
        {"pid": 1210, "comm": "postgres", "samples": 80, "dwarf": 80, "mixed": 0, "fp": 0, "truncated": 0}
    ]);
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let out = ok(&perfpack(["info".as_ref(), b.as_os_str()]));
    let row = |comm: &str| {
        out.lines()
            .find(|l| l.starts_with(comm))
            .unwrap_or_else(|| panic!("no {comm} row in\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(out.contains("stacks of"), "{out}");
    assert_eq!(row("java"), "java 3400 200 150 30 20 50 (25.0%)");
    assert_eq!(row("postgres"), "postgres 1210 80 80 0 0 0 (0.0%)");
}
