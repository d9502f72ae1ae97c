//! `manifest.json`: the one hand-written serialized boundary of a bundle. It says what was
//! recorded, where, with which clocks, what each source managed and lost, and which segment files
//! hold each table.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The bundle format this crate reads and writes. 2: the hot tracepoint events are stored in
/// their typed tables only, no longer also in `ftrace_event` (version 1 stored both; a reader
/// of 2 would count them twice). 3: `stack_sample` says how each stack was unwound (`unwind`,
/// `truncated`), and the sampler's source lists the truncated share per process.
pub const FORMAT_VERSION: u32 = 3;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_VERSION`] for bundles this crate writes.
    pub format_version: u32,
    /// Unique id of the recording (random hex, or a fixed one for generated fixtures).
    pub bundle_id: String,
    /// The program that wrote the bundle.
    pub recorder: RecorderInfo,
    /// The machine recorded.
    pub host: Host,
    /// Clock snapshots at start and end, to map `ts_ns` (CLOCK_MONOTONIC) to wall time.
    pub clocks: Clocks,
    /// `recording` while the recorder runs (and after a crash), then `complete` or `interrupted`.
    pub state: State,
    /// Nominal segment length, nanoseconds.
    pub segment_ns: i64,
    /// One entry per data source, in the order the recorder started them.
    pub sources: Vec<Source>,
    /// The recorder's own cost.
    pub self_cost: SelfCost,
    /// Per table: rows and the closed segment files.
    pub tables: BTreeMap<String, TableEntry>,
}

/// Who wrote the bundle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderInfo {
    /// Program name, e.g. `perfpack-record`.
    pub name: String,
    /// Program version.
    pub version: String,
    /// The command line, one element per argument.
    pub command_line: Vec<String>,
}

/// The machine that was recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub hostname: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// `/proc/sys/kernel/random/boot_id`; pairs with CLOCK_BOOTTIME.
    pub boot_id: Option<String>,
    /// `uname -m`.
    pub arch: String,
    /// `GenuineIntel`, `AuthenticAMD`, ...
    pub cpu_vendor: Option<String>,
    /// CPU model name as /proc/cpuinfo gives it.
    pub cpu_model_name: Option<String>,
    /// CPU family number.
    pub cpu_family: Option<u32>,
    /// CPU model number.
    pub cpu_model: Option<u32>,
    /// Number of online CPUs.
    pub n_cpus: u32,
    /// TSC frequency, MHz, where known.
    pub tsc_mhz: Option<f64>,
    /// Base (nominal, non-turbo) frequency, MHz, where known.
    pub base_mhz: Option<f64>,
    /// Maximum (turbo) frequency, MHz, where known.
    pub max_mhz: Option<f64>,
    /// Cloud instance type, where readable (DMI product name or metadata file).
    pub instance_type: Option<String>,
}

/// Start and end clock snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clocks {
    pub start: ClockSnapshot,
    /// Absent while recording.
    pub end: Option<ClockSnapshot>,
}

/// The clocks read back to back at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSnapshot {
    /// CLOCK_REALTIME, nanoseconds since the Unix epoch.
    pub realtime_ns: i64,
    /// CLOCK_MONOTONIC, nanoseconds: the clock of every `ts_ns`.
    pub monotonic_ns: i64,
    /// CLOCK_BOOTTIME, nanoseconds.
    pub boottime_ns: i64,
    /// Time stamp counter, cycles, where readable.
    pub tsc: Option<u64>,
}

impl ClockSnapshot {
    /// Wall-clock nanoseconds since the epoch for a CLOCK_MONOTONIC timestamp.
    pub fn wall_ns(&self, ts_ns: i64) -> i64 {
        // `ts_ns` comes from a table, not the checked manifest: saturate rather than wrap.
        self.realtime_ns
            .saturating_add(ts_ns.saturating_sub(self.monotonic_ns))
    }
}

/// Recording state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The recorder is running, or died without finalizing (crash, `kill -9`, termination).
    Recording,
    /// The recording ran to its end or was stopped by a signal and finalized.
    Complete,
    /// The recorder stopped early on an error (disk full, ...) but finalized what it had.
    Interrupted,
}

impl State {
    /// The word used in manifests and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Recording => "recording",
            State::Complete => "complete",
            State::Interrupted => "interrupted",
        }
    }
}

/// Status of one data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceStatus {
    /// Captured as asked.
    Ok,
    /// Captured with gaps or a reduced set of events; `reason` says what is missing.
    Partial,
    /// Not captured; `reason` says why.
    Unavailable,
}

impl SourceStatus {
    /// The word used in manifests and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Ok => "ok",
            SourceStatus::Partial => "partial",
            SourceStatus::Unavailable => "unavailable",
        }
    }
}

/// The names of the recorder's sources (`Source::name`), one spelling for every crate.
pub mod sources {
    /// Stack samples (perf_event): CPU samples, switch-outs, `--stack-event`s.
    pub const PERF_SAMPLES: &str = "perf-samples";
    /// Tracepoints read from tracefs.
    pub const FTRACE: &str = "ftrace";
    /// Hardware and software counters.
    pub const PMC: &str = "pmc";
    /// Model-specific registers (frequency, temperature, energy).
    pub const MSR: &str = "msr";
    /// System counters from /proc and /sys.
    pub const PROCFS: &str = "procfs";
    /// Per-process counters of the busiest processes.
    pub const PIDSTAT: &str = "pidstat";
    /// The machine's configuration.
    pub const CONFIG: &str = "config";
}

/// One data source (`perf-samples`, `ftrace`, `pmc`, `msr`, `procfs`, ...; see [`sources`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub name: String,
    pub status: SourceStatus,
    /// Why the status is not `ok`, in words; empty when ok.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What was configured, e.g. `cpu-clock @ 99 Hz, callchains user+kernel`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Records or rows this source produced.
    pub records: u64,
    /// Everything it lost; empty means nothing was lost as far as the kernel reports.
    #[serde(default)]
    pub losses: Vec<Loss>,
    /// Stack samples: how their user stacks were unwound, per process (the processes with the
    /// most samples first, at most [`Source::MAX_UNWIND_ROWS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unwind: Vec<UnwindStat>,
}

