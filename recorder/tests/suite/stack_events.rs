//! `--stack-event`: other events than CPU time sampled with their stacks, checked against the
//! kernel's own count of them.

use super::{WORKLOAD, lost, record, require_recording, samples, source_of};

#[test]
fn page_faults_are_sampled_with_the_stacks_that_took_them() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("faults.ppk");
    // 64 MiB of fresh pages, one write each, under touch_outer → touch_pages; one sample every
    // 16 faults. The workload prints the minor faults the kernel counted for it.
    let out = record(&[
        "--stack-event",
        "page-faults/16",
        "--stack-bytes",
        "8K",
        "-o",
        bundle.to_str().unwrap(),
        "--",
        WORKLOAD,
        "touch",
        "64",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let minflt: i64 = stdout
        .split("minflt ")
        .nth(1)
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("no minflt in {stdout:?}"));
    assert!(stdout.contains("touched 16384 pages"), "{stdout}");
    let faults: Vec<_> = samples(&bundle)
        .into_iter()
        .filter(|s| s.event == "page-faults")
        .collect();
    let lost = lost(&bundle, "perf-lost-event-samples") as i64;
    let total: i64 = faults.iter().map(|s| s.weight).sum::<i64>() + 16 * lost;
    // Every sample weighs its period; with the lost ones, they add up to the kernel's count of
    // the process's faults (within 10%: a period's worth per thread is still being counted
    // when it exits).
    assert!(
        (total - minflt).abs() * 10 <= minflt,
        "sampled {total} faults ({} samples, {lost} lost) vs minflt {minflt}: {stderr}",
        faults.len()
    );
    let under = |s: &super::Sample| {
        s.frames.iter().any(|f| f.0 == "perfpack_test_touch_pages")
            && s.frames.iter().any(|f| f.0 == "perfpack_test_touch_outer")
    };
    let under_chain: i64 = faults.iter().filter(|s| under(s)).map(|s| s.weight).sum();
    let sampled: i64 = faults.iter().map(|s| s.weight).sum();
    // The faults of the 16,384 pages it touched are under the chain that touched them: at
    // least 90% of what was sampled, and of the touched pages once the lost samples (of
    // unknown stacks) are counted.
    let touched = 16384;
    assert!(
        under_chain * 10 >= sampled * 9 && (under_chain + 16 * lost) * 10 >= touched * 9,
        "{under_chain} of {sampled} sampled faults ({lost} samples lost) under touch_outer → touch_pages, {touched} pages touched"
    );
    // The manifest says what was sampled.
    let detail = source_of(&bundle, "perf-samples")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("page-faults sampled with stacks (every 16 events)"),
        "{detail}"
    );
}

#[test]
fn an_unknown_stack_event_fails_in_one_line_before_recording() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    for (event, says) in [
        (
            "block:no_such_tracepoint",
            "--stack-event block:no_such_tracepoint: ",
        ),
        ("page-fault", "not a software event"),
    ] {
        let bundle = dir.path().join("none.ppk");
        let out = record(&[
            "--stack-event",
            event,
            "-d",
            "1s",
            "-o",
            bundle.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{event}: {stderr}");
        assert!(stderr.contains(says), "{event}: {stderr}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
            .collect();
        assert_eq!(lines.len(), 1, "{event}: one line: {stderr}");
        assert!(!bundle.exists(), "{event}: a bundle was left");
    }
}

#[test]
fn a_tracepoint_is_sampled_at_every_hit_under_its_own_process() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("writes.ppk");
    let file = dir.path().join("dd.out");
    // dd's 200 writes of its data, right after its exec: the samples taken in the same drain
    // as the exec record must already be dd's (they once sorted before it and kept the
    // recorder's name).
    let of = format!("of={}", file.display());
    let out = record(&[
        "--preset",
        "cpu",
        "--stack-event",
        "syscalls:sys_enter_write",
        "-o",
        bundle.to_str().unwrap(),
        "--",
        "dd",
        "if=/dev/zero",
        &of,
        "bs=4k",
        "count=200",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("200+0 records out"), "{stderr}");
    let lost = lost(&bundle, "perf-lost-event-samples");
    let writes: Vec<_> = samples(&bundle)
        .into_iter()
        .filter(|s| s.event == "syscalls:sys_enter_write")
        .collect();
    // One sample per write: its 200 of data, and the few lines of its closing report.
    let n = writes.len() as u64 + lost;
    assert!(
        (200..=210).contains(&n),
        "{n} writes sampled ({lost} lost): {stderr}"
    );
    for s in &writes {
        assert_eq!(s.comm, "dd", "{s:?}");
        assert_eq!(s.weight, 1, "{s:?}");
        assert!(
            s.frames.iter().any(|f| f.0.contains("write")),
            "no write frame: {s:?}"
        );
    }
}

#[test]
fn the_mem_preset_samples_faults_and_mappings_with_their_stacks() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("mem.ppk");
    // touch allocates 8 MiB (glibc maps it: one mmap under touch_outer) and faults it in.
    let out = record(&[
        "--preset",
        "mem",
        "-o",
        bundle.to_str().unwrap(),
        "--",
        WORKLOAD,
        "touch",
        "8",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let detail = source_of(&bundle, "perf-samples")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    for said in [
        "page-faults sampled with stacks (every 16 events)",
        "syscalls:sys_enter_brk sampled with stacks (every event)",
        "syscalls:sys_enter_mmap sampled with stacks (every event)",
    ] {
        assert!(detail.contains(said), "{said:?} not in {detail}");
    }
    let all = samples(&bundle);
    let mmap_under_touch = all.iter().any(|s| {
        s.event == "syscalls:sys_enter_mmap"
            && s.frames.iter().any(|f| f.0 == "perfpack_test_touch_outer")
    });
    assert!(mmap_under_touch, "no mmap sample under touch_outer");
    let faults: i64 = all
        .iter()
        .filter(|s| s.event == "page-faults")
        .map(|s| s.weight)
        .sum();
    // 2,048 pages touched: their faults, less a period's worth and what was lost.
    assert!(
        faults + 16 * lost(&bundle, "perf-lost-event-samples") as i64 >= 2048 * 9 / 10,
        "{faults} faults sampled"
    );
}
