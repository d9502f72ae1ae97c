//! Writing a command's output file: whole or not at all. The bytes go to a temporary file beside
//! the output, renamed over it once complete; `-` is stdout, and a device or FIFO is written in
//! place (a rename would replace it). `sql` streams into [`temp_path`] the same way.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Writes `bytes` to `path` (temporary file + rename), or to stdout for `-`, or straight into a
/// device or FIFO (`-o /dev/null`, `-o /dev/stdout`), which a rename would replace.
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()?;
        return Ok(());
    }
    if super::staged::special_file(path).is_some() {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        return f
            .write_all(bytes)
            .with_context(|| format!("{}: write failed", path.display()));
    }
    if path.file_name().is_none() {
        anyhow::bail!("{}: not a file name", path.display());
    }
    let tmp = temp_path(path);
    let result = std::fs::write(&tmp, bytes)
        .with_context(|| format!("{}: cannot write", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("{}: cannot rename into place", path.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary file an output is written to before it is renamed into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
