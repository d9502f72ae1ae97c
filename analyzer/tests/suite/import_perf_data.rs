//! `perfpack import perf-data` on captures `perf record` makes here of a program of known
//! shape, checked against `perf script`'s own stacks of the same file; and its refusals.

use std::path::{Path, PathBuf};

use super::import::{import, sql};
use super::{fails, ok, perfpack};

/// `perf script -F comm,tid,period,ip,sym,dso` of a capture: the reference stacks.
fn perf_script(data_file: &Path) -> String {
    let script = std::process::Command::new("perf")
        .args(["script", "-F", "comm,tid,period,ip,sym,dso", "-i"])
        .arg(data_file)
        .output()
        .unwrap();
    assert!(script.status.success(), "{script:?}");
    String::from_utf8_lossy(&script.stdout).into_owned()
}

/// A program of known shape (main → middle → leaf_a / leaf_b, none inlined) built with
/// `cflags`, recorded by `perf record` with `perf_args` for about 30 × 15 ms of CPU; the
/// capture's path, and the program's. `None` (having said why, or failed under the REQUIRE
/// flags) when perf is missing or not permitted.
fn record_spin(dir: &Path, cflags: &[&str], perf_args: &[&str]) -> Option<(PathBuf, PathBuf)> {
    let perf_ok = std::process::Command::new("perf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !perf_ok {
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_TOOLS",
            "`perf` is not installed (apt-get install linux-perf); .ci/run installs it",
        );
        return None;
    }
    let src = dir.join("spin.c");
    std::fs::write(
        &src,
        "#include <stdlib.h>\n\
         volatile unsigned long sink;\n\
         __attribute__((noinline)) void leaf_a(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i * i; }\n\
         __attribute__((noinline)) void leaf_b(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink ^= i + 7; }\n\
         __attribute__((noinline)) void middle(unsigned long n) { leaf_a(n); leaf_b(n / 2); sink++; }\n\
         int main(int argc, char **argv) { unsigned long r = strtoul(argv[1], 0, 10); while (r--) middle(10000000); return 0; }\n",
    )
    .unwrap();
    let exe = dir.join("spin");
    let cc = std::process::Command::new("cc")
        .args(cflags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("cc (installed by .ci/run)");
    assert!(cc.status.success(), "{cc:?}");
    let data_file = dir.join("spin.data");
    let rec = std::process::Command::new("perf")
        .args(["record", "-q"])
        .args(perf_args)
        .args(["-F", "499", "-o"])
        .arg(&data_file)
        .arg("--")
        .arg(&exe)
        .arg("30")
        .output()
        .unwrap();
    if !rec.status.success() {
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_RECORDING",
            &format!(
                "perf record is not permitted here: {}",
                String::from_utf8_lossy(&rec.stderr).trim()
            ),
        );
        return None;
    }
    Some((data_file, exe))
}

/// `perf script -F comm,tid,period,ip,sym,dso` of a capture folded here, independently of
/// perfpack: each sample's frames, root first after the comm, with `+0x…` offsets dropped,
/// weighted by its period (what `inferno-collapse-perf` prints for these stacks).
fn fold_perf_script(text: &str) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut lines = block.lines().filter(|l| !l.starts_with('#'));
        let Some(header) = lines.next() else { continue };
        // `comm tid period`: the comm holds no space in this capture.
        let words: Vec<&str> = header.split_whitespace().collect();
        let comm = words[0];
        let period: u64 = words.last().unwrap().parse().unwrap();
        let mut frames: Vec<String> = lines
            .map(|l| {
                let sym_dso = l.trim().split_once(' ').unwrap().1;
                let (sym, dso) = sym_dso.rsplit_once(" (").unwrap_or((sym_dso, ""));
                let sym = sym.rsplit_once("+0x").map_or(sym, |(s, _)| s);
                if sym == "[unknown]" {
                    // inferno names an unknown frame by its module's file name.
                    let dso = dso.trim_end_matches(')');
                    format!("[{}]", dso.rsplit('/').next().unwrap_or(dso))
                } else {
                    sym.to_string()
                }
            })
            .collect();
        frames.reverse();
        let mut key = comm.to_string();
        for f in frames {
            key.push(';');
            key.push_str(&f);
        }
        *out.entry(key).or_insert(0) += period;
    }
    out
}

