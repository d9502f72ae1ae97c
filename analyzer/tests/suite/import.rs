//! `perfpack import` on committed text captures of this machine (see
//! `tests/data/import/README.md`): folded stacks equal `inferno-collapse-perf`'s on the same
//! text, events land in their typed tables, and unparsable lines are counted, never dropped
//! silently.

use std::path::{Path, PathBuf};

use super::{fails, golden, ok, perfpack};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/import")
        .join(name)
}

/// `perfpack import KIND FILE -o OUT`, which must succeed; its report.
pub(super) fn import(kind: &str, file: &Path, out: &Path) -> String {
    ok(&perfpack([
        "import".as_ref(),
        kind.as_ref(),
        file.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]))
}

/// A query's CSV output (the perf.data tests use it too).
pub(super) fn sql(bundle: &Path, q: &str) -> String {
    ok(&perfpack([
        "sql".as_ref(),
        bundle.as_os_str(),
        "--format".as_ref(),
        "csv".as_ref(),
        "-q".as_ref(),
        q.as_ref(),
    ]))
}

#[test]
fn perf_script_folds_exactly_like_inferno() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("cpu.ppk");
    let report = import("perf-script", &data("perf-script-cpu-clock.txt"), &bundle);
    let text = std::fs::read_to_string(data("perf-script-cpu-clock.txt")).unwrap();
    let n_events = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(['\t', ' ', '#']))
        .count();
    assert!(
        report.contains(&format!("imported {n_events} samples")),
        "{report}"
    );
    assert!(!report.contains("could not be parsed"), "{report}");
    let folded = ok(&perfpack([
        "export".as_ref(),
        bundle.as_os_str(),
        "--format".as_ref(),
        "folded".as_ref(),
    ]));
    let inferno = std::fs::read_to_string(data("perf-script-cpu-clock.inferno.folded")).unwrap();
    assert_eq!(folded, inferno);
    // The flame graph's own folded output is the same aggregation.
    let flame = ok(&perfpack([
        "flamegraph".as_ref(),
        bundle.as_os_str(),
        "--folded".as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
    ]));
    assert_eq!(flame, inferno);
    // The bundle itself: samples, threads and the rust frames of the workload, unsymbolized
    // frames kept as [unknown] with their module.
    let counts = sql(
        &bundle,
        "SELECT COUNT(*), COUNT(DISTINCT tid) FROM stack_sample",
    );
    assert!(
        counts.starts_with(&format!(
            "count(*),count(DISTINCT stack_sample.tid)\n{n_events},"
        )),
        "{counts}"
    );
    let hot = sql(
        &bundle,
        "SELECT COUNT(*) FROM stack WHERE leaf = 'perfpack_test_hot_loop'",
    );
    assert_ne!(hot.lines().nth(1), Some("0"), "{hot}");
    let kinds = sql(
        &bundle,
        "SELECT kind, COUNT(*) > 0 FROM frame GROUP BY kind ORDER BY kind",
    );
    assert!(
        kinds.contains("kernel,true") && kinds.contains("user,true"),
        "{kinds}"
    );
}

#[test]
fn perf_script_odd_shapes_and_unparsable_lines() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("odd.ppk");
    let report = import("perf-script", &data("perf-script-odd.txt"), &bundle);
    assert!(report.contains("imported 5 samples"), "{report}");
    assert!(report.contains("2 lines could not be parsed"), "{report}");
    assert!(
        report.contains("line 25: this line is not perf script output"),
        "{report}"
    );
    let folded = ok(&perfpack(["export".as_ref(), bundle.as_os_str()]));
    // Its weights add up to the input's five samples of period 10101010 ns each.
    let total: u64 = folded
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 5 * 10_101_010);
    golden("import/perf-script-odd.expected.folded", &folded);
    let info = ok(&perfpack([
        "info".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        bundle.as_os_str(),
    ]));
    assert!(
        info.contains("\"partial\"") && info.contains("unparsed_lines"),
        "{info}"
    );
    let modules = sql(
        &bundle,
        "SELECT DISTINCT module FROM frame WHERE name = 'hot'",
    );
    assert_eq!(modules, "module\n/tmp/build/a.out (deleted)\n");
}

