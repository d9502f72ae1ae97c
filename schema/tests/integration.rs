//! Integration tests of the bundle format: write, read back, pack, and refuse bad bundles.

use perfpack_schema::manifest::{ClockSnapshot, Host, RecorderInfo, State};
use perfpack_schema::tables::{
    self, FtraceEvent, FtraceEventBuilder, StackSample, StackSampleBuilder,
};
use perfpack_schema::{Bundle, BundleWriter, Manifest, WriterOptions, pack};

fn manifest() -> Manifest {
    Manifest::new(
        "test".into(),
        RecorderInfo::default(),
        Host {
            hostname: "h".into(),
            n_cpus: 2,
            ..Host::default()
        },
        ClockSnapshot {
            realtime_ns: 1_795_874_103_000_000_000,
            monotonic_ns: 1_000,
            boottime_ns: 2_000,
            tsc: None,
        },
    )
}

/// The end of the recording of [`manifest`], ten seconds after its start.
fn end() -> ClockSnapshot {
    ClockSnapshot {
        realtime_ns: 1_795_874_113_000_000_000,
        monotonic_ns: 10_000_001_000,
        boottime_ns: 10_000_002_000,
        tsc: None,
    }
}

/// A user frame with nothing but its id.
fn frame(frame_id: i64) -> tables::Frame<'static> {
    tables::Frame {
        frame_id,
        name: "f",
        module: None,
        build_id: None,
        rel_pc: None,
        kind: "user",
        file: None,
        line: None,
    }
}

fn sample(ts_ns: i64, cpu: i32) -> StackSample<'static> {
    StackSample {
        ts_ns,
        cpu,
        pid: 7,
        tid: 8,
        comm: "worker",
        event: "cpu-clock",
        weight: 10_101_010,
        callsite_id: Some(1),
        unwind: None,
        truncated: None,
    }
}

#[test]
fn write_sorts_segments_and_reads_back_packed_and_unpacked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("b.ppk");
    let mut w = BundleWriter::create(&root, manifest(), WriterOptions::default()).unwrap();
    let mut b = StackSampleBuilder::default();
    for ts in [30, 10, 20] {
        b.push(&sample(ts, 0));
    }
    w.append(tables::STACK_SAMPLE, b.finish()).unwrap();
    let mut f = FtraceEventBuilder::default();
    f.push(&FtraceEvent {
        ts_ns: 5,
        cpu: 1,
        pid: None,
        tid: 3,
        comm: Some("x"),
        event: "sched:sched_switch",
        int_fields: &[("prev_pid", 3), ("next_pid", 0)],
        str_fields: &[("prev_comm", "x")],
    });
    w.append(tables::FTRACE_EVENT, f.finish()).unwrap();
    w.close_segment().unwrap();
    b.push(&sample(40, 1));
    w.append(tables::STACK_SAMPLE, b.finish()).unwrap();
    let m = w.finish(State::Complete, end()).unwrap();
    assert_eq!(m.tables["stack_sample"].rows, 4);
    assert_eq!(m.tables["stack_sample"].segments.len(), 2);
    assert_eq!(m.time_range_ns(), Some((5, 40)));

    let packed = dir.path().join("b-packed.ppk");
    pack::pack_dir(&root, &packed, false).unwrap();
    for path in [&root, &packed] {
        let bundle = Bundle::open(path).unwrap();
        bundle.verify().unwrap();
        assert!(bundle.warnings().is_empty(), "{:?}", bundle.warnings());
        let batches = bundle.read_table(tables::STACK_SAMPLE).unwrap();
        let ts: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ts, vec![10, 20, 30, 40]);
        // Every table exists, even the empty ones.
        for t in tables::ALL {
            assert_eq!(bundle.segments(t).len(), 2, "{}", t.name);
        }
        assert_eq!(
            bundle.read_table(tables::FTRACE_EVENT).unwrap()[0].num_rows(),
            1
        );
    }

    let out = dir.path().join("unpacked");
    pack::unpack(&packed, &out).unwrap();
    for entry in ["manifest.json", "tables/stack_sample/seg-000001.parquet"] {
        assert_eq!(
            std::fs::read(root.join(entry)).unwrap(),
            std::fs::read(out.join(entry)).unwrap()
        );
    }
}

