//! Flame graphs of events other than CPU time, from recordings made here: a disk I/O flame
//! graph weighted by bytes, checked against what dd says it wrote and the block layer's own
//! `block_rq` rows of the same recording.

use std::path::Path;

use super::{ok, perfpack, sql_rows};

#[test]
fn a_disk_io_flame_graph_weighs_every_request_of_dd_by_its_bytes() {
    let bin = Path::new(env!("CARGO_BIN_EXE_perfpack")).parent().unwrap();
    let recorder = bin.join("perfpack-record");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        perfpack_schema::skip::skip("PERFPACK_REQUIRE_RECORDING", "needs root to record");
        return;
    }
    let _live = super::live();
    // O_DIRECT needs a disk-backed file system (the target directory is on one; /tmp may be
    // tmpfs), and a new file: truncating an old one would add its discards.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bundle = dir.path().join("dd.ppk");
    let of = format!("of={}", dir.path().join("dd.out").display());
    const BLOCKS: u64 = 256;
    // Frame-pointer stacks (no 16 KiB stack copy per sample): the kernel's chain names the
    // write path, and the rings hold more samples than the run takes, so none is lost
    // however busy the machine is.
    let out = std::process::Command::new(&recorder)
        .args([
            "--unwind",
            "fp",
            "--stack-event",
            "block:block_rq_insert",
            "-o",
        ])
        .arg(&bundle)
        .args(["--", "dd", "if=/dev/zero", &of, "bs=4k", "oflag=direct"])
        .arg(format!("count={BLOCKS}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // dd's own account of what it wrote.
    let said = format!("{} bytes", BLOCKS * 4096);
    assert!(stderr.contains(&said), "dd did not say {said:?}: {stderr}");
    assert_eq!(super::lost_samples(&bundle), 0, "samples lost: {stderr}");

    let b = bundle.to_str().unwrap();
    let folded = |weight: &str, more: &[&str]| -> Vec<(String, u64)> {
        ok(&perfpack(
            [
                "flamegraph",
                b,
                "--event",
                "block:block_rq_insert",
                "--weight",
                weight,
                "--folded",
                "-o",
                "-",
            ]
            .iter()
            .chain(more),
        ))
        .lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').unwrap();
            (stack.to_string(), n.parse().unwrap())
        })
        .collect()
    };
    // dd's requests: the stacks under its write(2) (open, exec and the loader read through
    // other paths).
    let writes = |lines: &[(String, u64)]| -> u64 {
        lines
            .iter()
            .filter(|(s, _)| s.starts_with("dd;") && s.contains(";vfs_write;"))
            .map(|(_, n)| n)
            .sum()
    };
    let bytes = folded("bytes", &[]);
    assert_eq!(writes(&bytes), BLOCKS * 4096, "{bytes:#?}");
    let samples = folded("samples", &[]);
    assert_eq!(writes(&samples), BLOCKS, "{samples:#?}");
    for (stack, _) in &bytes {
        assert!(
            stack.ends_with("block_rq_insert"),
            "a stack not ending at the tracepoint: {stack}"
        );
    }
    // The block layer's own rows of the same recording (ftrace, not the samples): every
    // request dd's process inserted, and its bytes, equal what its flame graph holds. By pid:
    // the requests that read dd's binary during the exec carry the recorder's name in ftrace.
    let pid = sql_rows(
        &bundle,
        "SELECT DISTINCT pid FROM block_rq WHERE comm = 'dd'",
    );
    assert_eq!(pid.len(), 1, "{pid:?}");
    let pid = pid[0]["pid"].as_i64().unwrap().to_string();
    let rows = sql_rows(
        &bundle,
        &format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(SUM(bytes) AS BIGINT) AS bytes \
             FROM block_rq WHERE phase = 'insert' AND pid = {pid}"
        ),
    );
    let total = |weight: &str| -> u64 {
        folded(weight, &["--pid", &pid])
            .iter()
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(rows[0]["n"].as_u64(), Some(total("samples")), "{rows:?}");
    assert_eq!(rows[0]["bytes"].as_u64(), Some(total("bytes")), "{rows:?}");

    // The Firefox Profiler export of that event: dd's process holds every request.
    let json = dir.path().join("io.json");
    ok(&perfpack([
        "export",
        b,
        "--format",
        "firefox",
        "--event",
        "block:block_rq_insert",
        "--pid",
        &pid,
        "-o",
        json.to_str().unwrap(),
    ]));
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let weight: u64 = p["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["name"].as_str().unwrap().starts_with("off-CPU"))
        .map(|t| match t["samples"]["weight"].as_array() {
            Some(w) => w.iter().map(|x| x.as_u64().unwrap()).sum(),
            None => t["samples"]["length"].as_u64().unwrap(),
        })
        .sum();
    assert_eq!(rows[0]["n"].as_u64(), Some(weight), "{rows:?}");
    let err = super::fails(&perfpack([
        "export",
        b,
        "--format",
        "firefox",
        "--event",
        "nosuch:event",
        "-o",
        "-",
    ]));
    assert!(err.contains("nosuch:event"), "{err}");

    // The picture says what it is and what it counts.
    let svg_path = dir.path().join("io.svg");
    ok(&perfpack([
        "flamegraph",
        b,
        "--event",
        "block:block_rq_insert",
        "--weight",
        "bytes",
        "-o",
        svg_path.to_str().unwrap(),
    ]));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.contains("Disk I/O Flame Graph (block_rq_insert)"));
    assert!(svg.contains(&format!("{} bytes", super::thousands(BLOCKS * 4096))));

    // Bytes of an event without a byte field, or of a CPU profile, are refused in one line.
    for (bundle, args) in [
        (b.to_string(), vec!["--event", "cpu-clock"]),
        (super::fixture("basic").display().to_string(), vec![]),
    ] {
        let out = perfpack(
            [
                "flamegraph",
                bundle.as_str(),
                "--weight",
                "bytes",
                "-o",
                "-",
            ]
            .into_iter()
            .chain(args),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("bytes"), "{err}");
    }
}