#[test]
fn ftrace_text_of_trace_and_trace_cmd_fills_the_typed_tables() {
    for file in ["ftrace-trace.txt", "trace-cmd-report.txt"] {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("t.ppk");
        let report = import("ftrace-text", &data(file), &bundle);
        let text = std::fs::read_to_string(data(file)).unwrap();
        let n_events = text
            .lines()
            .filter(|l| l.contains("]") && l.contains(": ") && !l.starts_with('#'))
            .count();
        assert!(
            report.contains(&format!("imported {n_events} events")),
            "{file}: {report}"
        );
        assert!(!report.contains("could not be parsed"), "{file}: {report}");
        let per_event = sql(
            &bundle,
            "SELECT event, COUNT(*) AS n FROM ftrace_event GROUP BY event ORDER BY event",
        );
        // Each event's count, counted here in the text (`…: NAME: …` after the timestamp).
        for row in per_event.lines().skip(1) {
            let (event, n) = row.rsplit_once(',').unwrap();
            let name = event.rsplit_once(':').map_or(event, |(_, n)| n);
            let in_text = text
                .lines()
                .filter(|l| !l.starts_with('#') && l.contains(&format!(": {name}: ")))
                .count();
            assert_eq!(n.parse::<usize>().unwrap(), in_text, "{file}: {event}");
        }
        golden(&format!("import/{file}.events.csv"), &per_event);
        // Every hot event is in its typed table too.
        let check = sql(
            &bundle,
            "SELECT (SELECT COUNT(*) FROM sched_switch) = (SELECT COUNT(*) FROM ftrace_event WHERE event = 'sched:sched_switch') AS a, \
                    (SELECT COUNT(*) FROM syscall) = (SELECT COUNT(*) FROM ftrace_event WHERE event LIKE 'raw_syscalls:%') AS b, \
                    (SELECT COUNT(*) FROM block_rq) = (SELECT COUNT(*) FROM ftrace_event WHERE event LIKE 'block:block_rq_i%' OR event IN ('block:block_rq_complete', 'block:block_io_start')) AS c, \
                    (SELECT COUNT(*) FROM sched_switch) >= 10 AS d",
        );
        assert_eq!(
            check.lines().nth(1),
            Some("true,true,true,true"),
            "{file}: {check}"
        );
        let io = sql(&bundle, "SELECT COUNT(*) > 0 FROM block_io");
        assert_eq!(
            io.lines().nth(1),
            Some("true"),
            "{file}: no block_io from {io}"
        );
    }
}

#[test]
fn import_errors_name_the_file_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.ppk");
    let err = fails(&perfpack([
        "import".as_ref(),
        "perf-script".as_ref(),
        dir.path().join("missing.txt").as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]));
    assert!(err.contains("missing.txt"), "{err}");
    assert!(!out.exists());
    // An existing bundle is not replaced without --force.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), "x").unwrap();
    let err = fails(&perfpack([
        "import".as_ref(),
        "perf-script".as_ref(),
        data("perf-script-odd.txt").as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]));
    assert!(err.contains("--force"), "{err}");
    assert!(out.join("keep").exists());
}

#[test]
fn a_failed_import_with_force_leaves_the_old_bundle_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cpu.ppk");
    let input = data("perf-script-cpu-clock.txt");
    import("perf-script", &input, &out);
    let count = "SELECT COUNT(*) AS n FROM stack_sample";
    let before = sql(&out, count);
    let listing = || {
        let mut v: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "bad.txt")
            .collect();
        v.sort();
        v
    };
    let files = listing();
    // Input that fails after its samples were written (a line of 2 MiB, over the 1 MiB a
    // line may have): with --force, the old bundle must still be there, whole, and nothing
    // temporary beside it.
    let bad = dir.path().join("bad.txt");
    let mut text = std::fs::read(&input).unwrap();
    text.extend(std::iter::repeat_n(b'y', 2 << 20));
    std::fs::write(&bad, text).unwrap();
    let err = fails(&perfpack([
        "import".as_ref(),
        "perf-script".as_ref(),
        bad.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--force".as_ref(),
    ]));
    assert!(err.contains("bad.txt"), "{err}");
    assert_eq!(sql(&out, count), before);
    assert_eq!(listing(), files);
}

