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
    /// Export a bundle into another tool's format
    Export {
        /// The bundle
        bundle: String,
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
    /// Unpack a packed bundle into a directory
    Unpack {
        /// The packed bundle
        file: PathBuf,
        /// The directory to create
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Formats `perfpack export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Folded stacks (`comm;root;...;leaf weight`) for FlameGraph and inferno
    Folded,
}

/// Arguments of `perfpack sql`.
#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// Bundles (directories, packed files, globs); a last argument that names a library view
    /// (see `perfpack queries`) runs that view
    #[arg(required = true, value_name = "BUNDLE")]
    pub args: Vec<String>,
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
}

/// Capture formats `perfpack import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportKind {
    /// Text of `perf script` for a `perf record -g` capture
    PerfScript,
    /// Text of ftrace's `trace`/`trace_pipe`, or of `trace-cmd report`
    FtraceText,
}

/// Parses `512M`, `4G`, `1024K` or a plain number of bytes.
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_uppercase() {
                'K' => 1usize << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix {c:?} (use K, M, G or T)")),
            };
            (&s[..i], mult)
        }
        _ => (s, 1),
    };
    num.trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size such as 512M or 4G"))
}

/// Bundles a command reads.
#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Bundle directories or packed `.ppk` files; glob patterns are expanded
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
