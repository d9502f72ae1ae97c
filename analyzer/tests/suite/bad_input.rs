//! Bad bundles (DESIGN §6): each gives one line naming the file and the problem, a non-zero
//! exit, never a panic, and nothing written outside the output path.

use std::path::{Path, PathBuf};

use super::{copy_dir, fails, fixture, ok, perfpack};

/// A writable copy of the `before` fixture.
fn copy_of_fixture(dir: &Path) -> PathBuf {
    let b = dir.join("b.ppk");
    copy_dir(&fixture("before"), &b);
    b
}

fn info_error(bundle: &Path) -> String {
    fails(&perfpack(["info".as_ref(), bundle.as_os_str()]))
}

#[test]
fn truncated_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    let f = b.join("tables/sched_switch/seg-000000.parquet");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let err = info_error(&b);
    assert!(
        err.contains("tables/sched_switch/seg-000000.parquet")
            && err.contains("not a readable Parquet file"),
        "{err}"
    );
}

#[test]
fn file_that_is_not_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    std::fs::write(
        b.join("tables/msr/seg-000000.parquet"),
        b"hello, I am not parquet\n",
    )
    .unwrap();
    let err = info_error(&b);
    assert!(
        err.contains("tables/msr/seg-000000.parquet")
            && err.contains("not a readable Parquet file"),
        "{err}"
    );
}

#[test]
fn table_whose_schema_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    std::fs::copy(
        b.join("tables/pmc/seg-000000.parquet"),
        b.join("tables/frame/seg-000000.parquet"),
    )
    .unwrap();
    let err = info_error(&b);
    assert!(
        err.contains("tables/frame/seg-000000.parquet")
            && err.contains("schema does not match table frame"),
        "{err}"
    );
}

#[test]
fn manifest_of_another_format_version() {
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    let m = std::fs::read_to_string(b.join("manifest.json")).unwrap();
    std::fs::write(
        b.join("manifest.json"),
        m.replace("\"format_version\": 3", "\"format_version\": 1"),
    )
    .unwrap();
    let err = info_error(&b);
    assert!(
        err.contains("manifest.json") && err.contains("format_version 1 is not supported"),
        "{err}"
    );
}

