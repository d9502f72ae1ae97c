//! Command line of `perfpack-record` (clap derive), converted into the plain [`RecordConfig`]
//! the session takes. Defaults live here and nowhere else.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::perf::Scope;
use crate::record_config::{RecordConfig, StackEventArg, parse_stack_event};

/// Record what this Linux machine is doing into a perfpack bundle.
#[derive(Debug, Parser)]
#[command(
    name = "perfpack-record",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub record: RecordArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what this box supports for recording, and why not
    Check {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// How long to record (e.g. 30s, 2m, 500ms; a bare number is seconds). Default 30s; with
    /// `-- CMD`, until CMD exits
    #[arg(short = 'd', long = "duration", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Bundle to write (default: perfpack-HOST-YYYYMMDD-HHMMSS.ppk)
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Pack the bundle into one file at the end (the directory is removed)
    #[arg(long)]
    pub pack: bool,
    /// Replace an existing bundle at the output path
    #[arg(long)]
    pub force: bool,
    /// Stack samples per second per CPU
    #[arg(long, default_value_t = 99, value_parser = clap::value_parser!(u64).range(1..=50_000))]
    pub freq: u64,
    /// How user stacks are obtained: auto (unwound on the box from a copy of each sample's
    /// stack: CFI where the mapped file has it, frame pointers elsewhere), fp (the kernel's
    /// frame-pointer walk only: cheapest, wrong through code built without frame pointers),
    /// dwarf (CFI only; a frame without CFI ends its stack as truncated)
    #[arg(long, default_value = "auto", value_parser = ["auto", "fp", "dwarf"])]
    pub unwind: String,
    /// Bytes of user stack copied per sample for unwinding (a multiple of 8; at most 65528,
    /// the kernel's limit). Deeper stacks end as truncated
    #[arg(long, default_value = "16K", value_parser = parse_stack_bytes)]
    pub stack_bytes: u64,
    /// Do not sample switch-outs with their stacks (with the sched tracepoints, each blocked
    /// switch-out is sampled by default; off-CPU flame graphs then fall back to each thread's
    /// last CPU sample)
    #[arg(long)]
    pub no_switch_stacks: bool,
    /// Tracepoint set: default (io + sched), cpu (none), io (block events, and block_rq_insert
    /// sampled with stacks), sched, syscalls, all (io + sched + syscalls), mem (page faults, brk
    /// and mmap sampled with stacks), net (net_dev_xmit, netif_receive_skb sampled with stacks)
    #[arg(long, default_value = "default", value_parser = ["default", "cpu", "io", "sched", "syscalls", "all", "mem", "net"])]
    pub preset: String,
    /// Also record this tracepoint, with an optional filter: 'system:name[,filter]'
    #[arg(long = "event", value_name = "SYSTEM:NAME[,FILTER]")]
    pub events: Vec<String>,
    /// Also sample this event with stacks, as `perf record -e EVENT -g` does: a software event
    /// (page-faults, minor-faults, major-faults, context-switches, cpu-migrations,
    /// alignment-faults) or a tracepoint (block:block_rq_insert, syscalls:sys_enter_brk, ...).
    /// `/PERIOD`: one sample every PERIOD events, each weighing PERIOD (default: every event;
    /// page-faults and minor-faults every 16)
    #[arg(long = "stack-event", value_name = "EVENT[/PERIOD]", value_parser = parse_stack_event)]
    pub stack_events: Vec<StackEventArg>,
    /// ftrace ring buffer per CPU, KiB
    #[arg(long, default_value_t = 4096)]
    pub buffer_kb: u64,
    /// Count calls of the kernel functions matching this pattern per interval ('vfs_*'; the
    /// function tracer, where the kernel allows it)
    #[arg(long, value_name = "PATTERN", conflicts_with = "funcgraph")]
    pub funccount: Vec<String>,
    /// Trace calls of this kernel function and its children with their durations (the
    /// function_graph tracer, where the kernel allows it)
    #[arg(long, value_name = "FUNC")]
    pub funcgraph: Vec<String>,
    /// Define a kprobe and record it like a tracepoint: 'p:NAME SYMBOL [ARGS]' or 'r:NAME SYMBOL [$retval]'
    #[arg(long, value_name = "SPEC")]
    pub kprobe: Vec<String>,
    /// Keep the recorder under this % of one CPU: over it in an interval, function tracing
    /// stops first, then the costlier of the sampler (its frequency halves, down to 1 Hz) and
    /// ftrace (stopped) gives way; each step is written into the manifest. Not given: function
    /// tracing alone stops above 10%
    #[arg(long, value_name = "PCT")]
    pub max_cpu_pct: Option<f64>,
    /// Performance counters to read every interval (comma-separated)
    #[arg(long, default_value = crate::pmc::DEFAULT)]
    pub pmc: String,
    /// Do not read MSRs (frequency, temperature, energy)
    #[arg(long)]
    pub no_msr: bool,
    /// Sample only this process (and the threads and children it creates)
    #[arg(long, conflicts_with_all = ["cgroup", "command"])]
    pub pid: Option<i32>,
    /// With `-- CMD`: record the whole system while CMD runs (as `perf record -a -- CMD`);
    /// without it, CMD's process tree only
    #[arg(short = 'a', long)]
    pub system_wide: bool,
    /// With `-- CMD` under sudo: run CMD as root (default: as the user who ran sudo)
    #[arg(long)]
    pub as_root: bool,
    /// The command to start and record until it exits, with every process it starts:
    /// `perfpack-record [OPTIONS] -- CMD [ARGS...]`. The recorder exits with its status (127
    /// when it is not found, and no bundle is left); Ctrl-C and SIGTERM go to it first
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
    /// Sample only this cgroup (a path under /sys/fs/cgroup)
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Close a segment (and rewrite the manifest) this often
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub segment: Duration,
    /// Counter read interval (PMC, MSR, procfs, per-process stats)
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Per-process stats (pidstat): write processes that used at least this % of one CPU in
    /// an interval (at most 100 per interval); 0 disables
    #[arg(long, default_value_t = 1.0)]
    pub pidstat_min_pct: f64,
    /// Ring mode: keep only the newest segments covering this long
    #[arg(long, value_parser = parse_duration)]
    pub ring: Option<Duration>,
    /// Ring mode: keep at most this many bytes of event segments (e.g. 2G, 500M)
    #[arg(long, value_parser = parse_bytes)]
    pub max_bytes: Option<u64>,
    /// Run this shell command after each closed segment; `{}` is the bundle directory (passed to
    /// the shell as "$1", never pasted into the command, so quoting it is not needed), and
    /// PERFPACK_SEGMENT / PERFPACK_SEGMENT_FILES name the segment. To keep a bundle in S3 as
    /// it grows: --on-segment 'aws s3 sync {} s3://bucket/fleet/$(hostname).ppk' (the analyzer
    /// reads s3://bucket/fleet/HOST.ppk in place)
    #[arg(long)]
    pub on_segment: Option<String>,
}

