//! Each subcommand's arguments, and their conversion into the plain request its `commands`
//! module takes.

use std::path::PathBuf;

use super::{BundleArgs, ScopeArgs, parse_size};
use crate::commands::{self, Format, latency};
use crate::flamegraph::{self, Kind, Weight};
use crate::heatmap::Source as HeatmapSource;
use crate::latency::Source as LatencySource;
use crate::scope::parse_duration_ns;
use crate::sql::OutFormat;

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
    #[arg(long, value_parser = parse_duration_ns)]
    pub timeout: Option<i64>,
}

impl SqlArgs {
    pub fn request(self) -> commands::sql::Request {
        commands::sql::Request {
            args: self.args,
            dataset: self.dataset,
            cluster: self.cluster,
            query: self.query,
            file: self.file,
            format: self.format,
            output: self.output,
            allow_ddl: self.allow_ddl,
            memory_limit: self.memory_limit,
            timeout: self.timeout,
        }
    }
}

/// Arguments of `perfpack flamegraph`.
#[derive(Debug, clap::Args)]
pub struct FlamegraphArgs {
    #[command(flatten)]
    pub bundles: BundleArgs,
    #[arg(long, value_enum, default_value_t = Kind::Cpu)]
    pub kind: Kind,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Sampling event to draw (default: the most sampled one)
    #[arg(long)]
    pub event: Option<String>,
    /// What each CPU sample adds to its stack
    #[arg(long, value_enum, default_value_t = Weight::Period)]
    pub weight: Weight,
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
    /// Colour palette, as FlameGraph's --colors: hot, mem, io, wakeup, java, js, perl, python,
    /// rust, red, green, blue, aqua, yellow, purple, orange (default: java for CPU, kernel frames
    /// orange and JIT green; mem for page faults; io for disk I/O and off-CPU)
    #[arg(long, value_name = "PALETTE")]
    pub colors: Option<String>,
    /// The file to write (`-` for stdout)
    #[arg(short, long)]
    pub output: PathBuf,
}

impl FlamegraphArgs {
    pub fn options(self) -> anyhow::Result<flamegraph::Options> {
        if let Some(c) = &self.colors
            && !flamegraph::PALETTES.contains(&c.as_str())
        {
            anyhow::bail!(
                "--colors {c:?}: not a palette ({})",
                flamegraph::PALETTES.join(", ")
            );
        }
        Ok(flamegraph::Options {
            kind: self.kind,
            scope: self.scope.scope()?,
            event: self.event,
            weight: self.weight,
            inverted: self.inverted,
            reverse: self.reverse,
            folded: self.folded,
            wakers: !self.no_wakers,
            no_idle: self.no_idle,
            ref_mhz: self.ref_mhz,
            title: self.title,
            colors: self.colors,
            output: self.output,
        })
    }
}