#[test]
fn refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("b.ppk");
    std::fs::create_dir(&root).unwrap();
    let err = BundleWriter::create(&root, manifest(), WriterOptions::default()).unwrap_err();
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
}

#[test]
fn rejects_batches_of_another_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut w =
        BundleWriter::create(dir.path().join("b"), manifest(), WriterOptions::default()).unwrap();
    let mut b = StackSampleBuilder::default();
    b.push(&sample(1, 0));
    assert!(w.append(tables::FRAME, b.finish()).is_err());
}

#[test]
fn ring_mode_drops_old_event_segments_but_keeps_dictionaries() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ring.ppk");
    let mut w = BundleWriter::create(&root, manifest(), WriterOptions::default()).unwrap();
    let mut frames = tables::FrameBuilder::default();
    let mut b = StackSampleBuilder::default();
    for seg in 0..3 {
        frames.push(&frame(seg));
        w.append(tables::FRAME, frames.finish()).unwrap();
        b.push(&sample(seg * 10, 0));
        w.append(tables::STACK_SAMPLE, b.finish()).unwrap();
        w.close_segment().unwrap();
    }
    let freed = w.drop_segments_before(2).unwrap();
    assert!(freed > 0);
    w.finish(State::Complete, end()).unwrap();
    let bundle = Bundle::open(&root).unwrap();
    bundle.verify().unwrap();
    assert!(bundle.warnings().is_empty(), "{:?}", bundle.warnings());
    assert_eq!(bundle.segments(tables::STACK_SAMPLE).len(), 1);
    assert_eq!(bundle.manifest().tables["stack_sample"].rows, 1);
    assert_eq!(bundle.segments(tables::FRAME).len(), 3);
    assert!(!root.join("tables/stack_sample/seg-000000.parquet").exists());
    assert!(root.join("tables/frame/seg-000000.parquet").exists());
}

/// Ring compaction: the kept rows of old dictionary segments move into the next segment, and
/// the old segments leave the manifest in the same write; until then nothing changes.
#[test]
fn replacing_dictionary_segments_moves_their_kept_rows_into_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("compact.ppk");
    let mut w = BundleWriter::create(&root, manifest(), WriterOptions::default()).unwrap();
    let mut frames = tables::FrameBuilder::default();
    for seg in 0..3i64 {
        for i in 0..4 {
            frames.push(&frame(seg * 10 + i));
        }
        w.append(tables::FRAME, frames.finish()).unwrap();
        w.close_segment().unwrap();
    }
    let keep_even = |b: &arrow_array::RecordBatch, i: usize| {
        let ids = b.column_by_name("frame_id").unwrap();
        let ids = ids
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        ids.value(i) % 2 == 0
    };
    let rows = w.closed_rows(tables::FRAME, 2).unwrap();
    let dropped = w.replace_closed(tables::FRAME, 2, rows, keep_even).unwrap();
    assert_eq!(dropped, 4);
    // Not yet applied: the manifest still lists the three segments.
    assert_eq!(w.manifest().tables["frame"].segments.len(), 3);
    w.close_segment().unwrap();
    let segs: Vec<u32> = w.manifest().tables["frame"]
        .segments
        .iter()
        .map(|s| s.index)
        .collect();
    assert_eq!(segs, [2, 3]);
    assert_eq!(w.manifest().tables["frame"].rows, 8);
    assert!(!root.join("tables/frame/seg-000000.parquet").exists());
    w.finish(State::Complete, end()).unwrap();
    let bundle = Bundle::open(&root).unwrap();
    bundle.verify().unwrap();
    let mut ids: Vec<i64> = bundle
        .read_table(tables::FRAME)
        .unwrap()
        .iter()
        .flat_map(|b| {
            let ids = b.column_by_name("frame_id").unwrap();
            let ids = ids
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap();
            ids.values().to_vec()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 2, 10, 12, 20, 21, 22, 23]);
}

