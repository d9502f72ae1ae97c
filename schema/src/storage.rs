//! Where a bundle's bytes are. Readers take every byte through [`RandomAccess`] (positional
//! reads), so the same code reads a local file, a range of a packed bundle, or an object in a
//! store that another crate reaches ([`RemoteBundle`]: the analyzer's S3 support). This crate
//! does no network I/O itself.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

/// Bytes that can be read at any offset by several readers at once.
pub trait RandomAccess: Send + Sync + fmt::Debug {
    /// Size in bytes.
    fn len(&self) -> u64;

    /// Whether there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`; an error when the range runs past the end.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// An open local file and its size at opening.
#[derive(Debug)]
pub struct LocalFile {
    file: File,
    len: u64,
}

impl LocalFile {
    pub fn open(path: &Path) -> io::Result<LocalFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(LocalFile { file, len })
    }
}

impl RandomAccess for LocalFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

/// A bundle that is not a local path: a directory-like prefix of objects (`manifest.json`,
/// `tables/...`) or one object holding a packed bundle.
pub trait RemoteBundle: Send + Sync + fmt::Debug {
    /// Opens the object `name` below the location (`""`: the location itself, a packed
    /// bundle); `Ok(None)` when there is no such object.
    fn open(&self, name: &str) -> io::Result<Option<Arc<dyn RandomAccess>>>;

    /// Names of the objects below `prefix/`, relative to the location (`tables/t/seg-….parquet`).
    fn list(&self, prefix: &str) -> io::Result<Vec<String>>;
}
