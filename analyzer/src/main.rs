//! `perfpack`'s entry point; the analyzer is the library of this crate.

use std::process::ExitCode;

use clap::Parser as _;
use perfpack_analyzer::cli::Cli;

fn main() -> ExitCode {
    one_line_panics();
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

/// A panic (a bug, or a library tripping over hostile input that no check caught) is said in
/// one line like every other error, unless RUST_BACKTRACE asks for the whole story. It still
/// ends the command with a non-zero status.
fn one_line_panics() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("panic");
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = what.replace('\n', " ");
        eprintln!("perfpack: internal error (please report it with the input): {what}{at}");
    }));
}