/// Arguments of `perfpack heatmap`.
#[derive(Debug, clap::Args)]
pub struct HeatmapArgs {
    #[command(flatten)]
    pub bundles: BundleArgs,
    /// What to draw: a latency source, or CPU samples by sub-second offset (FlameScope)
    #[arg(long, value_enum, default_value_t = HeatmapSource::Block, conflicts_with = "sql")]
    pub source: HeatmapSource,
    /// A query yielding ts_ns and latency_ns columns (and optionally bundle) to draw instead
    #[arg(long)]
    pub sql: Option<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Column width in time (default: a round step giving at most 200 columns; 1s for samples)
    #[arg(long, value_parser = parse_duration_ns)]
    pub step: Option<i64>,
    /// Log2 latency rows ([2^k, 2^(k+1)) ns) instead of linear ones
    #[arg(long)]
    pub log: bool,
    /// Linear rows: the top of the latency axis (default: the largest latency)
    #[arg(long, value_parser = parse_duration_ns)]
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

impl HeatmapArgs {
    pub fn request(self) -> anyhow::Result<commands::heatmap::Request> {
        Ok(commands::heatmap::Request {
            bundles: self.bundles.bundles,
            source: self.source,
            sql: self.sql,
            scope: self.scope.scope()?,
            step: self.step,
            log: self.log,
            max: self.max,
            rows: self.rows,
            top: self.top,
            title: self.title,
            output: self.output,
        })
    }
}

/// Arguments of `perfpack latency`.
#[derive(Debug, clap::Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub bundles: BundleArgs,
    #[arg(long, value_enum, default_value_t = LatencySource::Block)]
    pub source: LatencySource,
    /// One histogram per value of this column (block: dev, disk, comm, rwbs; runq: comm, cpu;
    /// syscall: syscall, comm)
    #[arg(long)]
    pub by: Option<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[arg(long, value_enum, default_value_t = latency::Format::Text)]
    pub format: latency::Format,
    /// Also draw the histograms into this SVG file
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

impl LatencyArgs {
    pub fn request(self) -> anyhow::Result<latency::Request> {
        Ok(latency::Request {
            bundles: self.bundles.bundles,
            source: self.source,
            by: self.by,
            scope: self.scope.scope()?,
            format: self.format,
            svg: self.svg,
        })
    }
}

/// Arguments of `perfpack compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The baseline bundle(s) ("before"; a glob makes a set)
    pub before: String,
    /// The bundle(s) compared with it ("after")
    pub after: String,
    /// Frequency CPU time is normalized to (default: the lower base MHz of the two sides)
    #[arg(long)]
    pub ref_mhz: Option<f64>,
    /// How many functions to list
    #[arg(long, default_value_t = 15)]
    pub top: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write the differential flame graph (after vs before, normalized) to this SVG
    #[arg(long, value_name = "OUT.svg")]
    pub flamegraph: Option<PathBuf>,
    /// Also write the latency histograms of both sides, bucket by bucket, to this SVG
    #[arg(long, value_name = "OUT.svg")]
    pub histograms: Option<PathBuf>,
    /// Also write everything as one self-contained HTML page (tables, histograms, differential
    /// flame graph)
    #[arg(short, long, value_name = "OUT.html")]
    pub output: Option<PathBuf>,
    /// CPU time and functions of the threads of cgroups matching this glob only (as the
    /// pictures' --cgroup); frequency, latency and system figures stay the whole box's
    #[arg(long, value_name = "PATTERN")]
    pub cgroup: Vec<String>,
    /// Also compare this sampled event (page-faults, block:block_rq_insert, ...): how often
    /// per second and under which functions; the differential flame graph shows its stacks
    #[arg(long, value_name = "EVENT")]
    pub event: Option<String>,
}

impl CompareArgs {
    pub fn request(self) -> commands::compare::Request {
        commands::compare::Request {
            before: self.before,
            after: self.after,
            ref_mhz: self.ref_mhz,
            top: self.top,
            format: self.format,
            flamegraph: self.flamegraph,
            histograms: self.histograms,
            output: self.output,
            cgroups: self.cgroup,
            event: self.event,
        }
    }
}

/// Arguments of `perfpack correlate`.
#[derive(Debug, clap::Args)]
pub struct CorrelateArgs {
    #[command(flatten)]
    pub bundles: BundleArgs,
    /// The latency to explain
    #[arg(long, value_enum, default_value_t = LatencySource::Block)]
    pub latency: LatencySource,
    /// How many metrics to list
    #[arg(long, default_value_t = 15)]
    pub top: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl CorrelateArgs {
    pub fn request(self) -> commands::correlate::Request {
        commands::correlate::Request {
            bundles: self.bundles.bundles,
            latency: self.latency,
            top: self.top,
            format: self.format,
        }
    }
}

/// Arguments of `perfpack fleet`.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    #[command(flatten)]
    pub bundles: BundleArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also rank by this sampled event (page-faults, block:block_rq_insert, ...): its rate per
    /// second and the shares of its hottest functions
    #[arg(long, value_name = "EVENT")]
    pub event: Option<String>,
}

