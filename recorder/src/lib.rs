//! `perfpack-record`: the small on-box capture tool. It links the schema crate (arrow arrays,
//! parquet with zstd) and the kernel interfaces, never DataFusion, inferno or rayon, so it
//! stays small enough to copy onto a production box.
//!
//! The binary is `src/main.rs`; this library holds everything so that the fuzz targets under
//! `fuzz/` reach the parsers of kernel data ([`ftrace::page`], [`ftrace::format`],
//! [`ftrace::decode`]) as the recorder itself calls them.

mod budget;
mod bytes;
mod cgroup;
mod check;
pub mod cli;
mod config;
mod debuginfo;
pub mod ftrace;
pub mod harness;
mod host;
mod launch;
mod msr;
mod perf;
mod pidstat;
mod pmc;
mod procfs;
mod profile;
mod record_config;
mod records;
mod ring;
mod session;
mod sorter;
pub mod symbolize;
mod sys;
mod sysstat;
pub mod unwind;

use std::io::Write as _;
use std::process::ExitCode;

use perfpack_schema::manifest::SourceStatus;

use crate::cli::{Cli, Command, Format};

/// Runs one command line; `main` prints the error.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Check { format }) = cli.command {
        let checks = check::run();
        let mut out = std::io::stdout().lock();
        match format {
            Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&checks)?)?,
            Format::Table => out.write_all(check::render(&checks).as_bytes())?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    // `-- CMD`: found before anything is set up (a shell's 127 or 126 and no bundle when it
    // cannot run), and forked now, before the recorder starts a thread, held before its exec.
    let launch = match cli.record.command.split_first() {
        Some((cmd, _)) => match launch::resolve(cmd) {
            Ok(program) => Some(launch::Launch::spawn(
                &program,
                &cli.record.command,
                launch::target_user(cli.record.as_root),
            )?),
            Err(e) => {
                eprintln!("perfpack-record: {}", e.message);
                return Ok(ExitCode::from(e.status));
            }
        },
        None => None,
    };
    let start_wall = sys::clock_ns(libc::CLOCK_REALTIME);
    let hostname = host::host(0).hostname;
    let cfg = cli
        .record
        .into_config(&hostname, start_wall, launch.as_ref().map(|l| l.pid));
    let outcome = match session::record(cfg, launch) {
        Ok(o) => o,
        Err(e) => match e.downcast_ref::<launch::ExecFailed>() {
            Some(failed) => {
                eprintln!("perfpack-record: {}", failed.message);
                return Ok(ExitCode::from(failed.status));
            }
            None => return Err(e),
        },
    };
    eprint!("{}", summary(&outcome));
    Ok(match (&outcome.error, outcome.command_status) {
        (_, Some(status)) => ExitCode::from(status),
        (Some(_), None) => ExitCode::FAILURE,
        (None, None) => ExitCode::SUCCESS,
    })
}

/// The final summary: every source with status, records and losses; self-cost; warnings.
fn summary(o: &session::Outcome) -> String {
    let m = &o.manifest;
    let mut s = String::new();
    let w = m
        .sources
        .iter()
        .map(|x| x.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    s.push_str(&format!(
        "{:w$}  {:11}  {:>9}  {:>6}  detail or reason\n",
        "source", "status", "records", "lost"
    ));
    for src in &m.sources {
        let what = if src.status == SourceStatus::Ok {
            &src.detail
        } else {
            &src.reason
        };
        s.push_str(&format!(
            "{:w$}  {:11}  {:>9}  {:>6}  {}\n",
            src.name,
            src.status.as_str(),
            src.records,
            src.total_lost(),
            what
        ));
    }
    let bytes: u64 = m
        .tables
        .values()
        .flat_map(|t| &t.segments)
        .map(|x| x.bytes)
        .sum();
    let c = m.self_cost;
    s.push_str(&format!(
        "recorder cost: {:.2} CPU s (user {:.2}, system {:.2}), peak RSS {:.1} MiB\n",
        c.cpu_user_s + c.cpu_system_s,
        c.cpu_user_s,
        c.cpu_system_s,
        c.peak_rss_bytes as f64 / 1048576.0
    ));
    if o.compacted_rows > 0 {
        s.push_str(&format!(
            "ring: {} thread and mapping rows of threads and processes that exited before the \
             oldest kept event compacted away\n",
            o.compacted_rows
        ));
    }
    for warning in &o.warnings {
        s.push_str(&format!("warning: {warning}\n"));
    }
    if let Some(e) = &o.error {
        s.push_str(&format!(
            "error: capture stopped early: {e}; the bundle keeps every closed segment\n"
        ));
    }
    s.push_str(&format!(
        "wrote {} ({:.1} MiB, state {})\n",
        o.bundle.display(),
        bytes as f64 / 1048576.0,
        m.state.as_str()
    ));
    s
}
