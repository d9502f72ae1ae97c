//! `perfpack`'s entry point; the analyzer is the library of this crate.

use std::process::ExitCode;

use clap::Parser as _;
use perfpack_analyzer::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match perfpack_analyzer::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`perfpack info b | head`) is not a failure.
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("perfpack: {}", perfpack_schema::one_line(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}
