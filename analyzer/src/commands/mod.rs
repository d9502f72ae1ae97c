//! One file per subcommand: a plain request in (built by `cli`), the analysis, the picture or
//! export, and the output. Nothing below `commands` imports it or `cli`.

#[cfg(feature = "cluster")]
pub mod cluster;
pub mod compare;
pub mod correlate;
pub mod export;
pub mod flamegraph;
pub mod fleet;
pub mod heatmap;
pub mod import;
pub mod info;
pub mod latency;
pub mod pack;
pub mod redact;
pub mod report;
pub mod sql;

use std::io::Write as _;

/// How a command prints tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned text for people.
    Table,
    /// JSON for programs.
    Json,
}

/// Writes a command's text to stdout.
fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
