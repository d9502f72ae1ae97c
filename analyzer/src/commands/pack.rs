//! `perfpack pack` and `perfpack unpack`: a bundle directory into one file (a ZIP of stored
//! entries) and back.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

pub fn pack(dir: &Path, output: &Path, force: bool) -> anyhow::Result<()> {
    // Refuse to pack something that is not a readable bundle.
    let bundle = perfpack_schema::Bundle::open(dir)?;
    if bundle.is_packed() {
        anyhow::bail!("{}: already a packed bundle", dir.display());
    }
    bundle.verify()?;
    let bytes = perfpack_schema::pack::pack_dir(dir, output, force)?;
    say(format_args!(
        "packed {} into {} ({bytes} bytes)",
        dir.display(),
        output.display()
    ))
}

pub fn unpack(file: &Path, output: &Path) -> anyhow::Result<()> {
    perfpack_schema::pack::unpack(file, output)
        .with_context(|| format!("unpacking {}", file.display()))?;
    say(format_args!(
        "unpacked {} into {}",
        file.display(),
        output.display()
    ))
}

fn say(line: std::fmt::Arguments) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}
