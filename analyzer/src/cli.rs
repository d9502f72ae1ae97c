//! Command-line interface of `perfpack` (clap derive). Each subcommand's arguments convert into
//! the plain options its module takes.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use crate::sql::OutFormat;

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
    Compare(crate::compare::CompareArgs),
    /// Which resource metrics move with a latency (rank correlation per second), and each
    /// disk's demand by Little's law
    Correlate(crate::correlate::CorrelateArgs),
    /// Rank bundles of a fleet (one per instance) by how much they differ, and say in what
    Fleet(crate::fleet::FleetArgs),
    /// One self-contained HTML report of bundles: sources and losses, USE checklist, flame
    /// graphs, frequency, latency heat maps and histograms, fleet ranking or comparison
    Report(crate::report::ReportArgs),
    /// Copy a bundle with thread names, paths and command lines replaced by stable hashes
    Redact(crate::redact::RedactArgs),
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
        /// Fold the samples of this event (default: the first event sampled)
        #[arg(long)]
        event: Option<String>,
        /// Write to this file instead of stdout
        #[arg(short, long)]
        output: Option<PathBuf>,
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
    Scheduler(crate::cluster::SchedulerArgs),
    /// An executor: runs tasks, reading the dataset where it lies, and serves their output
    Executor(crate::cluster::ExecutorArgs),
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
}

/// Arguments of `perfpack sql`.
#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// Bundles (directories, packed files, globs, `s3://` or `file://` URLs); a last argument
    /// that names a library view (see `perfpack queries`) runs that view
    #[arg(required_unless_present = "dataset", value_name = "BUNDLE")]
    pub args: Vec<String>,
    /// Query a dataset written by `perfpack export --dataset` (a directory, `s3://` or
    /// `file://` URL) in place, pruning by `host` and `bundle`
    #[arg(long, value_name = "DIR_OR_URL")]
    pub dataset: Option<String>,
    /// Run the query on an Apache DataFusion Ballista cluster whose scheduler is at
    /// df://HOST:PORT (see `perfpack cluster`); the dataset must lie where every executor can
    /// read it (a shared directory or `s3://`)
    #[arg(long, value_name = "df://HOST:PORT", requires = "dataset")]
    pub cluster: Option<String>,
    /// The SQL to run
    #[arg(short, long, conflicts_with = "file")]
    pub query: Option<String>,
    /// A file of SQL statements (separated by `;`); the last one's rows are printed
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutFormat::Table)]
    pub format: OutFormat,
    /// Write the rows to this file instead of stdout
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Allow DDL/DML, CREATE EXTERNAL TABLE and COPY (which read and write arbitrary paths)
    #[arg(long)]
    pub allow_ddl: bool,
    /// Memory the query engine may use before spilling to disk, e.g. 512M or 4G (default: a
    /// quarter of RAM)
    #[arg(long, value_parser = parse_size)]
    pub memory_limit: Option<usize>,
    /// Give up on a query (-q, -f or a view) that runs longer than this, e.g. 30s or 5m
    #[arg(long, value_parser = crate::scope::parse_duration_ns)]
    pub timeout: Option<i64>,
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
        })
    }
}

/// Arguments of `perfpack flamegraph`.
#[derive(Debug, clap::Args)]
pub struct FlamegraphArgs {
    #[command(flatten)]
    pub bundles: BundleArgs,
    #[arg(long, value_enum, default_value_t = crate::flamegraph::Kind::Cpu)]
    pub kind: crate::flamegraph::Kind,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Sampling event to draw (default: the most sampled one)
    #[arg(long)]
    pub event: Option<String>,
    /// What each CPU sample adds to its stack
    #[arg(long, value_enum, default_value_t = crate::flamegraph::Weight::Period)]
    pub weight: crate::flamegraph::Weight,
    /// Icicle graph: roots at the top
    #[arg(long)]
    pub inverted: bool,
    /// Merge from the leaves: each stack reversed, so callers of hot functions add up
    #[arg(long)]
    pub reverse: bool,
    /// Write folded stacks (`comm;root;...;leaf weight`) instead of SVG
    #[arg(long)]
    pub folded: bool,
    /// Off-CPU: leave out the wakers' stacks
    #[arg(long)]
    pub no_wakers: bool,
    /// CPU: leave out idle samples (pid 0, the CPUs' idle tasks); the subtitle says their share
    #[arg(long)]
    pub no_idle: bool,
    /// --weight turbo: the frequency CPU time is normalized to (default: the lowest base MHz)
    #[arg(long)]
    pub ref_mhz: Option<f64>,
    /// Title of the picture
    #[arg(long)]
    pub title: Option<String>,
    /// The file to write (`-` for stdout)
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Arguments of `perfpack heatmap`.
#[derive(Debug, clap::Args)]
pub struct HeatmapArgs {
    #[command(flatten)]
    pub bundles: BundleArgs,
    /// What to draw: a latency source, or CPU samples by sub-second offset (FlameScope)
    #[arg(long, value_enum, default_value_t = crate::heatmap::Source::Block, conflicts_with = "sql")]
    pub source: crate::heatmap::Source,
    /// A query yielding ts_ns and latency_ns columns (and optionally bundle) to draw instead
    #[arg(long)]
    pub sql: Option<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Column width in time (default: a round step giving at most 200 columns; 1s for samples)
    #[arg(long, value_parser = crate::scope::parse_duration_ns)]
    pub step: Option<i64>,
    /// Log2 latency rows ([2^k, 2^(k+1)) ns) instead of linear ones
    #[arg(long)]
    pub log: bool,
    /// Linear rows: the top of the latency axis (default: the largest latency)
    #[arg(long, value_parser = crate::scope::parse_duration_ns)]
    pub max: Option<i64>,
    /// Linear rows: how many (samples: rows per second)
    #[arg(long, default_value_t = 50)]
    pub rows: u32,
    /// `--source process`: how many of the busiest processes
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Title of the picture
    #[arg(long)]
    pub title: Option<String>,
    /// The SVG file to write (`-` for stdout)
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Arguments of `perfpack latency`.
#[derive(Debug, clap::Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub bundles: BundleArgs,
    #[arg(long, value_enum, default_value_t = crate::latency::Source::Block)]
    pub source: crate::latency::Source,
    /// One histogram per value of this column (block: dev, disk, comm, rwbs; runq: comm, cpu;
    /// syscall: syscall, comm)
    #[arg(long)]
    pub by: Option<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[arg(long, value_enum, default_value_t = LatencyFormat::Text)]
    pub format: LatencyFormat,
    /// Also draw the histograms into this SVG file
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// How `perfpack latency` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LatencyFormat {
    /// Histograms drawn in text, as iolatency and biolatency print them
    Text,
    /// JSON for programs
    Json,
    /// One CSV row per group and bucket
    Csv,
}

/// Capture formats `perfpack import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportKind {
    /// Text of `perf script` for a `perf record -g` capture
    PerfScript,
    /// A `perf record` file (perf.data), its frames named from this machine's files
    PerfData,
    /// Text of ftrace's `trace`/`trace_pipe`, or of `trace-cmd report`
    FtraceText,
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

/// How a command prints tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people
    Table,
    /// JSON for programs
    Json,
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