/// Arguments of `perfpack report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub bundles: BundleArgs,
    /// The HTML file to write
    #[arg(short, long, value_name = "OUT.html")]
    pub output: PathBuf,
    /// With exactly two bundles: compare the second with the first (before/after)
    #[arg(long)]
    pub compare: bool,
    /// Title of the page
    #[arg(long)]
    pub title: Option<String>,
    /// Flame graphs, top tables, heat maps and latency of the threads of cgroups matching this
    /// glob only (as the pictures' --cgroup); the machine's own figures stay whole
    #[arg(long, value_name = "PATTERN")]
    pub cgroup: Vec<String>,
}

impl ReportArgs {
    pub fn request(self) -> commands::report::Request {
        commands::report::Request {
            bundles: self.bundles.bundles,
            output: self.output,
            compare: self.compare,
            title: self.title,
            cgroups: self.cgroup,
        }
    }
}

/// Arguments of `perfpack redact`.
#[derive(Debug, clap::Args)]
pub struct RedactArgs {
    /// The bundle to redact or check (directory or packed file)
    pub bundle: PathBuf,
    /// The redacted bundle directory to write
    #[arg(short, long, required_unless_present = "check")]
    pub output: Option<PathBuf>,
    /// Replace thread and process names
    #[arg(long)]
    pub comm: bool,
    /// Replace file paths (modules, mappings, executables, exec'd files, source files)
    #[arg(long)]
    pub paths: bool,
    /// Replace process command lines (and the recorded command's arguments)
    #[arg(long)]
    pub cmdline: bool,
    /// A secret mixed into the hashes: without it, anyone can check a guessed name
    #[arg(long, default_value = "")]
    pub salt: String,
    /// Replace an existing output
    #[arg(long)]
    pub force: bool,
    /// Write nothing: list the identifying values the bundle still holds (host name, boot id,
    /// thread names, paths, command lines, addresses), exit 1 if there are any
    #[arg(long, conflicts_with_all = ["output", "force", "comm", "paths", "cmdline", "salt"])]
    pub check: bool,
}

impl RedactArgs {
    pub fn options(self) -> crate::redact::Options {
        crate::redact::Options {
            bundle: self.bundle,
            output: self.output,
            comm: self.comm,
            paths: self.paths,
            cmdline: self.cmdline,
            salt: self.salt,
            force: self.force,
            check: self.check,
        }
    }
}

#[cfg(feature = "cluster")]
/// `perfpack cluster scheduler`.
#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// gRPC port executors and clients connect to
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
    /// Seconds after a job ends before executors delete its shuffle files
    #[arg(long, default_value_t = 300)]
    pub keep_job_data: u64,
}

#[cfg(feature = "cluster")]
/// `perfpack cluster executor`.
#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// The scheduler, HOST:PORT
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub scheduler: String,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Arrow Flight port (shuffle data and results)
    #[arg(long, default_value_t = 50051)]
    pub port: u16,
    /// gRPC port (task management)
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// Tasks run at once (default: the CPUs)
    #[arg(long, default_value_t = 0)]
    pub slots: usize,
    /// Directory for shuffle files and spills (default: a new temporary directory)
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

#[cfg(feature = "cluster")]
impl From<SchedulerArgs> for crate::cluster::SchedulerOptions {
    fn from(a: SchedulerArgs) -> Self {
        crate::cluster::SchedulerOptions {
            bind: a.bind,
            port: a.port,
            keep_job_data: a.keep_job_data,
        }
    }
}

#[cfg(feature = "cluster")]
impl From<ExecutorArgs> for crate::cluster::ExecutorOptions {
    fn from(a: ExecutorArgs) -> Self {
        crate::cluster::ExecutorOptions {
            scheduler: a.scheduler,
            bind: a.bind,
            port: a.port,
            grpc_port: a.grpc_port,
            slots: a.slots,
            work_dir: a.work_dir,
        }
    }
}