#[test]
fn samples_without_a_callchain_count_under_their_process_name() {
    // Four cpu-clock samples of 10101010 ns: one with a kernel callchain, three with the
    // header line alone (two of bash, one of make). stackcollapse-perf.pl counts the three as
    // their process names; inferno-collapse-perf 0.12 drops them. CPU time is CPU time.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("nc.ppk");
    let report = import(
        "perf-script",
        &data("perf-script-no-callchain.txt"),
        &bundle,
    );
    assert!(report.contains("imported 4 samples"), "{report}");
    assert!(
        report.contains(
            "note: 3 samples without a callchain: each counts under its process name alone, first at line"
        ),
        "{report}"
    );
    let folded = ok(&perfpack(["export".as_ref(), bundle.as_os_str()]));
    let mut lines: Vec<&str> = folded.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "bash 20202020",
            "bash;default_idle;native_safe_halt 10101010",
            "make 10101010"
        ]
    );
    // And the flame graph holds all four.
    let svg = ok(&perfpack([
        "flamegraph".as_ref(),
        bundle.as_os_str(),
        "-o".as_ref(),
        "-".as_ref(),
    ]));
    assert!(
        svg.contains("4 cpu-clock samples"),
        "{}",
        &svg[..svg.len().min(2000)]
    );
}

#[test]
fn one_line_samples_without_an_event_column_are_imported() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("one.ppk");
    let report = import("perf-script", &data("perf-script-one-line.txt"), &bundle);
    // Three lines, three samples of weight 1: two in java's JIT map, one in the kernel.
    assert!(report.contains("imported 3 samples"), "{report}");
    assert!(
        report.contains("note: all 3 samples without an event name"),
        "{report}"
    );
    let folded = ok(&perfpack(["export".as_ref(), bundle.as_os_str()]));
    let mut lines: Vec<&str> = folded.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["bash;native_safe_halt 1", "java;java/lang/Thread:::run 2"]
    );
    assert_eq!(
        sql(
            &bundle,
            "SELECT tid, ts_ns FROM stack_sample ORDER BY ts_ns"
        ),
        "tid,ts_ns\n1235,100000100000\n1235,100000200000\n99,100000300000\n"
    );
}

#[test]
fn half_demangled_rust_symbols_fold_as_inferno_folds_them() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("rust.ppk");
    import("perf-script", &data("perf-script-rust.txt"), &bundle);
    let folded = ok(&perfpack(["export".as_ref(), bundle.as_os_str()]));
    let inferno = std::fs::read_to_string(data("perf-script-rust.inferno.folded")).unwrap();
    assert_eq!(folded, inferno);
    // By hand: the hash gone, `$LT$`/`$GT$` and `..` decoded, the escapes' leading `_` only
    // where the symbol starts with it; and the hash gone where perf demangled all but it.
    assert_eq!(
        folded,
        "emulator;std::rt::lang_start::{{closure}};emulator::main;emulator::cpu::Cpu::step 1\n\
         prog;prog::main::_{{closure}};<alloc::vec::Vec<T>>::push 1\n"
    );
}

#[test]
fn jit_frames_with_inlined_methods_fold_as_inferno_folds_them() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("jit.ppk");
    import(
        "perf-script",
        &data("perf-script-java-inlined.txt"),
        &bundle,
    );
    let folded = ok(&perfpack(["export".as_ref(), bundle.as_os_str()]));
    let inferno = std::fs::read_to_string(data("perf-script-java-inlined.inferno.folded")).unwrap();
    // The JIT lines as inferno folds them; not C++'s `operator->`, which inferno splits as if
    // it joined inlined frames (`operator;_[i]`).
    let (java, cpp): (Vec<&str>, Vec<&str>) = inferno.lines().partition(|l| l.starts_with("java;"));
    assert_eq!(cpp, ["opt;std::unique_ptr<Foo>::operator;_[i] 1"]);
    for line in java {
        assert!(folded.lines().any(|l| l == line), "{line} not in {folded}");
    }
    // By hand: A->B->C is A, then B and C inlined below it; operator-> stays one frame.
    assert!(folded.contains(
        "java;Interpreter;com/example/A:::a;com/example/B:::b_[i];com/example/C:::c_[i] 1"
    ));
    assert!(
        folded.contains("opt;std::unique_ptr<Foo>::operator-> 1"),
        "{folded}"
    );
}

#[test]
fn header_lines_with_a_right_aligned_comm_are_headers() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("padded.ppk");
    let report = import("perf-script", &data("perf-script-padded.txt"), &bundle);
    assert!(report.contains("imported 3 samples"), "{report}");
    let folded = ok(&perfpack(["export".as_ref(), bundle.as_os_str()]));
    let inferno = std::fs::read_to_string(data("perf-script-padded.inferno.folded")).unwrap();
    assert_eq!(folded, inferno);
}

