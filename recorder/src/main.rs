//! `perfpack-record`'s entry point; the recorder is the library of this crate.

use std::process::ExitCode;

use clap::Parser as _;
use perfpack_recorder::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match perfpack_recorder::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!(
                "perfpack-record: {}",
                perfpack_schema::one_line(err.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}