#[test]
fn missing_manifest_and_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    std::fs::remove_file(b.join("manifest.json")).unwrap();
    let err = info_error(&b);
    assert!(
        err.contains("b.ppk") && err.contains("no manifest.json"),
        "{err}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = info_error(&empty);
    assert!(
        err.contains("empty") && err.contains("no manifest.json"),
        "{err}"
    );

    let err = info_error(&dir.path().join("does-not-exist.ppk"));
    assert!(
        err.contains("does-not-exist.ppk") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn manifest_that_is_not_json_or_lists_a_missing_segment() {
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    std::fs::remove_file(b.join("tables/pmc/seg-000000.parquet")).unwrap();
    let err = info_error(&b);
    assert!(
        err.contains("tables/pmc/seg-000000.parquet")
            && err.contains("listed in manifest.json but missing"),
        "{err}"
    );

    std::fs::write(b.join("manifest.json"), "{ not json").unwrap();
    let err = info_error(&b);
    assert!(
        err.contains("manifest.json") && err.contains("not valid JSON"),
        "{err}"
    );
}

/// Packs the fixture and returns the archive bytes.
fn packed_fixture(dir: &Path) -> Vec<u8> {
    let out = dir.join("good.ppk");
    perfpack_schema::pack::pack_dir(&fixture("before"), &out, true).unwrap();
    std::fs::read(out).unwrap()
}

fn replace_all(hay: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= hay.len() {
        if &hay[i..i + from.len()] == from {
            hay[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

#[test]
fn packed_entries_with_traversal_or_absolute_paths_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    for evil in [&b"../etc/passwd"[..], b"/etc/manifest"] {
        let mut bytes = packed_fixture(dir.path());
        // Local header and central directory both name the entry.
        assert_eq!(replace_all(&mut bytes, b"manifest.json", evil), 2);
        let archive = dir.path().join("evil.ppk");
        std::fs::write(&archive, &bytes).unwrap();
        let err = info_error(&archive);
        assert!(
            err.contains("evil.ppk") && err.contains("unsafe entry path"),
            "{err}"
        );
        let out_dir = dir.path().join("out/deeper");
        let err = fails(&perfpack([
            "unpack".as_ref(),
            archive.as_os_str(),
            "-o".as_ref(),
            out_dir.as_os_str(),
        ]));
        assert!(err.contains("unsafe entry path"), "{err}");
        assert!(!dir.path().join("out").exists());
        assert!(!dir.path().join("out/etc").exists() && !dir.path().join("etc").exists());
    }
}

#[test]
fn packed_file_claiming_absurd_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = packed_fixture(dir.path());
    let eocd = bytes.len() - 22;
    assert_eq!(&bytes[eocd..eocd + 4], b"PK\x05\x06");
    let cd = u32::from_le_bytes(bytes[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    // First central entry: compressed and uncompressed sizes at +20 and +24.
    bytes[cd + 20..cd + 28].copy_from_slice(&[0xfe, 0xff, 0xff, 0x7f, 0xfe, 0xff, 0xff, 0x7f]);
    let archive = dir.path().join("absurd.ppk");
    std::fs::write(&archive, &bytes).unwrap();
    let err = info_error(&archive);
    assert!(
        err.contains("absurd.ppk") && err.contains("past the end"),
        "{err}"
    );

    // A central directory claiming more entries than it can hold.
    let mut bytes = packed_fixture(dir.path());
    bytes[eocd + 8..eocd + 12].copy_from_slice(&[0xfe, 0xff, 0xfe, 0xff]);
    std::fs::write(&archive, &bytes).unwrap();
    let err = info_error(&archive);
    assert!(
        err.contains("absurd.ppk") && err.contains("corrupt archive"),
        "{err}"
    );

    // Not an archive at all, and a truncated one.
    std::fs::write(&archive, b"just some text, not a bundle").unwrap();
    let err = info_error(&archive);
    assert!(err.contains("not a packed bundle"), "{err}");
    let good = packed_fixture(dir.path());
    std::fs::write(&archive, &good[..good.len() / 2]).unwrap();
    let err = info_error(&archive);
    assert!(err.contains("absurd.ppk"), "{err}");
}

#[test]
fn compressed_archive_entries_are_refused() {
    let Ok(out) = std::process::Command::new("zip").arg("-v").output() else {
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_TOOLS",
            "`zip` is not installed (apt-get install zip); .ci/run installs it",
        );
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    let archive = dir.path().join("deflated.ppk");
    let out = std::process::Command::new("zip")
        .current_dir(&b)
        .args(["-q", "-r"])
        .arg(&archive)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = info_error(&archive);
    assert!(
        err.contains("deflated.ppk") && err.contains("compressed"),
        "{err}"
    );

    // The same bundle zipped by hand with stored entries (`zip -0`) reads fine.
    let stored = dir.path().join("stored.ppk");
    let out = std::process::Command::new("zip")
        .current_dir(&b)
        .args(["-q", "-0", "-r"])
        .arg(&stored)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    super::ok(&perfpack(["info".as_ref(), stored.as_os_str()]));
}

#[test]
fn pictures_of_damaged_tables_fail_in_one_line_and_write_nothing() {
    for table in ["stack_sample", "callsite", "frame", "block_rq"] {
        let dir = tempfile::tempdir().unwrap();
        let b = copy_of_fixture(dir.path());
        let f = b.join(format!("tables/{table}/seg-000000.parquet"));
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
        let out = dir.path().join("out.svg");
        let cmd = if table == "block_rq" {
            "heatmap"
        } else {
            "flamegraph"
        };
        let args: Vec<&std::ffi::OsStr> =
            vec![cmd.as_ref(), b.as_os_str(), "-o".as_ref(), out.as_os_str()];
        let err = fails(&perfpack(args));
        assert!(
            err.contains(&format!("tables/{table}/seg-000000.parquet"))
                && err.contains("not a readable Parquet file"),
            "{table}: {err}"
        );
        assert!(!out.exists(), "{table}: wrote {}", out.display());
    }
}

#[test]
fn segment_that_is_a_symlink_out_of_the_bundle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    let seg = b.join("tables/frame/seg-000000.parquet");
    // A real Parquet file outside the bundle, so only the link itself can be the reason.
    let outside = dir.path().join("elsewhere.parquet");
    std::fs::rename(&seg, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &seg).unwrap();
    let err = info_error(&b);
    assert!(
        err.contains("seg-000000.parquet") && err.contains("outside the bundle"),
        "{err}"
    );
    // A directory on the way that links out is refused the same way.
    std::fs::create_dir(dir.path().join("two")).unwrap();
    let b2 = copy_of_fixture(&dir.path().join("two"));
    let frames = b2.join("tables/frame");
    let moved = dir.path().join("frames-elsewhere");
    std::fs::rename(&frames, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &frames).unwrap();
    assert!(info_error(&b2).contains("outside the bundle"));
}

#[test]
fn manifest_of_a_hundred_megabytes_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    // Sparse: its size is what is checked, before one byte is read.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(b.join("manifest.json"))
        .unwrap();
    f.set_len(100_000_000).unwrap();
    let err = info_error(&b);
    assert!(
        err.contains("manifest.json") && err.contains("larger than a manifest can be"),
        "{err}"
    );
}

/// The rows of the bundle's first segment of `table`.
fn first_rows(
    b: &Path,
    table: &perfpack_schema::TableDef,
) -> datafusion::arrow::record_batch::RecordBatch {
    perfpack_schema::Bundle::open(b)
        .unwrap()
        .read_table(table)
        .unwrap()
        .remove(0)
}

fn first_callsites(b: &Path) -> datafusion::arrow::record_batch::RecordBatch {
    first_rows(b, perfpack_schema::tables::CALLSITE)
}

/// Writes `batch` as the bundle's first segment of `table`, the manifest's counts made to
/// agree, so that only the rows themselves can be a reason to refuse the bundle.
fn replace_first_segment(
    b: &Path,
    table: &str,
    batch: &datafusion::arrow::record_batch::RecordBatch,
) {
    let f = b.join(format!("tables/{table}/seg-000000.parquet"));
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&f).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    let mpath = b.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    let t = &mut m["tables"][table];
    let (old, new) = (
        t["segments"][0]["rows"].as_i64().unwrap(),
        batch.num_rows() as i64,
    );
    t["segments"][0]["rows"] = new.into();
    t["segments"][0]["bytes"] = std::fs::metadata(&f).unwrap().len().into();
    t["rows"] = (t["rows"].as_i64().unwrap() - old + new).into();
    std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

fn replace_first_callsites(b: &Path, batch: &datafusion::arrow::record_batch::RecordBatch) {
    replace_first_segment(b, "callsite", batch);
}

/// The error of `perfpack flamegraph B -o OUT`, which must fail and write nothing.
fn flamegraph_error(dir: &Path, b: &Path) -> String {
    let out = dir.join("out.svg");
    let err = fails(&perfpack([
        "flamegraph".as_ref(),
        b.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]));
    assert!(!out.exists());
    err
}

#[test]
fn callsite_parents_that_form_a_cycle_fail_in_one_line() {
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::record_batch::RecordBatch;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    // The root callsite 1 gets a parent deep below it: 1 → … → 5 → 1.
    let batch = first_callsites(&b);
    let parent = batch
        .column_by_name("parent_id")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert!(parent.is_null(0), "callsite 1 is a root in the fixture");
    let cyclic: Int64Array = (0..parent.len())
        .map(|i| {
            if i == 0 {
                Some(5)
            } else {
                parent.is_valid(i).then(|| parent.value(i))
            }
        })
        .collect();
    let mut columns = batch.columns().to_vec();
    columns[batch.schema().index_of("parent_id").unwrap()] = Arc::new(cyclic);
    replace_first_callsites(&b, &RecordBatch::try_new(batch.schema(), columns).unwrap());
    let err = flamegraph_error(dir.path(), &b);
    assert!(err.contains("cycle"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_hundred_thousand_deep_callsite_chain_is_refused() {
    use datafusion::arrow::array::{Int32Array, Int64Array};
    use datafusion::arrow::record_batch::RecordBatch;
    use std::sync::Arc;
    const N: i64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    let first = first_callsites(&b);
    let frame = first
        .column_by_name("frame_id")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    // One chain: callsite i's parent is i - 1, all on the same frame.
    let batch = RecordBatch::try_new(
        first.schema(),
        vec![
            Arc::new((1..=N).collect::<Int64Array>()),
            Arc::new(
                (1..=N)
                    .map(|i| (i > 1).then_some(i - 1))
                    .collect::<Int64Array>(),
            ),
            Arc::new(std::iter::repeat_n(frame, N as usize).collect::<Int64Array>()),
            Arc::new((0..N as i32).collect::<Int32Array>()),
        ],
    )
    .unwrap();
    replace_first_callsites(&b, &batch);
    let err = flamegraph_error(dir.path(), &b);
    assert!(
        err.contains("frames deep") && err.contains("refused"),
        "{err}"
    );
    // The `stack` view expands paths only up to 4,096 frames, but expanding them is a join
    // per level: `--timeout` ends it in one line, in bounded memory.
    let started = std::time::Instant::now();
    let (out, rss_mib) = perfpack_measured(&[
        "sql".as_ref(),
        b.as_os_str(),
        "--timeout".as_ref(),
        "3s".as_ref(),
        "--memory-limit".as_ref(),
        "256M".as_ref(),
        "-q".as_ref(),
        "SELECT count(*) AS n, max(array_length(frames)) AS deepest FROM stack".as_ref(),
    ]);
    let secs = started.elapsed().as_secs_f64();
    let err = fails(&out);
    eprintln!("stack view over a {N}-deep chain: {secs:.1} s, peak RSS {rss_mib:.0} MiB: {err}");
    assert!(err.contains("3s") || err.contains("time"), "{err}");
    assert!(secs < 30.0, "{secs} s");
    assert!(rss_mib < 1024.0, "peak RSS {rss_mib} MiB");
}

/// Runs `perfpack` and measures its peak RSS (wait4), in MiB.
// The child is reaped by wait4, which std cannot do, for its rusage.
#[allow(clippy::zombie_processes)]
fn perfpack_measured(args: &[&std::ffi::OsStr]) -> (std::process::Output, f64) {
    use std::io::Read as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_perfpack"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut err_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        err_pipe.read_to_end(&mut stderr).unwrap();
        stderr
    });
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let stderr = reader.join().unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child, not yet reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let status = std::os::unix::process::ExitStatusExt::from_raw(status);
    let out = std::process::Output {
        status,
        stdout,
        stderr,
    };
    (out, usage.ru_maxrss as f64 / 1024.0)
}

/// Rewrites the footer of a Parquet file with `lie` applied to its row groups.
fn lie_in_footer(
    file: &Path,
    lie: impl Fn(parquet::file::metadata::RowGroupMetaData) -> parquet::file::metadata::RowGroupMetaData,
) {
    use parquet::file::metadata::{ParquetMetaDataReader, ParquetMetaDataWriter};
    let bytes = bytes::Bytes::from(std::fs::read(file).unwrap());
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let data_end = bytes.len() - 8 - footer_len as usize;
    let md = ParquetMetaDataReader::new()
        .parse_and_finish(&bytes)
        .unwrap();
    let mut builder = md.into_builder();
    let groups = builder.take_row_groups();
    let mut builder = builder;
    for g in groups {
        builder = builder.add_row_group(lie(g));
    }
    let md = builder.build();
    let mut out = bytes[..data_end].to_vec();
    ParquetMetaDataWriter::new(&mut out, &md).finish().unwrap();
    std::fs::write(file, out).unwrap();
}

#[test]
fn parquet_footers_claiming_absurd_row_groups_and_pages_are_refused_in_bounded_memory() {
    use parquet::file::metadata::RowGroupMetaData;
    const HUGE: i64 = 1 << 40;
    type Lie = fn(RowGroupMetaData) -> RowGroupMetaData;
    let lies: [(&str, Lie); 3] = [
        ("row group of 2^40 rows", |g| {
            let mut b = g.into_builder();
            let cols = b.take_columns();
            b.set_num_rows(HUGE)
                .set_column_metadata(cols)
                .build()
                .unwrap()
        }),
        ("column chunks of 2^40 bytes", |g| {
            let mut b = g.into_builder();
            let cols = b
                .take_columns()
                .into_iter()
                .map(|c| {
                    c.into_builder()
                        .set_total_compressed_size(HUGE)
                        .set_total_uncompressed_size(HUGE)
                        .build()
                        .unwrap()
                })
                .collect();
            b.set_column_metadata(cols).build().unwrap()
        }),
        ("data pages past the end of the file", |g| {
            let mut b = g.into_builder();
            let cols = b
                .take_columns()
                .into_iter()
                .map(|c| c.into_builder().set_data_page_offset(HUGE).build().unwrap())
                .collect();
            b.set_column_metadata(cols).build().unwrap()
        }),
    ];
    let cases = lies
        .iter()
        .map(|&(w, l)| (w, l, false))
        .chain([(lies[0].0, lies[0].1, true)]);
    for (what, lie, agree) in cases {
        let dir = tempfile::tempdir().unwrap();
        let b = copy_of_fixture(dir.path());
        let seg = b.join("tables/stack_sample/seg-000000.parquet");
        lie_in_footer(&seg, lie);
        if what.starts_with("row group") && agree {
            // The manifest tells the same lie, so the row count check passes.
            let m = b.join("manifest.json");
            let mut v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
            let t = &mut v["tables"]["stack_sample"];
            let old = t["segments"][0]["rows"].as_u64().unwrap();
            t["segments"][0]["rows"] = HUGE.into();
            t["rows"] = (t["rows"].as_u64().unwrap() - old + HUGE as u64).into();
            std::fs::write(&m, serde_json::to_string(&v).unwrap()).unwrap();
        }
        let b_os = b.as_os_str();
        let svg = dir.path().join("cpu.svg");
        let runs: [(&str, Vec<&std::ffi::OsStr>); 3] = [
            ("info", vec!["info".as_ref(), b_os]),
            (
                "sql",
                vec![
                    "sql".as_ref(),
                    b_os,
                    "-q".as_ref(),
                    "SELECT count(*), sum(weight) FROM stack_sample".as_ref(),
                ],
            ),
            (
                "flamegraph",
                vec!["flamegraph".as_ref(), b_os, "-o".as_ref(), svg.as_os_str()],
            ),
        ];
        for (cmd, args) in runs {
            let (out, rss_mib) = perfpack_measured(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = if agree {
                format!("{what} (manifest agrees)")
            } else {
                what.to_string()
            };
            eprintln!(
                "{what}: {cmd}: exit {:?}, peak RSS {rss_mib:.0} MiB: {}",
                out.status.code(),
                stderr.trim()
            );
            assert!(
                !stderr.contains("panicked") && !stderr.contains("internal error"),
                "{what}: {cmd}: {stderr}"
            );
            assert!(rss_mib < 512.0, "{what}: {cmd}: peak RSS {rss_mib} MiB");
            // Refused in one line naming the file, or read correctly: a lie that readers do
            // not act on (they find chunks by their pages) is harmless.
            if !out.status.success() {
                let err = fails(&out);
                assert!(
                    err.contains("stack_sample/seg-000000.parquet"),
                    "{what}: {cmd}: {err}"
                );
                assert!(!svg.exists(), "{what}: a flame graph was written");
            } else if cmd == "sql" {
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(text.contains("3980"), "{what}: {cmd}: {text}");
            }
        }
    }
}

#[test]
fn ten_megabyte_names_with_control_characters_and_script_are_bounded_and_escaped() {
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::arrow::record_batch::RecordBatch;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    let frames = first_rows(&b, perfpack_schema::tables::FRAME);
    let hostile = "<script>alert(1)</script>\u{1b}[31m\u{7}\r\n\u{0}";
    let huge = format!("{hostile}{}", "A".repeat(10 << 20));
    let (name_i, module_i) = (
        frames.schema().index_of("name").unwrap(),
        frames.schema().index_of("module").unwrap(),
    );
    let names = frames
        .column(name_i)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    // Every frame's name and module carry the hostile text; the first name is 10 MB long.
    let names: StringArray = (0..names.len())
        .map(|i| {
            Some(if i == 0 {
                huge.clone()
            } else {
                format!("{}{hostile}", names.value(i))
            })
        })
        .collect();
    let modules: StringArray = (0..frames.num_rows()).map(|_| Some(hostile)).collect();
    let mut cols = frames.columns().to_vec();
    cols[name_i] = Arc::new(names);
    cols[module_i] = Arc::new(modules);
    replace_first_segment(
        &b,
        "frame",
        &RecordBatch::try_new(frames.schema(), cols).unwrap(),
    );

    let svg = dir.path().join("cpu.svg");
    let html = dir.path().join("r.html");
    let runs: [(&str, Vec<&std::ffi::OsStr>); 4] = [
        ("info", vec!["info".as_ref(), b.as_os_str()]),
        (
            "sql",
            vec![
                "sql".as_ref(),
                b.as_os_str(),
                "--format".as_ref(),
                "csv".as_ref(),
                "-q".as_ref(),
                "SELECT max(length(name)) AS longest FROM frame".as_ref(),
            ],
        ),
        (
            "flamegraph",
            vec![
                "flamegraph".as_ref(),
                b.as_os_str(),
                "-o".as_ref(),
                svg.as_os_str(),
            ],
        ),
        (
            "report",
            vec![
                "report".as_ref(),
                b.as_os_str(),
                "-o".as_ref(),
                html.as_os_str(),
            ],
        ),
    ];
    for (cmd, args) in runs {
        let started = std::time::Instant::now();
        let (out, rss_mib) = perfpack_measured(&args);
        eprintln!(
            "10 MB names: {cmd}: exit {:?}, {:.1} s, peak RSS {rss_mib:.0} MiB",
            out.status.code(),
            started.elapsed().as_secs_f64()
        );
        let stdout = ok(&out);
        assert!(rss_mib < 1024.0, "{cmd}: peak RSS {rss_mib} MiB");
        if cmd == "sql" {
            assert!(
                stdout.contains(&huge.chars().count().to_string()),
                "{stdout}"
            );
        }
    }
    for page in [
        std::fs::read_to_string(&svg).unwrap(),
        std::fs::read_to_string(&html).unwrap(),
    ] {
        assert!(!page.contains("<script>alert"), "raw <script> written");
        assert!(
            !page.contains('\u{1b}') && !page.contains('\u{7}') && !page.contains('\u{0}'),
            "raw control characters written"
        );
    }
}

#[test]
fn heatmap_sql_with_a_bundle_column_that_is_not_a_string_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h.svg");
    let err = fails(&perfpack([
        "heatmap".as_ref(),
        fixture("basic").as_os_str(),
        "--sql".as_ref(),
        "SELECT 1 AS bundle, CAST(2 AS BIGINT) AS ts_ns, CAST(3 AS BIGINT) AS latency_ns".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]));
    assert!(err.contains("bundle is Int64, not a string"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!out.exists());
}

#[test]
fn absurd_manifest_clocks_are_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let b = copy_of_fixture(dir.path());
    let mpath = b.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["clocks"]["start"]["monotonic_ns"] = (i64::MIN + 1_000_000_000).into();
    std::fs::write(&mpath, serde_json::to_string(&m).unwrap()).unwrap();
    for cmd in ["info", "flamegraph", "report"] {
        let out = dir.path().join("out");
        let mut args: Vec<&std::ffi::OsStr> = vec![cmd.as_ref(), b.as_os_str()];
        if cmd != "info" {
            args.extend(["-o".as_ref(), out.as_os_str()]);
        }
        let err = fails(&perfpack(args));
        assert!(
            err.contains("manifest.json")
                && err.contains("clocks.start.monotonic_ns is -9223372035854775808"),
            "{cmd}: {err}"
        );
        assert!(!out.exists(), "{cmd}");
    }
}

/// The first segment of `table` with its integer column `column` rewritten by `f` (row
/// index, old value).
fn edit_ints<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
    b: &Path,
    table: &perfpack_schema::TableDef,
    column: &str,
    f: impl Fn(usize, Option<T::Native>) -> Option<T::Native>,
) {
    edit(b, table, column, |c| {
        use datafusion::arrow::array::{Array, AsArray, PrimitiveArray};
        let c = c.as_primitive::<T>();
        let out: PrimitiveArray<T> = (0..c.len())
            .map(|i| f(i, c.is_valid(i).then(|| c.value(i))))
            .collect();
        std::sync::Arc::new(out)
    });
}

fn edit_i64(
    b: &Path,
    table: &perfpack_schema::TableDef,
    column: &str,
    f: impl Fn(usize, Option<i64>) -> Option<i64>,
) {
    edit_ints::<datafusion::arrow::datatypes::Int64Type>(b, table, column, f);
}

fn edit_i32(
    b: &Path,
    table: &perfpack_schema::TableDef,
    column: &str,
    f: impl Fn(usize, Option<i32>) -> Option<i32>,
) {
    edit_ints::<datafusion::arrow::datatypes::Int32Type>(b, table, column, f);
}

fn edit(
    b: &Path,
    table: &perfpack_schema::TableDef,
    column: &str,
    f: impl Fn(&datafusion::arrow::array::ArrayRef) -> datafusion::arrow::array::ArrayRef,
) {
    let batch = first_rows(b, table);
    let i = batch.schema().index_of(column).unwrap();
    let mut columns = batch.columns().to_vec();
    columns[i] = f(&columns[i]);
    let batch =
        datafusion::arrow::record_batch::RecordBatch::try_new(batch.schema(), columns).unwrap();
    replace_first_segment(b, table.name, &batch);
}

/// Bytes of a segment's data overwritten in its middle, far from the footer.
fn scribble(b: &Path, table: &str) {
    let f = b.join(format!("tables/{table}/seg-000000.parquet"));
    let mut bytes = std::fs::read(&f).unwrap();
    let n = bytes.len();
    for (k, byte) in bytes[n / 4..n / 2].iter_mut().enumerate() {
        *byte = (k as u8).wrapping_mul(167) ^ 0x5a;
    }
    std::fs::write(&f, bytes).unwrap();
}

#[test]
fn every_subcommand_over_every_hostile_bundle_fails_in_one_line_and_never_panics() {
    use perfpack_schema::tables;
    type Craft = Box<dyn Fn(&Path)>;
    let hostile: Vec<(&str, Craft)> = vec![
        (
            "corrupt stack_sample pages",
            Box::new(|b| scribble(b, "stack_sample")),
        ),
        (
            "corrupt callsite pages",
            Box::new(|b| scribble(b, "callsite")),
        ),
        (
            "corrupt block_rq pages",
            Box::new(|b| scribble(b, "block_rq")),
        ),
        (
            "corrupt frame footer",
            Box::new(|b| {
                let f = b.join("tables/frame/seg-000000.parquet");
                let mut bytes = std::fs::read(&f).unwrap();
                let n = bytes.len();
                for x in &mut bytes[n - 40..n - 8] {
                    *x ^= 0xff;
                }
                std::fs::write(&f, bytes).unwrap();
            }),
        ),
        (
            "samples on callsites that do not exist",
            Box::new(|b| {
                edit_i64(b, tables::STACK_SAMPLE, "callsite_id", |i, v| {
                    if i % 2 == 0 { Some(9_999_999) } else { v }
                })
            }),
        ),
        (
            "negative callsite ids",
            Box::new(|b| edit_i64(b, tables::STACK_SAMPLE, "callsite_id", |_, v| v.map(|v| -v))),
        ),
        (
            "callsites on frames that do not exist",
            Box::new(|b| edit_i64(b, tables::CALLSITE, "frame_id", |_, _| Some(123_456_789))),
        ),
        (
            "callsites whose parents do not exist",
            Box::new(|b| {
                edit_i64(b, tables::CALLSITE, "parent_id", |_, v| {
                    v.map(|_| 987_654_321)
                })
            }),
        ),
        (
            "a callsite cycle",
            Box::new(|b| {
                edit_i64(b, tables::CALLSITE, "parent_id", |i, v| {
                    if i == 0 { Some(5) } else { v }
                })
            }),
        ),
        (
            "extreme sample times",
            Box::new(|b| {
                edit_i64(b, tables::STACK_SAMPLE, "ts_ns", |i, _| {
                    Some(if i % 2 == 0 { i64::MAX } else { i64::MIN })
                })
            }),
        ),
        (
            "extreme cpus",
            Box::new(|b| {
                edit_i32(b, tables::STACK_SAMPLE, "cpu", |i, _| {
                    Some(if i % 2 == 0 { i32::MAX } else { i32::MIN })
                })
            }),
        ),
        (
            "extreme block times",
            Box::new(|b| {
                edit_i64(b, tables::BLOCK_RQ, "ts_ns", |i, _| {
                    Some(if i % 3 == 0 {
                        i64::MAX
                    } else {
                        i64::MIN + i as i64
                    })
                })
            }),
        ),
        (
            "extreme switch times",
            Box::new(|b| {
                edit_i64(b, tables::SCHED_SWITCH, "ts_ns", |i, _| {
                    Some(if i % 2 == 0 { i64::MAX } else { 0 })
                })
            }),
        ),
    ];
    let mut panics = Vec::new();
    for (what, craft) in &hostile {
        let dir = tempfile::tempdir().unwrap();
        let b = copy_of_fixture(dir.path());
        craft(&b);
        let o = |name: &str| dir.path().join(name).display().to_string();
        let bs = b.display().to_string();
        let commands: Vec<Vec<String>> = [
            vec!["info", &bs],
            vec![
                "sql",
                &bs,
                "-q",
                "SELECT COUNT(*), MIN(ts_ns), MAX(cpu) FROM stack_sample",
            ],
            vec!["sql", &bs, "stack"],
            vec!["sql", &bs, "iosnoop"],
            vec!["sql", &bs, "runqlat"],
            vec!["flamegraph", &bs, "-o", &o("f.svg")],
            vec!["flamegraph", &bs, "--kind", "offcpu", "-o", &o("o.svg")],
            vec!["heatmap", &bs, "-o", &o("h.svg")],
            vec!["heatmap", &bs, "--source", "samples", "-o", &o("s.svg")],
            vec!["heatmap", &bs, "--source", "process", "-o", &o("p.svg")],
            vec!["latency", &bs],
            vec!["latency", &bs, "--source", "runq"],
            vec!["compare", &bs, &bs],
            vec!["correlate", &bs],
            vec!["fleet", &bs, &bs],
            vec!["report", &bs, "-o", &o("r.html")],
            vec!["redact", &bs, "-o", &o("red.ppk")],
            vec!["redact", &bs, "--check"],
            vec!["export", &bs],
            vec!["export", &bs, "--format", "pprof", "-o", &o("p.pb")],
            vec![
                "export",
                &bs,
                "--format",
                "perfetto-json",
                "-o",
                &o("p.json"),
            ],
            vec!["export", &bs, "--format", "firefox", "-o", &o("f.json.gz")],
            vec!["export", &bs, "--dataset", &o("ds")],
            vec!["pack", &bs, "-o", &o("packed.ppk")],
        ]
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect();
        for args in commands {
            let out = perfpack(&args);
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            let code = out.status.code();
            if code == Some(101) || err.contains("internal error") || err.contains("panicked") {
                panics.push(format!("{what}: perfpack {}: {err}", args.join(" ")));
                continue;
            }
            if !out.status.success() {
                let lines: Vec<&str> = err.lines().filter(|l| !l.contains("warning:")).collect();
                assert!(
                    matches!(code, Some(1 | 2)) && lines.len() == 1,
                    "{what}: perfpack {}: exit {code:?}: {err}",
                    args.join(" ")
                );
            }
        }
    }
    assert!(
        panics.is_empty(),
        "{} panics:\n{}",
        panics.len(),
        panics.join("\n")
    );
}

/// Makes a FIFO at `path` (coreutils' `mkfifo`: present wherever the tests build).
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Reads the FIFO at `path` to its end in a thread; the bytes a writer put through it.
fn drain(path: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || std::fs::read(path).expect("FIFO reads"))
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false)
}

/// `-o /dev/null` (any device or FIFO) is written into, never renamed over: run as root, the
/// temporary-file-and-rename of outputs replaced the null device with a regular file, and
/// the next program to read /dev/null (cargo's target probe) failed. Pictures and query
/// results go through the FIFO byte for byte as they would go to a file; commands that
/// write bundles refuse it in one line and leave it a FIFO.
#[test]
fn outputs_into_a_fifo_leave_it_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out.fifo");
    mkfifo(&fifo);
    let basic = fixture("basic");

    let file = dir.path().join("flame.svg");
    ok(&perfpack([
        "flamegraph".as_ref(),
        basic.as_os_str(),
        "-o".as_ref(),
        file.as_os_str(),
    ]));
    let reader = drain(&fifo);
    ok(&perfpack([
        "flamegraph".as_ref(),
        basic.as_os_str(),
        "-o".as_ref(),
        fifo.as_os_str(),
    ]));
    assert_eq!(reader.join().unwrap(), std::fs::read(&file).unwrap());
    assert!(is_fifo(&fifo), "flamegraph replaced the FIFO");

    let reader = drain(&fifo);
    ok(&perfpack([
        "sql".as_ref(),
        basic.as_os_str(),
        "--format".as_ref(),
        "csv".as_ref(),
        "-q".as_ref(),
        "SELECT 6 * 7 AS answer".as_ref(),
        "-o".as_ref(),
        fifo.as_os_str(),
    ]));
    assert_eq!(
        String::from_utf8(reader.join().unwrap()).unwrap(),
        "answer\n42\n"
    );
    assert!(is_fifo(&fifo), "sql -o replaced the FIFO");

    // Bundles: refused whether or not --force is given (nothing opens the FIFO, so no reader).
    for force in [false, true] {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "pack".as_ref(),
            basic.as_os_str(),
            "-o".as_ref(),
            fifo.as_os_str(),
        ];
        if force {
            args.push("--force".as_ref());
        }
        let err = fails(&perfpack(&args));
        assert!(
            err.contains("out.fifo") && err.contains("not a regular file"),
            "{err}"
        );
        assert!(is_fifo(&fifo), "pack replaced the FIFO");
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/import/perf-script-cpu-clock.txt");
    let err = fails(&perfpack([
        "import".as_ref(),
        "perf-script".as_ref(),
        script.as_os_str(),
        "-o".as_ref(),
        fifo.as_os_str(),
        "--force".as_ref(),
    ]));
    assert!(err.contains("out.fifo") && err.contains("FIFO"), "{err}");
    assert!(is_fifo(&fifo), "import replaced the FIFO");
}
