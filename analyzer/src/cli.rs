//! Command-line interface of `perfpack` (clap derive). Each subcommand's arguments convert into
//! the plain options its module takes.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
}