/// Parses a duration (`30s`, `2m`, `500ms`, a bare number of seconds), the grammar both
/// binaries share (`perfpack_schema::units`); a recording's durations must be positive.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let ns = perfpack_schema::units::parse_duration_ns(s)?;
    if ns <= 0 {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_nanos(ns as u64))
}

/// Parses `2G`, `500M`, `64K` or bytes (`perfpack_schema::units`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    perfpack_schema::units::parse_size(s)
}

/// `--stack-bytes`: a size (`16K`, `8192`), rounded down to a multiple of 8, at most 65528.
pub fn parse_stack_bytes(s: &str) -> Result<u64, String> {
    let v = parse_bytes(s)?;
    let max = u64::from(crate::sys::MAX_STACK_USER);
    if !(64..=65_536).contains(&v) {
        return Err(format!("{s:?}: from 64 bytes to 64K"));
    }
    Ok((v & !7).min(max))
}

impl RecordArgs {
    /// The configuration these arguments ask for.
    /// `command_pid` is the recorded command's, when there is one (`-- CMD`).
    pub fn into_config(
        self,
        hostname: &str,
        now_wall_ns: i64,
        command_pid: Option<i32>,
    ) -> RecordConfig {
        let output = self.output.unwrap_or_else(|| {
            let stamp = perfpack_schema::time::format_wall_ns(now_wall_ns);
            let compact: String = stamp[..19]
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == 'T')
                .collect();
            PathBuf::from(format!(
                "perfpack-{hostname}-{}.ppk",
                compact.replace('T', "-")
            ))
        });
        let scope = match (command_pid, self.pid, self.cgroup) {
            (Some(_), _, _) if self.system_wide => Scope::All,
            (Some(pid), _, _) | (None, Some(pid), _) => Scope::Pid(pid),
            (None, None, Some(cg)) => Scope::Cgroup(cg),
            (None, None, None) => Scope::All,
        };
        // A command is recorded until it exits (ten years is "until"); otherwise 30 s.
        let duration = self.duration.unwrap_or(if command_pid.is_some() {
            Duration::from_secs(10 * 365 * 86_400)
        } else {
            Duration::from_secs(30)
        });
        let preset = crate::ftrace::preset(&self.preset).unwrap_or_default();
        let switch_stacks = preset.contains(&"sched:sched_switch")
            || self
                .events
                .iter()
                .any(|e| e.split(',').next() == Some("sched:sched_switch"));
        let switch_stacks = switch_stacks && !self.no_switch_stacks;
        let stacks = crate::perf::StackOptions {
            unwind: crate::unwind::Unwind::parse(&self.unwind)
                .unwrap_or(crate::unwind::Unwind::Auto),
            stack_bytes: self.stack_bytes as u32,
            switch_stacks,
            cgroup: false,
        };
        RecordConfig {
            stacks,
            preset_stack_events: (
                self.preset.clone(),
                crate::perf::preset_stack_events(&self.preset)
                    .iter()
                    .filter(|e| !self.stack_events.iter().any(|s| s.name == **e))
                    .map(|e| parse_stack_event(e).expect("a preset's event is well formed"))
                    .collect(),
            ),
            stack_events: self.stack_events,
            duration,
            output,
            pack: self.pack,
            force: self.force,
            freq: self.freq,
            pmc: self.pmc,
            msr: !self.no_msr,
            scope,
            segment: self.segment,
            interval: self.interval,
            pidstat_min_pct: self.pidstat_min_pct,
            ring: self.ring,
            max_bytes: self.max_bytes,
            on_segment: self.on_segment,
            max_cpu_pct: self.max_cpu_pct,
            ftrace: crate::ftrace::FtraceConfig {
                preset: crate::ftrace::preset(&self.preset)
                    .unwrap_or_default()
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                events: self.events,
                buffer_kb: self.buffer_kb,
                functions: crate::ftrace::functions::FunctionConfig {
                    count: self.funccount,
                    graph: self.funcgraph,
                    kprobes: self.kprobe,
                },
            },
            command_line: std::env::args().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;
    use crate::record_config::StackEventArg;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(
            parse_duration("fast").is_err()
                && parse_duration("3 days").is_err()
                && parse_duration("0").is_err()
        );
        assert_eq!(parse_bytes("2G").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("500MiB").unwrap(), 500 << 20);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_stack_bytes("16K").unwrap(), 16_384);
        assert_eq!(parse_stack_bytes("64K").unwrap(), 65_528);
        assert_eq!(parse_stack_bytes("1001").unwrap(), 1000);
        assert!(parse_stack_bytes("1M").is_err() && parse_stack_bytes("8").is_err());
        assert_eq!(
            parse_stack_event("page-faults/16").unwrap(),
            StackEventArg {
                name: "page-faults".into(),
                period: Some(16)
            }
        );
        assert_eq!(
            parse_stack_event("block:block_rq_insert").unwrap().period,
            None
        );
        for bad in [
            "page-fault",
            "block:",
            "../x:y",
            "a:b/0",
            "a:b/x",
            "sched:sched switch",
        ] {
            assert!(parse_stack_event(bad).is_err(), "{bad}");
        }
    }
}
