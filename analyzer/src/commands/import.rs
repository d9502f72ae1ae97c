//! `perfpack import`: an existing capture (perf script, perf.data, ftrace text) into a bundle,
//! with what was read and what could not be said on stdout.

use std::io::Write as _;
use std::path::Path;

use crate::import::ImportKind;

pub fn run(kind: ImportKind, file: &Path, output: &Path, force: bool) -> anyhow::Result<()> {
    let report = crate::import::run(kind, file, output, force)?;
    let mut stdout = std::io::stdout().lock();
    report.print(&mut stdout, file, output)?;
    stdout.flush()?;
    Ok(())
}
