//! Command-line interface of `perfpack` (clap derive): the only place clap is used. Each
//! subcommand's arguments convert into the plain request its `commands` module takes
//! ([`Command::run`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands::Format;
use crate::import::ImportKind;

mod args;
mod values;

pub use args::*;

/// Analyze perfpack bundles: what a recorded Linux machine was doing.
#[derive(Debug, Parser)]
#[command(name = "perfpack", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// S3-compatible endpoint for `s3://` locations (MinIO, Ceph, moto; default: AWS, or
    /// `AWS_ENDPOINT_URL`)
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sources, statuses, time range, rows, losses, host and clocks of bundles
    Info {
        #[command(flatten)]
        bundles: BundleArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run SQL over bundles: a query, a file of statements, a view of the queries/ library by
    /// name, or (with none of these) an interactive shell
    Sql(SqlArgs),
    /// List the views of the queries/ library with their descriptions
    Queries {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// CPU or off-CPU flame graph of bundles (SVG, or folded stacks)
    Flamegraph(FlamegraphArgs),
    /// Latency heat map (block, run queue, syscalls, any SQL), or the sub-second heat map of CPU
    /// samples (FlameScope)
    Heatmap(HeatmapArgs),
    /// Log2 latency histograms with percentiles, per device, process, operation or syscall
    Latency(LatencyArgs),
    /// Compare two bundles (before/after, this box/that box), corrected for clock frequency
    Compare(CompareArgs),
    /// Which resource metrics move with a latency (rank correlation per second), and each
    /// disk's demand by Little's law
    Correlate(CorrelateArgs),
    /// Rank bundles of a fleet (one per instance) by how much they differ, and say in what
    Fleet(FleetArgs),
    /// One self-contained HTML report of bundles: sources and losses, USE checklist, flame
    /// graphs, frequency, latency heat maps and histograms, fleet ranking or comparison
    Report(ReportArgs),
    /// Copy a bundle with thread names, paths and command lines replaced by stable hashes
    Redact(RedactArgs),
    /// Import an existing capture (perf script or ftrace text) into a bundle
    Import {
        #[arg(value_enum)]
        kind: ImportKind,
        /// The text file (`-` for stdin)
        file: PathBuf,
        /// The bundle directory to write
        #[arg(short, long)]
        output: PathBuf,
        /// Replace an existing output bundle
        #[arg(long)]
        force: bool,
    },
    /// Export bundles into another tool's format, or (--dataset) into a Hive-partitioned
    /// Parquet dataset that DataFusion, Spark, Trino and DuckDB query unchanged
    Export {
        #[command(flatten)]
        bundles: BundleArgs,
        /// Write every table of the bundles into this dataset (a directory, `s3://` or
        /// `file://` URL) as `<table>/host=<host>/bundle=<name>/seg-*.parquet`; a bundle
        /// exported again replaces its earlier copy
        #[arg(long, value_name = "DIR_OR_URL", conflicts_with_all = ["format", "event", "output"])]
        dataset: Option<String>,
        #[arg(long, value_enum, default_value_t = ExportFormat::Folded)]
        format: ExportFormat,
        /// Folded, pprof and firefox: the samples of this event (default: the CPU event;
        /// another event's samples each weigh the events they stand for)
        #[arg(long)]
        event: Option<String>,
        /// Write to this file instead of stdout
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Folded, pprof and firefox: only what these options select
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Pack a bundle directory into one file (a ZIP of stored entries)
    Pack {
        /// The bundle directory
        dir: PathBuf,
        /// The packed file to write
        #[arg(short, long)]
        output: PathBuf,
        /// Replace an existing output file
        #[arg(long)]
        force: bool,
    },
    /// Run a node of an Apache DataFusion Ballista cluster that `perfpack sql --cluster` sends
    /// queries to
    #[cfg(feature = "cluster")]
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Unpack a packed bundle into a directory
    Unpack {
        /// The packed bundle
        file: PathBuf,
        /// The directory to create
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// `perfpack cluster`: the two kinds of Ballista process.
#[cfg(feature = "cluster")]
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The scheduler: plans each query into stages and hands their tasks to executors
    Scheduler(SchedulerArgs),
    /// An executor: runs tasks, reading the dataset where it lies, and serves their output
    Executor(ExecutorArgs),
}

/// Formats `perfpack export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Folded stacks (`comm;root;...;leaf weight`) for FlameGraph and inferno
    Folded,
    /// Chrome trace-event JSON (thread slices, block I/O, samples) for the Perfetto UI
    PerfettoJson,
    /// Gzipped pprof profile (go tool pprof, Pyroscope, speedscope)
    Pprof,
    /// Firefox Profiler processed profile (gzipped when -o ends in .gz): threads, CPU samples
    /// with stacks, blocked intervals, block I/O, syscalls and wakeups as markers, counters
    Firefox,
}

/// The selection options every picture command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct ScopeArgs {
    /// Only these processes (comma-separated, or repeat the option)
    #[arg(long, value_name = "PID")]
    pub pid: Vec<String>,
    /// Only these threads
    #[arg(long, value_name = "TID")]
    pub tid: Vec<String>,
    /// Only threads of these names (exact)
    #[arg(long, value_name = "COMM", value_delimiter = ',')]
    pub comm: Vec<String>,
    /// Only these CPUs
    #[arg(long, value_name = "CPU")]
    pub cpu: Vec<String>,
    /// Start: seconds after each bundle started (12.5, 500ms), RFC 3339, or UTC HH:MM:SS
    #[arg(long, value_parser = crate::scope::parse_time)]
    pub from: Option<crate::scope::TimeArg>,
    /// End (exclusive), in the same forms as --from
    #[arg(long, value_parser = crate::scope::parse_time)]
    pub to: Option<crate::scope::TimeArg>,
    /// A SQL predicate over the rows drawn (e.g. "comm LIKE 'post%' AND cpu < 2")
    #[arg(long = "where", value_name = "PREDICATE")]
    pub predicate: Option<String>,
    /// Only threads of cgroups matching this glob: on the whole path with a `/`
    /// (`/system.slice/*`), else on its last part or container id (`ssh.service`, `3f4e9a2b`)
    #[arg(long, value_name = "PATTERN")]
    pub cgroup: Vec<String>,
}

impl ScopeArgs {
    pub fn scope(&self) -> anyhow::Result<crate::scope::Scope> {
        use crate::scope::parse_list;
        Ok(crate::scope::Scope {
            pids: parse_list(&self.pid, "pid")?,
            tids: parse_list(&self.tid, "tid")?,
            comms: self.comm.clone(),
            cpus: parse_list(&self.cpu, "cpu")?,
            from: self.from,
            to: self.to,
            predicate: self.predicate.clone(),
            cgroups: self.cgroup.clone(),
        })
    }
}

/// A size (`512M`, `4G`) as `perfpack-record` takes one (`perfpack_schema::units`).
fn parse_size(s: &str) -> Result<usize, String> {
    perfpack_schema::units::parse_size(s)
        .and_then(|v| usize::try_from(v).map_err(|_| format!("{s:?}: too large")))
}

/// Bundles a command reads.
#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Bundle directories or packed `.ppk` files (glob patterns are expanded), `s3://` and
    /// `file://` URLs of them, or datasets written by `perfpack export --dataset` (every bundle
    /// in them)
    #[arg(required = true, value_name = "BUNDLE")]
    pub bundles: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(super::parse_size("512M"), Ok(512 << 20));
        assert_eq!(super::parse_size("4g"), Ok(4 << 30));
        assert_eq!(super::parse_size("1000"), Ok(1000));
        assert!(super::parse_size("4X").is_err());
        assert!(super::parse_size("G").is_err());
    }
}