#[test]
fn samples_of_exited_tasks_are_samples_like_any_other() {
    // Four cpu-clock samples of 1001001 ns; two are of tasks that had exited before perf read
    // them (`:-1    -1 [001] 910.854533: ...`, lines 5 and 12). inferno-collapse-perf 0.12 drops
    // those two ("Weird event line"); they are CPU time, so perfpack keeps them under `:-1`.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("exited.ppk");
    let report = import("perf-script", &data("perf-script-exited.txt"), &bundle);
    assert!(report.contains("imported 4 samples"), "{report}");
    // One note, about the two lines; nothing said of the file as a whole.
    let notes: Vec<&str> = report.lines().filter(|l| l.starts_with("note:")).collect();
    assert_eq!(
        notes,
        [
            "note: 2 samples of tasks that had exited before perf read them (pid -1, comm :-1), first at line 5"
        ],
        "{report}"
    );
    assert_eq!(
        sql(
            &bundle,
            "SELECT min(ts_ns), max(ts_ns), min(cpu), sum(weight) FROM stack_sample"
        ),
        "min(stack_sample.ts_ns),max(stack_sample.ts_ns),min(stack_sample.cpu),sum(stack_sample.weight)\n\
         910854000000,911500000000,0,4004004\n"
    );
    assert_eq!(
        sql(
            &bundle,
            "SELECT pid, tid, comm, cpu, ts_ns FROM stack_sample WHERE pid < 0 ORDER BY ts_ns"
        ),
        "pid,tid,comm,cpu,ts_ns\n-1,-1,:-1,1,910854533000\n-1,-1,:-1,0,911500000000\n"
    );
    let folded = ok(&perfpack(["export".as_ref(), bundle.as_os_str()]));
    let mut lines: Vec<&str> = folded.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            ":-1;do_exit 2002002",
            "cc1;main;yyparse 1001001",
            "make;main;clear_page_erms 1001001"
        ]
    );
    // inferno's lines (run on this file: the two samples of live tasks) are among them.
    for l in [
        "cc1;main;yyparse 1001001",
        "make;main;clear_page_erms 1001001",
    ] {
        assert!(lines.contains(&l));
    }
}

#[test]
fn perf_3_headers_without_a_time_and_frames_without_indentation() {
    // perf 3.x printed `java 19983 cycles:` and its frames from the first column.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("perf3.ppk");
    let report = import("perf-script", &data("perf-script-perf3.txt"), &bundle);
    assert!(report.contains("imported 2 samples"), "{report}");
    assert!(!report.contains("could not be parsed"), "{report}");
    assert!(
        report.contains("note: all 2 samples without a time: ts_ns is 0"),
        "{report}"
    );
    let folded = ok(&perfpack(["export".as_ref(), bundle.as_os_str()]));
    let inferno = std::fs::read_to_string(data("perf-script-perf3.inferno.folded")).unwrap();
    assert_eq!(folded, inferno);
    // By hand: six frames under java, root first; the JIT frames lose Java's `L` where the
    // class has a package, as FlameGraph's java rule has it.
    assert!(folded.contains(
        "java;start_thread;LBusy:::main;java/io/PrintStream:::print;arrayOopDesc::base;call_function_single_interrupt;native_write_msr_safe 1\n"
    ));
}

#[test]
fn a_cpp_lambda_is_a_frame_of_its_own() {
    // perf script prints a lambda with the scope that defines it:
    // `run(SCC&, ...)::$_0::operator()(Function&) const`. inferno-collapse-perf 0.12 cuts at the
    // first `(` (`llvm::DevirtSCCRepeatedPass::run` twice, the lambda merged into its parent) and
    // drops `(anonymous namespace)::runPasses`; perfpack keeps both frames.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("lambda.ppk");
    import("perf-script", &data("perf-script-cpp-lambda.txt"), &bundle);
    let folded = ok(&perfpack(["export".as_ref(), bundle.as_os_str()]));
    let run = "llvm::DevirtSCCRepeatedPass::run";
    let scope = "(llvm::LazyCallGraph::SCC&, llvm::AnalysisManager<llvm::LazyCallGraph::SCC, llvm::LazyCallGraph&>&, llvm::LazyCallGraph&, llvm::CGSCCUpdateResult&)";
    let mut lines: Vec<&str> = folded.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            format!("opt;main;(anonymous namespace)::runPasses;{run} 1000000"),
            format!(
                "opt;main;(anonymous namespace)::runPasses;{run};{run}{scope}::$_0::operator() 1000000"
            ),
        ]
    );
}
