//! An output bundle (a directory or a file) written beside its path and moved into place only
//! when complete, so that on any failure — a parse error, a full disk, a refused permission,
//! `--force` included — the output path holds what it held before the command.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// A staged output: write to [`Staged::path`], then [`Staged::commit`]. Dropped without a
/// commit, it removes what was written.
#[derive(Debug)]
pub struct Staged {
    out: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

/// What `path` is when it exists and is neither a regular file nor a directory (after
/// symlinks): a device, a FIFO or a socket. Outputs are written by temporary file and rename,
/// which would replace such a file (`-o /dev/null` run as root would leave a regular file
/// where the null device was), so pictures and query results are written into it instead
/// and bundles refuse it.
pub fn special_file(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt as _;
    let t = std::fs::metadata(path).ok()?.file_type();
    if t.is_char_device() {
        Some("character device")
    } else if t.is_block_device() {
        Some("block device")
    } else if t.is_fifo() {
        Some("FIFO")
    } else if t.is_socket() {
        Some("socket")
    } else {
        None
    }
}

impl Staged {
    /// Refuses an existing `out` unless `force`; `what` names the command in the temporary
    /// name (`.OUT.import-PID`).
    pub fn new(out: &Path, force: bool, what: &str) -> anyhow::Result<Staged> {
        if let Some(kind) = special_file(out) {
            // Renaming over it would replace the device itself (`-o /dev/null` as root).
            bail!(
                "{}: is a {kind}, not a bundle; refusing to replace it",
                out.display()
            );
        }
        if out.symlink_metadata().is_ok() && !force {
            bail!(
                "{}: already exists; refusing to overwrite (use --force)",
                out.display()
            );
        }
        let tmp = sibling(out, what);
        remove(&tmp);
        Ok(Staged {
            out: out.to_path_buf(),
            tmp,
            committed: false,
        })
    }

    /// Where to write the output.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Moves the written output into place. An old output is moved aside first and removed
    /// only once the new one is in place; if that move fails, the old one is put back.
    pub fn commit(mut self) -> anyhow::Result<()> {
        let old = sibling(&self.out, "old");
        let had_old = self.out.symlink_metadata().is_ok();
        if had_old {
            remove(&old);
            std::fs::rename(&self.out, &old)
                .with_context(|| format!("{}: moving the old output aside", self.out.display()))?;
        }
        if let Err(e) = std::fs::rename(&self.tmp, &self.out) {
            if had_old {
                let _ = std::fs::rename(&old, &self.out);
            }
            return Err(e)
                .with_context(|| format!("{}: moving the output in place", self.out.display()));
        }
        self.committed = true;
        if had_old {
            remove(&old);
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            remove(&self.tmp);
        }
    }
}

/// `.NAME.WHAT-PID` beside `out`: on the same file system, so the rename is atomic.
fn sibling(out: &Path, what: &str) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    out.with_file_name(format!(".{name}.{what}-{}", std::process::id()))
}

/// Removes a file or directory tree if there is one (a link itself, never what it points to).
fn remove(path: &Path) {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_output_stays_until_the_new_one_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("b.ppk");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("manifest.json"), "old").unwrap();
        assert!(Staged::new(&out, false, "import").is_err());
        // Failed (dropped without a commit): the old output is untouched, nothing is left.
        {
            let s = Staged::new(&out, true, "import").unwrap();
            std::fs::create_dir(s.path()).unwrap();
            std::fs::write(s.path().join("manifest.json"), "half").unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(out.join("manifest.json")).unwrap(),
            "old"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Committed: the new one replaces it, and nothing else remains.
        let s = Staged::new(&out, true, "import").unwrap();
        std::fs::create_dir(s.path()).unwrap();
        std::fs::write(s.path().join("manifest.json"), "new").unwrap();
        s.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("manifest.json")).unwrap(),
            "new"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A file replaced by a directory.
        let f = dir.path().join("f.ppk");
        std::fs::write(&f, "packed").unwrap();
        let s = Staged::new(&f, true, "redact").unwrap();
        std::fs::create_dir(s.path()).unwrap();
        s.commit().unwrap();
        assert!(f.is_dir());
    }
}