/// Fuzzers' packed bundles whose data pages lie in ways parquet 59's decoders panicked on:
/// a dictionary-encoded page with no dictionary page before it, bit-packed definition levels
/// claiming more bytes than the page holds, dictionary indices said to be 33+ bits wide, and a
/// BYTE_STREAM_SPLIT page whose streams do not add up (an encoding perfpack never writes), and
/// a DELTA_BINARY_PACKED header that counts no values, a dictionary page of no values with data
/// in it, a dictionary-encoded page with no values section at all, and a DELTA header whose
/// first value runs past 64 bits.
/// Verifying reads only page headers and passes or fails on its own terms; decoding is
/// refused with the file and the column named.
#[test]
fn refuses_data_pages_that_parquet_would_panic_on() {
    for (input, why) in [
        // Refused from the footer now, before any page is read.
        (
            "dictionary-page-missing",
            "is dictionary-encoded but has no dictionary page",
        ),
        (
            "def-levels-past-data",
            "definition levels that run past their data",
        ),
        (
            "dictionary-index-width",
            "dictionary indices wider than 32 bits",
        ),
        ("byte-stream-split", "which perfpack does not write"),
        (
            "delta-count-zero",
            "DELTA_BINARY_PACKED page whose header does not count",
        ),
        (
            "dictionary-of-nothing",
            "a dictionary page of no values that holds data",
        ),
        (
            "dictionary-index-width-missing",
            "a dictionary-encoded page without its index width",
        ),
        (
            "delta-first-value-too-long",
            "DELTA_BINARY_PACKED page whose header does not count",
        ),
    ] {
        let input = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/packed")
            .join(input);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages.ppk");
        std::fs::copy(&input, &path).unwrap();
        let bundle = Bundle::open(&path).unwrap();
        let errors: Vec<String> = tables::ALL
            .iter()
            .filter_map(|t| bundle.read_table(t).err())
            .map(|e| e.to_string())
            .collect();
        let err = errors
            .iter()
            .find(|e| e.contains(why))
            .unwrap_or_else(|| panic!("{}: no table refused it: {errors:?}", input.display()));
        assert!(err.contains("pages.ppk") && err.contains("column"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn refuses_clocks_no_machine_produces_naming_the_field() {
    let json = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&manifest().to_json()).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let path = std::path::Path::new("b.ppk/manifest.json");
    assert!(Manifest::parse(&json(&|_| {}), path).is_ok());
    type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 5] = [
        ("clocks.start.monotonic_ns is -9223372036854775808", &|v| {
            v["clocks"]["start"]["monotonic_ns"] = i64::MIN.into()
        }),
        ("clocks.start.realtime_ns is 9223372036854775807", &|v| {
            v["clocks"]["start"]["realtime_ns"] = i64::MAX.into()
        }),
        ("clocks.end.boottime_ns is -1", &|v| {
            v["clocks"]["end"] = serde_json::json!({
                "realtime_ns": 1_795_874_104_000_000_000i64, "monotonic_ns": 2_000,
                "boottime_ns": -1, "tsc": null})
        }),
        (
            "clocks.end.monotonic_ns (10) is before clocks.start.monotonic_ns (1000)",
            &|v| {
                v["clocks"]["end"] = serde_json::json!({
                "realtime_ns": 1_795_874_104_000_000_000i64, "monotonic_ns": 10,
                "boottime_ns": 20, "tsc": null})
            },
        ),
        ("segment_ns is -5", &|v| v["segment_ns"] = (-5).into()),
    ];
    for (want, edit) in cases {
        let err = Manifest::parse(&json(edit), path).unwrap_err().to_string();
        assert!(
            err.contains("b.ppk/manifest.json") && err.contains(want),
            "{want}: {err}"
        );
    }
}