/// How the stacks of one process's samples were obtained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnwindStat {
    pub pid: i32,
    /// The process's name at its last sample.
    pub comm: String,
    /// Samples with a user part.
    pub samples: u64,
    /// Of those, unwound with CFI for every frame (`dwarf`), partly (`mixed`), or taken from
    /// the kernel's frame-pointer walk (`fp`).
    pub dwarf: u64,
    pub mixed: u64,
    pub fp: u64,
    /// Of those, stacks that stopped before the outermost frame.
    pub truncated: u64,
}

impl Source {
    /// At most this many processes are listed in [`Source::unwind`].
    pub const MAX_UNWIND_ROWS: usize = 32;

    /// A source with its status, before it has produced or lost anything.
    pub fn new(name: &str, status: SourceStatus, reason: String, detail: String) -> Source {
        Source {
            name: name.into(),
            status,
            reason,
            detail,
            records: 0,
            losses: Vec::new(),
            unwind: Vec::new(),
        }
    }

    /// Total lost records over every kind and CPU.
    pub fn total_lost(&self) -> u64 {
        // Counts come from files strangers attach: saturate rather than overflow.
        self.losses
            .iter()
            .fold(0u64, |sum, l| sum.saturating_add(l.count))
    }
}

/// A count of something lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    /// What was lost: `perf-lost-records`, `ftrace-overrun`, `ftrace-dropped`,
    /// `ftrace-missed-page`, `missed-polls`, ...
    pub kind: String,
    /// CPU concerned, when per CPU.
    pub cpu: Option<u32>,
    pub count: u64,
    /// The sampled event concerned, when per event (`perf-lost-event-samples` of a
    /// `--stack-event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

impl Loss {
    /// The kind, with the event when per event: `perf-lost-event-samples (page-faults)`.
    pub fn what(&self) -> String {
        match &self.event {
            Some(e) => format!("{} ({e})", self.kind),
            None => self.kind.clone(),
        }
    }
}

/// The recorder's own resource use over the whole recording.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfCost {
    /// User-mode CPU seconds.
    pub cpu_user_s: f64,
    /// Kernel-mode CPU seconds.
    pub cpu_system_s: f64,
    /// Peak resident set size, bytes.
    pub peak_rss_bytes: u64,
}

/// Rows and closed segments of one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    /// Rows over all listed segments.
    pub rows: u64,
    pub segments: Vec<SegmentEntry>,
}

/// One closed segment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    /// Segment number (the `NNNNNN` of `seg-NNNNNN.parquet`).
    pub index: u32,
    /// Path relative to the bundle root.
    pub file: String,
    pub rows: u64,
    /// File size, bytes.
    pub bytes: u64,
    /// Smallest `ts_ns` in the file, for tables with one and at least one row.
    pub min_ts_ns: Option<i64>,
    /// Largest `ts_ns` in the file.
    pub max_ts_ns: Option<i64>,
}

impl Manifest {
    /// A manifest for a new recording: state `recording`, no sources, every table empty.
    pub fn new(
        bundle_id: String,
        recorder: RecorderInfo,
        host: Host,
        start: ClockSnapshot,
    ) -> Self {
        Manifest {
            format_version: FORMAT_VERSION,
            bundle_id,
            recorder,
            host,
            clocks: Clocks { start, end: None },
            state: State::Recording,
            segment_ns: 10_000_000_000,
            sources: Vec::new(),
            self_cost: SelfCost::default(),
            tables: crate::tables::ALL
                .iter()
                .map(|t| (t.name.to_string(), TableEntry::default()))
                .collect(),
        }
    }

    /// Earliest and latest `ts_ns` over every table (from the segment list).
    pub fn time_range_ns(&self) -> Option<(i64, i64)> {
        let segs = self.tables.values().flat_map(|t| &t.segments);
        let min = segs.clone().filter_map(|s| s.min_ts_ns).min()?;
        let max = segs.filter_map(|s| s.max_ts_ns).max()?;
        Some((min, max))
    }

