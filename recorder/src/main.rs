//! `perfpack-record`: the small on-box capture tool. It will link only the schema crate (arrow
//! arrays, parquet with zstd) — never DataFusion, inferno or rayon — so it stays small enough to
//! copy onto a production box.
//!
//! This first version only fixes the binary's name and its dependency boundary; capture lands
//! with the recorder issues, and until then running it says so and exits non-zero.

use std::process::ExitCode;

use clap::Parser;

/// Record what this Linux machine is doing into a perfpack bundle.
#[derive(Debug, Parser)]
#[command(name = "perfpack-record", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!(
        "perfpack-record: capture is not implemented in this version (bundle format {} only); \
         use `perfpack info testdata/basic.ppk` to see a bundle",
        perfpack_schema::FORMAT_VERSION
    );
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
