//! A writer killed with SIGKILL in the middle of its second segment leaves a bundle whose first
//! segment reads, with state `recording` (DESIGN §2: a crash loses at most the open segment).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use perfpack_schema::manifest::{ClockSnapshot, Host, Manifest, RecorderInfo};
use perfpack_schema::tables::{self, StackSample, StackSampleBuilder};
use perfpack_schema::{BundleWriter, WriterOptions};

use super::{ok, perfpack};

const CHILD_ENV: &str = "PERFPACK_TEST_CRASH_WRITER";

/// Runs in a child process (this test binary started again): closes segment 0, then keeps
/// appending to segment 1, closing nothing, until it is killed.
#[test]
#[ignore = "helper process of killed_writer_leaves_a_readable_first_segment"]
fn crash_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let root = Path::new(&dir).join("crash.ppk");
    let manifest = Manifest::new(
        "crash".into(),
        RecorderInfo::default(),
        Host {
            hostname: "crash".into(),
            n_cpus: 1,
            ..Host::default()
        },
        ClockSnapshot {
            realtime_ns: 1_795_874_103_000_000_000,
            monotonic_ns: 0,
            boottime_ns: 0,
            tsc: None,
        },
    );
    let mut w = BundleWriter::create(&root, manifest, WriterOptions::default()).unwrap();
    let mut b = StackSampleBuilder::default();
    let mut push = |w: &mut BundleWriter, from: i64| {
        for ts in from..from + 1000 {
            b.push(&StackSample {
                ts_ns: ts,
                cpu: 0,
                pid: 1,
                tid: 1,
                comm: "c",
                event: "cpu-clock",
                weight: 1,
                callsite_id: None,
                unwind: None,
                truncated: None,
            });
        }
        w.append(tables::STACK_SAMPLE, b.finish()).unwrap();
    };
    push(&mut w, 0);
    w.close_segment().unwrap();
    std::fs::write(Path::new(&dir).join("segment-0-closed"), b"").unwrap();
    let mut ts = 1_000_000;
    loop {
        push(&mut w, ts);
        ts += 1000;
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_writer_leaves_a_readable_first_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "suite::crash::crash_writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("segment-0-closed").exists() {
        assert!(
            Instant::now() < deadline,
            "child never closed its first segment"
        );
        assert!(child.try_wait().unwrap().is_none(), "child exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let it get well into segment 1, then kill it without a chance to clean up.
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert!(!status.success());

    let bundle = dir.path().join("crash.ppk");
    let out = ok(&perfpack(["info".as_ref(), bundle.as_os_str()]));
    assert!(out.contains("state      recording: not finalized"), "{out}");
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("stack_sample "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[..3], ["stack_sample", "1000", "1"], "{out}");
    let json = ok(&perfpack([
        "info".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        bundle.as_os_str(),
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["manifest"]["state"], "recording");
}
