//! Helpers of the recorder's live tests: running the recorder, checking privileges, and reading
//! a recorded bundle's stacks back as frame-name paths.

mod ftrace;
mod live;
mod unwind;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int32Type, Int64Type};
use perfpack_schema::{Bundle, tables};

pub const RECORDER: &str = env!("CARGO_BIN_EXE_perfpack-record");
pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_perfpack-test-workload");

/// Why live recording cannot run here, if it cannot (the test then says SKIPPED and why).
pub fn cannot_record() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: system-wide perf_event_open needs root or CAP_PERFMON".into());
    }
    let out = Command::new(RECORDER)
        .args(["check", "--format", "json"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let sampling = v
        .as_array()?
        .iter()
        .find(|c| c["what"] == "stack sampling")?;
    (sampling["status"] != "yes")
        .then(|| format!("stack sampling unavailable: {}", sampling["detail"]))
}

/// Skips a live test where this machine cannot record, saying why; fails instead when
/// `PERFPACK_REQUIRE_RECORDING=1` (CI sets it), so a CI machine that cannot record is seen.
macro_rules! require_recording {
    () => {
        if let Some(why) = $crate::suite::cannot_record() {
            perfpack_schema::skip::skip("PERFPACK_REQUIRE_RECORDING", &why);
            return;
        }
    };
}
pub(crate) use require_recording;

/// Held by the live tests that load the machine (the exec storm, the CPU burners of the
/// unwinding tests) or measure sampling rates or I/O pairs, so that they do not run at the same
/// time: under the storm, the budget test's sampling-rate
/// figures do not hold (an interaction not yet understood; see the issue note).
pub static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the recorder with these arguments.
pub fn record(args: &[&str]) -> Output {
    Command::new(RECORDER)
        .args(args)
        .output()
        .expect("perfpack-record runs")
}

/// The manifest's source `name`.
pub fn source_of(bundle: &Path, name: &str) -> serde_json::Value {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).unwrap())
            .unwrap();
    m["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no source {name}"))
        .clone()
}

/// A column of a batch, by name and type (the tests' one way to read a table).
pub fn col<'a, T: arrow_array::ArrowPrimitiveType>(
    b: &'a arrow_array::RecordBatch,
    name: &str,
) -> &'a arrow_array::PrimitiveArray<T> {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_primitive::<T>()
}

/// A string column of a batch.
pub fn str_col<'a>(b: &'a arrow_array::RecordBatch, name: &str) -> &'a arrow_array::StringArray {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_string::<i32>()
}

/// One stack sample, with its frames root first.
#[derive(Debug)]
pub struct Sample {
    pub ts_ns: i64,
    pub pid: i32,
    pub tid: i32,
    pub comm: String,
    pub event: String,
    /// `fp`, `dwarf`, `mixed`, `kernel`, or empty when null.
    pub unwind: String,
    pub truncated: Option<bool>,
    /// (name, kind) root first.
    pub frames: Vec<(String, String)>,
}

/// Every stack sample of a bundle with its symbolized path.
pub fn samples(bundle: &Path) -> Vec<Sample> {
    let b = Bundle::open(bundle).expect("bundle opens");
    b.verify().expect("bundle verifies");
    let mut frames: HashMap<i64, (String, String)> = HashMap::new();
    for batch in b.read_table(tables::FRAME).unwrap() {
        let id = col::<Int64Type>(&batch, "frame_id");
        let name = str_col(&batch, "name");
        let kind = str_col(&batch, "kind");
        for i in 0..batch.num_rows() {
            frames.insert(
                id.value(i),
                (name.value(i).to_string(), kind.value(i).to_string()),
            );
        }
    }
    let mut callsites: HashMap<i64, (Option<i64>, i64)> = HashMap::new();
    for batch in b.read_table(tables::CALLSITE).unwrap() {
        let id = col::<Int64Type>(&batch, "callsite_id");
        let parent = col::<Int64Type>(&batch, "parent_id");
        let frame = col::<Int64Type>(&batch, "frame_id");
        for i in 0..batch.num_rows() {
            let p = (!arrow_array::Array::is_null(parent, i)).then(|| parent.value(i));
            callsites.insert(id.value(i), (p, frame.value(i)));
        }
    }
    let mut out = Vec::new();
    for batch in b.read_table(tables::STACK_SAMPLE).unwrap() {
        let pid = col::<Int32Type>(&batch, "pid");
        let comm = str_col(&batch, "comm");
        let event = str_col(&batch, "event");
        let unwind = str_col(&batch, "unwind");
        let truncated = batch.column_by_name("truncated").unwrap().as_boolean();
        let ts = col::<Int64Type>(&batch, "ts_ns");
        let tid = col::<Int32Type>(&batch, "tid");
        let leaf = col::<Int64Type>(&batch, "callsite_id");
        for i in 0..batch.num_rows() {
            let mut path = Vec::new();
            let mut at = (!arrow_array::Array::is_null(leaf, i)).then(|| leaf.value(i));
            while let Some(cs) = at {
                let (parent, frame) = callsites[&cs];
                path.push(frames[&frame].clone());
                at = parent;
            }
            path.reverse();
            out.push(Sample {
                ts_ns: ts.value(i),
                pid: pid.value(i),
                tid: tid.value(i),
                comm: comm.value(i).to_string(),
                event: event.value(i).to_string(),
                unwind: unwind.value(i).to_string(),
                truncated: (!arrow_array::Array::is_null(truncated, i)).then(|| truncated.value(i)),
                frames: path,
            });
        }
    }
    out
}
