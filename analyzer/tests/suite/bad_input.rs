//! Bad bundles (DESIGN §6): each gives one line naming the file and the problem, a non-zero
//! exit, never a panic, and nothing written outside the output path.

use std::path::{Path, PathBuf};

use super::{copy_dir, fails, fixture, perfpack};

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
        m.replace("\"format_version\": 2", "\"format_version\": 1"),
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
        eprintln!("SKIPPED: `zip` is not installed (apt-get install zip); .ci/run installs it");
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

/// The rows of the bundle's first callsite segment.
fn first_callsites(b: &Path) -> datafusion::arrow::record_batch::RecordBatch {
    perfpack_schema::Bundle::open(b)
        .unwrap()
        .read_table(perfpack_schema::tables::CALLSITE)
        .unwrap()
        .remove(0)
}

/// Writes `batch` as the bundle's first callsite segment, the manifest's counts made to agree,
/// so that only the rows themselves can be a reason to refuse the bundle.
fn replace_first_callsites(b: &Path, batch: &datafusion::arrow::record_batch::RecordBatch) {
    let f = b.join("tables/callsite/seg-000000.parquet");
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
    let t = &mut m["tables"]["callsite"];
    let (old, new) = (
        t["segments"][0]["rows"].as_i64().unwrap(),
        batch.num_rows() as i64,
    );
    t["segments"][0]["rows"] = new.into();
    t["segments"][0]["bytes"] = std::fs::metadata(&f).unwrap().len().into();
    t["rows"] = (t["rows"].as_i64().unwrap() - old + new).into();
    std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
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
}