#[test]
fn perf_data_imports_every_sample_with_the_stacks_perf_script_prints() {
    let dir = tempfile::tempdir().unwrap();
    let Some((data_file, _exe)) = record_spin(
        dir.path(),
        &["-O1", "-fno-omit-frame-pointer", "-fno-inline"],
        &["-g"],
    ) else {
        return;
    };
    let script = perf_script(&data_file);
    let reference = fold_perf_script(&script);
    let n_samples = script
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .count();
    assert!(n_samples > 50, "{n_samples} samples: {reference:?}");

    let bundle = dir.path().join("spin.ppk");
    let report = import("perf-data", &data_file, &bundle);
    assert!(
        report.contains(&format!("imported {n_samples} samples")),
        "{report}"
    );
    let folded = ok(&perfpack([
        "export".as_ref(),
        bundle.as_os_str(),
        "--format".as_ref(),
        "folded".as_ref(),
    ]));
    let ours: std::collections::BTreeMap<String, u64> = folded
        .lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').unwrap();
            (stack.to_string(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(ours, reference);
    // The program's own frames are named, under the program's path.
    let named = sql(
        &bundle,
        "SELECT COUNT(*) FROM stack_sample s JOIN stack USING (bundle, callsite_id) \
         WHERE stack.leaf IN ('leaf_a', 'leaf_b')",
    );
    let leaf_samples = script
        .split("\n\n")
        .filter(|b| {
            let leaf = b.lines().nth(1).unwrap_or("");
            leaf.contains(" leaf_a (") || leaf.contains(" leaf_b (")
        })
        .count();
    assert_eq!(named, format!("count(*)\n{leaf_samples}\n"));
    assert!(leaf_samples * 2 > n_samples, "{script}");
}

/// The program's frames of each `perf script` sample block, leaf first (`-F ip,sym,dso`
/// lines whose module is `exe`).
fn program_frames<'a>(block: &'a str, exe: &str) -> Vec<&'a str> {
    block
        .lines()
        .skip(1)
        .filter_map(|l| {
            let sym_dso = l.trim().split_once(' ')?.1;
            let (sym, dso) = sym_dso.rsplit_once(" (")?;
            (dso.trim_end_matches(')') == exe)
                .then(|| sym.rsplit_once("+0x").map_or(sym, |(s, _)| s))
        })
        .collect()
}

/// `perf record --call-graph dwarf` of a program without frame pointers: its user stacks are
/// unwound at import from the stack copies, and the program's part of every stack is the one
/// `perf script` (libdw/libunwind) unwinds from the same file. Without the unwinding the
/// capture has no user callchain at all.
#[test]
fn perf_data_dwarf_stacks_of_a_program_without_frame_pointers() {
    let dir = tempfile::tempdir().unwrap();
    let Some((data_file, exe)) = record_spin(
        dir.path(),
        &["-O2", "-fomit-frame-pointer", "-fno-inline"],
        &["--call-graph", "dwarf"],
    ) else {
        return;
    };
    let exe = exe.to_str().unwrap();
    let script = perf_script(&data_file);
    // perf script's program part of each sample, root first, counted.
    let mut reference = std::collections::BTreeMap::<String, u64>::new();
    let mut blocks = 0u64;
    for block in script.split("\n\n").filter(|b| !b.trim().is_empty()) {
        blocks += 1;
        let mut frames = program_frames(block, exe);
        frames.reverse();
        *reference.entry(frames.join(";")).or_insert(0) += 1;
    }
    assert!(blocks > 50, "{blocks} samples");
    let full = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .filter(|(k, _)| k.starts_with("_start;main;middle;leaf_"))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    // The reference itself sees the whole chain, through libc to the program's `_start`, in
    // (nearly) every sample.
    assert!(full(&reference) * 10 >= blocks * 9, "{reference:?}");

    let bundle = dir.path().join("spin.ppk");
    let report = import("perf-data", &data_file, &bundle);
    assert!(
        report.contains(&format!("imported {blocks} samples")),
        "{report}"
    );
    assert!(
        report.contains("user stacks unwound from their stack copies"),
        "{report}"
    );
    // Ours, projected the same way: each sample's stack, keeping the program's functions.
    let stacks = sql(
        &bundle,
        "SELECT coalesce(st.folded, '') AS folded FROM stack_sample s \
         LEFT JOIN stack st USING (bundle, callsite_id)",
    );
    let names = ["_start", "main", "middle", "leaf_a", "leaf_b"];
    let mut ours = std::collections::BTreeMap::<String, u64>::new();
    for line in stacks.lines().skip(1) {
        let frames: Vec<&str> = line
            .trim_matches('"')
            .split(';')
            .filter(|f| names.contains(f))
            .collect();
        *ours.entry(frames.join(";")).or_insert(0) += 1;
    }
    assert_eq!(ours, reference);
    assert!(full(&ours) * 10 >= blocks * 9, "{ours:?}");
    let methods = sql(
        &bundle,
        "SELECT unwind, COUNT(*) AS n FROM stack_sample GROUP BY unwind ORDER BY unwind",
    );
    assert!(
        methods.contains("dwarf,") || methods.contains("mixed,"),
        "{methods}"
    );
}

#[test]
fn perf_data_refusals_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let not_perf = dir.path().join("text.data");
    std::fs::write(&not_perf, "PERFILE2 but not really\n").unwrap();
    for (file, says) in [
        (not_perf.clone(), "not a perf.data file"),
        (dir.path().join("missing.data"), "missing.data"),
        (Path::new("-").to_path_buf(), "not from stdin"),
    ] {
        let out = dir.path().join("out.ppk");
        let err = fails(&perfpack([
            "import".as_ref(),
            "perf-data".as_ref(),
            file.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ]));
        assert!(err.contains(says), "{err}");
        assert!(!out.exists(), "a failed import leaves no bundle");
    }
    // A truncated capture: its header survives, its records are cut.
    let real = dir.path().join("cut.data");
    std::fs::write(&real, [b"PERFILE2".as_slice(), &[0u8; 100]].concat()).unwrap();
    let out = dir.path().join("cut.ppk");
    let err = fails(&perfpack([
        "import".as_ref(),
        "perf-data".as_ref(),
        real.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]));
    assert!(err.contains("cut.data"), "{err}");
    assert!(!out.exists());
}