    /// Monotonic ns the recording ended at: its end clock snapshot, or, for a recording that
    /// never finalized (a crash, a copy taken while it ran), its latest row. The one definition
    /// every command uses.
    pub fn recorded_end_ns(&self) -> Option<i64> {
        self.clocks
            .end
            .as_ref()
            .map(|e| e.monotonic_ns)
            .or_else(|| self.time_range_ns().map(|r| r.1))
    }

    /// How long it recorded, ns: from the start clock snapshot to [`Manifest::recorded_end_ns`]
    /// (0 when there is no end).
    pub fn recorded_span_ns(&self) -> i64 {
        self.recorded_end_ns().map_or(0, |end| {
            end.saturating_sub(self.clocks.start.monotonic_ns).max(0)
        })
    }

    /// Looks a source up by name.
    pub fn source_mut(&mut self, name: &str) -> Option<&mut Source> {
        self.sources.iter_mut().find(|s| s.name == name)
    }

    /// Parses a manifest read from `path`, checking the format version before anything else so
    /// that a newer bundle gets a clear message rather than a field error.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(path, format!("not valid JSON: {e}")))?;
        match value.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(Error::invalid(
                    path,
                    format!(
                        "format_version {v} is not supported (this perfpack reads {FORMAT_VERSION})"
                    ),
                ));
            }
            None => {
                return Err(Error::invalid(
                    path,
                    "no format_version: not a perfpack manifest",
                ));
            }
        }
        let m: Manifest = serde_json::from_value(value)
            .map_err(|e| Error::invalid(path, format!("invalid manifest: {e}")))?;
        m.check_clocks()
            .map_err(|e| Error::invalid(path, format!("invalid manifest: {e}")))?;
        Ok(m)
    }

    /// The largest clock reading accepted, ns: a century of uptime (CLOCK_MONOTONIC and
    /// CLOCK_BOOTTIME), and a wall clock before 2100 (CLOCK_REALTIME). Within these bounds every
    /// difference and sum of two readings fits an i64, so nothing downstream can overflow.
    pub const MAX_CLOCK_NS: i64 = 100 * 365 * 86_400 * 1_000_000_000;
    pub const MAX_REALTIME_NS: i64 = 4_102_444_800 * 1_000_000_000;

    /// Refuses clock snapshots no machine can produce, naming the field.
    fn check_clocks(&self) -> std::result::Result<(), String> {
        let range = |field: &str, v: i64, max: i64| {
            if (0..=max).contains(&v) {
                Ok(())
            } else {
                Err(format!("{field} is {v}, outside 0..={max}"))
            }
        };
        let snapshots = std::iter::once(("start", &self.clocks.start))
            .chain(self.clocks.end.as_ref().map(|e| ("end", e)));
        for (which, c) in snapshots {
            range(
                &format!("clocks.{which}.realtime_ns"),
                c.realtime_ns,
                Self::MAX_REALTIME_NS,
            )?;
            range(
                &format!("clocks.{which}.monotonic_ns"),
                c.monotonic_ns,
                Self::MAX_CLOCK_NS,
            )?;
            range(
                &format!("clocks.{which}.boottime_ns"),
                c.boottime_ns,
                Self::MAX_CLOCK_NS,
            )?;
        }
        if let Some(end) = &self.clocks.end
            && end.monotonic_ns < self.clocks.start.monotonic_ns
        {
            return Err(format!(
                "clocks.end.monotonic_ns ({}) is before clocks.start.monotonic_ns ({})",
                end.monotonic_ns, self.clocks.start.monotonic_ns
            ));
        }
        range("segment_ns", self.segment_ns, Self::MAX_CLOCK_NS)?;
        Ok(())
    }

    /// Serializes to the pretty JSON stored in bundles.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("manifest serializes");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(monotonic_ns: i64) -> ClockSnapshot {
        ClockSnapshot {
            monotonic_ns,
            ..ClockSnapshot::default()
        }
    }

    #[test]
    fn the_recording_spans_start_to_end_or_to_its_last_row() {
        let mut m = Manifest::new(
            "b".into(),
            RecorderInfo::default(),
            Host::default(),
            at(1_000),
        );
        // Nothing recorded, no end: no span.
        assert_eq!((m.recorded_end_ns(), m.recorded_span_ns()), (None, 0));
        // Never finalized: up to its last row (from the start, not from its first row).
        let seg = |min, max| SegmentEntry {
            index: 0,
            file: String::new(),
            rows: 1,
            bytes: 1,
            min_ts_ns: Some(min),
            max_ts_ns: Some(max),
        };
        let t = m.tables.get_mut("stack_sample").expect("a table");
        t.segments = vec![seg(4_000, 9_000), seg(2_000, 7_000)];
        assert_eq!(
            (m.recorded_end_ns(), m.recorded_span_ns()),
            (Some(9_000), 8_000)
        );
        // Finalized: the end snapshot, whatever the rows say.
        m.clocks.end = Some(at(31_000));
        assert_eq!(
            (m.recorded_end_ns(), m.recorded_span_ns()),
            (Some(31_000), 30_000)
        );
    }
}
