//! Helpers of the recorder's live tests: running the recorder, checking privileges, and reading
//! a recorded bundle's stacks back as frame-name paths.

mod ftrace;
mod live;
mod stack_events;
mod status;
mod tidy;
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

/// Skips a live test where this machine cannot record, saying why (fails instead when
/// `PERFPACK_REQUIRE_RECORDING=1`, which CI sets, so a CI machine that cannot record is seen);
/// otherwise evaluates to the guard of [`LIVE`], held for the rest of the test:
/// `let _live = require_recording!();`.
macro_rules! require_recording {
    () => {
        match $crate::suite::cannot_record() {
            Some(why) => {
                perfpack_schema::skip::skip("PERFPACK_REQUIRE_RECORDING", &why);
                return;
            }
            None => $crate::suite::LIVE
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    };
}
pub(crate) use require_recording;

/// Held by every live recording test for its whole run, so that no two record at once. They
/// share perf_event (sampling rates, rings), tracefs instances and both CPUs: one test's
/// workload or exec storm is another's load, and its assertions measure its own recording.
/// (The tests of this binary that do not record still run beside them.)
pub static LIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the recorder with these arguments.
pub fn record(args: &[&str]) -> Output {
    Command::new(RECORDER)
        .args(args)
        .output()
        .expect("perfpack-record runs")
}

/// What a child process used, from the kernel's accounting at its exit (`wait4`'s rusage):
/// the truth the live tests compare their recordings with, whatever else the machine ran.
#[derive(Debug, Clone, Copy)]
pub struct Used {
    pub pid: u32,
    pub success: bool,
    /// User and system CPU seconds.
    pub user_s: f64,
    pub sys_s: f64,
    /// CLOCK_MONOTONIC when it was reaped (the recordings' clock).
    pub exited_ns: i64,
}

impl Used {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// Waits for `child` and returns what it used (the child is reaped here).
pub fn wait_used(child: std::process::Child) -> Used {
    let mut status = 0;
    // SAFETY: rusage is plain data, written by wait4.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 of our own child with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(
        pid,
        child.id() as i32,
        "wait4: {}",
        std::io::Error::last_os_error()
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Used {
        pid: child.id(),
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        user_s: secs(ru.ru_utime),
        sys_s: secs(ru.ru_stime),
        exited_ns: monotonic_ns(),
    }
}

/// The CPU seconds process `pid` has used so far, user plus system (/proc/PID/stat, in clock
/// ticks of USER_HZ 100).
pub fn cpu_s_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the parenthesized comm: state is field 3, utime 14, stime 15.
    let after = &stat[stat.rfind(')').expect("comm in stat") + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// CLOCK_MONOTONIC now, in ns (the clock of every `ts_ns`).
pub fn monotonic_ns() -> i64 {
    // SAFETY: timespec is plain data, written by clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Waits until `done` holds, polling every 20 ms, for at most `limit` (then panics naming
/// `what`): the tests wait for conditions, never for fixed times a loaded machine may not meet.
pub fn wait_until(what: &str, limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {limit:?} for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// How many stack segments the manifest of a bundle being recorded lists (0 before the first
/// manifest or segment).
pub fn closed_segments(bundle: &Path) -> usize {
    std::fs::read_to_string(bundle.join("manifest.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|m| {
            m["tables"]["stack_sample"]["segments"]
                .as_array()
                .map(Vec::len)
        })
        .unwrap_or(0)
}

/// A recorder started by [`start_recording`], recording until [`Recording::stop`].
#[derive(Debug)]
pub struct Recording {
    child: std::process::Child,
    said: String,
    rest: std::thread::JoinHandle<String>,
}

/// Starts the recorder with these arguments and returns once it says it is recording (every
/// source on), however long setup takes on a loaded machine. Give it a long `-d`: the test
/// ends it with [`Recording::stop`] once its workload is done, so all of the workload falls
/// inside the recording.
pub fn start_recording(args: &[&str]) -> Recording {
    use std::io::BufRead as _;
    let mut child = Command::new(RECORDER)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("perfpack-record runs");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        said.push_str(&line);
        if line.contains("recording") {
            break;
        }
    }
    // The rest of its stderr is collected on a thread, so it never blocks on a full pipe.
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    Recording { child, said, rest }
}

impl Recording {
    /// The recorder's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the recorder to end by itself (or by a signal the test sent); returns whether
    /// it exited 0 and everything it wrote to stderr.
    pub fn wait(mut self) -> (bool, String) {
        let status = self.child.wait().expect("recorder is waited for");
        self.said.push_str(&self.rest.join().unwrap());
        (status.success(), self.said)
    }

    /// Sends SIGINT (the recorder finishes the open segment and exits 0); returns whether it
    /// exited 0 and everything it wrote to stderr.
    pub fn stop(self) -> (bool, String) {
        // SAFETY: kill(2) of our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.wait()
    }
}

/// A recorded bundle's manifest, as JSON.
pub fn manifest_of(bundle: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).unwrap()).unwrap()
}

/// The count of the manifest's losses of `kind`, over every source.
pub fn lost(bundle: &Path, kind: &str) -> u64 {
    manifest_of(bundle)["sources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["losses"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["kind"] == kind)
        .map(|l| l["count"].as_u64().unwrap_or(0))
        .sum()
}

/// The manifest's source `name`.
pub fn source_of(bundle: &Path, name: &str) -> serde_json::Value {
    manifest_of(bundle)["sources"]
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
    /// What the sample stands for: ns of CPU, or events.
    pub weight: i64,
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
        let weight = col::<Int64Type>(&batch, "weight");
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
                weight: weight.value(i),
                unwind: unwind.value(i).to_string(),
                truncated: (!arrow_array::Array::is_null(truncated, i)).then(|| truncated.value(i)),
                frames: path,
            });
        }
    }
    out
}
