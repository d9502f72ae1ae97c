//! Packed bundles: one ZIP archive whose entries are *stored* (Parquet pages are already zstd),
//! so that any entry can be read in place at its offset, and `unzip` gives the directory back.
//!
//! Only what bundles need is implemented: stored entries, UTF-8 names, ZIP64 for large files.
//! Every size and offset read from an archive is checked against the file before it is used,
//! and entry names are checked before anything is written from them.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::{LocalFile, RandomAccess};
use crate::{Error, Result};

mod write;

pub use write::pack_dir;

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EXTRA_ID: u16 = 0x0001;
/// Bit 11: names are UTF-8.
const FLAG_UTF8: u16 = 0x0800;
/// 1980-01-01 00:00:00 in DOS format: a fixed time keeps packing deterministic.
const DOS_DATE: u16 = (1 << 5) | 1;
/// Most entries an archive may claim; real bundles have a few per table per segment.
const MAX_ENTRIES: u64 = 1_000_000;

/// One stored entry of a packed bundle.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the bundle, `/`-separated.
    pub name: String,
    /// Offset of the entry's bytes in the archive file.
    pub data_offset: u64,
    /// Size of the entry, bytes.
    pub size: u64,
    /// CRC-32 of the entry as the archive records it.
    pub crc32: u32,
}

/// A packed bundle opened for reading in place.
#[derive(Debug)]
pub struct PackedArchive {
    path: PathBuf,
    file: Arc<dyn RandomAccess>,
    entries: BTreeMap<String, Entry>,
}

impl PackedArchive {
    /// Opens an archive and validates its central directory: stored entries only, safe names,
    /// every entry inside the file.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file = LocalFile::open(&path).map_err(|e| Error::io(&path, e))?;
        Self::from_source(path, Arc::new(file))
    }

    /// Opens an archive read through `file` (an object in a store, say); `path` names it in
    /// messages.
    pub fn from_source(path: impl Into<PathBuf>, file: Arc<dyn RandomAccess>) -> Result<Self> {
        let path = path.into();
        let len = file.len();
        let bad = |msg: String| Error::invalid(&path, msg);
        let (cd_offset, cd_size, n_entries) =
            find_central_directory(file.as_ref(), len).map_err(&bad)?;
        if n_entries > MAX_ENTRIES || n_entries.saturating_mul(46) > cd_size {
            return Err(bad(format!(
                "corrupt archive: central directory claims {n_entries} entries in {cd_size} bytes"
            )));
        }
        let mut cd = vec![0u8; cd_size as usize];
        file.read_exact_at(&mut cd, cd_offset)
            .map_err(|e| Error::io(&path, e))?;
        let mut entries = BTreeMap::new();
        let mut pos = 0usize;
        for _ in 0..n_entries {
            let entry =
                parse_central_entry(file.as_ref(), &cd, &mut pos, cd_offset).map_err(&bad)?;
            // Directory entries (as `zip -r` writes them) carry nothing a bundle needs.
            if entry.name.ends_with('/') {
                continue;
            }
            if entries.contains_key(&entry.name) {
                return Err(bad(format!("duplicate entry {}", entry.name)));
            }
            entries.insert(entry.name.clone(), entry);
        }
        Ok(PackedArchive {
            path,
            file,
            entries,
        })
    }

    /// The archive file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open archive, shared by in-place readers.
    pub fn file(&self) -> &Arc<dyn RandomAccess> {
        &self.file
    }

    /// Looks an entry up by its path inside the bundle.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Every entry, by name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Reads one whole entry into memory (for small entries such as the manifest).
    pub fn read_entry(&self, entry: &Entry) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; entry.size as usize];
        self.file
            .read_exact_at(&mut buf, entry.data_offset)
            .map_err(|e| Error::io(self.path.join(&entry.name), e))?;
        Ok(buf)
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Finds the end-of-central-directory record (ZIP64 if present) and returns
/// (central directory offset, size, number of entries), checked against the file length.
fn find_central_directory(file: &dyn RandomAccess, len: u64) -> Result<(u64, u64, u64), String> {
    if len < 22 {
        return Err("not a packed bundle: too small to be a ZIP archive".into());
    }
    let tail_len = len.min(22 + 65_535);
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact_at(&mut tail, len - tail_len)
        .map_err(|e| e.to_string())?;
    let at = (0..=tail.len() - 22)
        .rev()
        .find(|&i| u32_at(&tail, i) == EOCD_SIG)
        .ok_or("not a packed bundle: no ZIP end-of-central-directory record")?;
    let eocd_pos = len - tail_len + at as u64;
    let eocd = &tail[at..];
    if u16_at(eocd, 4) != 0 || u16_at(eocd, 6) != 0 {
        return Err("multi-disk ZIP archives are not supported".into());
    }
    let mut n_entries = u64::from(u16_at(eocd, 10));
    let mut cd_size = u64::from(u32_at(eocd, 12));
    let mut cd_offset = u64::from(u32_at(eocd, 16));
    let mut cd_end_limit = eocd_pos;
    if n_entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        if eocd_pos < 20 {
            return Err("corrupt archive: ZIP64 locator missing".into());
        }
        let mut loc = [0u8; 20];
        file.read_exact_at(&mut loc, eocd_pos - 20)
            .map_err(|e| e.to_string())?;
        if u32_at(&loc, 0) != ZIP64_LOCATOR_SIG {
            return Err("corrupt archive: ZIP64 locator missing".into());
        }
        let rec_pos = u64_at(&loc, 8);
        if rec_pos
            .checked_add(56)
            .is_none_or(|end| end > eocd_pos - 20)
        {
            return Err("corrupt archive: ZIP64 record offset outside the file".into());
        }
        let mut rec = [0u8; 56];
        file.read_exact_at(&mut rec, rec_pos)
            .map_err(|e| e.to_string())?;
        if u32_at(&rec, 0) != ZIP64_EOCD_SIG {
            return Err("corrupt archive: bad ZIP64 end-of-central-directory record".into());
        }
        n_entries = u64_at(&rec, 32);
        cd_size = u64_at(&rec, 40);
        cd_offset = u64_at(&rec, 48);
        cd_end_limit = rec_pos;
    }
    if cd_offset
        .checked_add(cd_size)
        .is_none_or(|end| end > cd_end_limit)
    {
        return Err(format!(
            "corrupt archive: central directory ({cd_size} bytes at {cd_offset}) lies outside the file"
        ));
    }
    Ok((cd_offset, cd_size, n_entries))
}

/// Parses the central-directory entry at `*pos`, checks it, and finds its data through the
/// local header. Data must end before the central directory starts.
fn parse_central_entry(
    file: &dyn RandomAccess,
    cd: &[u8],
    pos: &mut usize,
    data_limit: u64,
) -> Result<Entry, String> {
    let p = *pos;
    if p + 46 > cd.len() || u32_at(cd, p) != CENTRAL_SIG {
        return Err("corrupt archive: bad central directory entry".into());
    }
    let method = u16_at(cd, p + 10);
    let crc32 = u32_at(cd, p + 16);
    let mut comp = u64::from(u32_at(cd, p + 20));
    let mut size = u64::from(u32_at(cd, p + 24));
    let name_len = usize::from(u16_at(cd, p + 28));
    let extra_len = usize::from(u16_at(cd, p + 30));
    let comment_len = usize::from(u16_at(cd, p + 32));
    let mut local = u64::from(u32_at(cd, p + 42));
    let end = p + 46 + name_len + extra_len + comment_len;
    if end > cd.len() {
        return Err("corrupt archive: central directory entry runs past its end".into());
    }
    let name = std::str::from_utf8(&cd[p + 46..p + 46 + name_len])
        .map_err(|_| "entry name is not UTF-8".to_string())?
        .to_string();
    let is_dir = name.ends_with('/') && size == 0;
    check_entry_name(if is_dir {
        &name[..name.len() - 1]
    } else {
        &name
    })?;
    // ZIP64 extra: the 64-bit values appear only for fields set to 0xFFFFFFFF, in this order.
    let mut extra = &cd[p + 46 + name_len..p + 46 + name_len + extra_len];
    while extra.len() >= 4 {
        let (id, n) = (u16_at(extra, 0), usize::from(u16_at(extra, 2)));
        let body = extra
            .get(4..4 + n)
            .ok_or("corrupt archive: bad extra field")?;
        if id == ZIP64_EXTRA_ID {
            let mut vals = body.chunks_exact(8).map(|c| u64_at(c, 0));
            for field in [&mut size, &mut comp, &mut local] {
                if *field == 0xFFFF_FFFF {
                    *field = vals
                        .next()
                        .ok_or("corrupt archive: short ZIP64 extra field")?;
                }
            }
        }
        extra = &extra[4 + n..];
    }
    *pos = end;
    if is_dir {
        return Ok(Entry {
            name,
            data_offset: 0,
            size: 0,
            crc32,
        });
    }
    if method != 0 {
        return Err(format!(
            "entry {name} is compressed (method {method}); packed bundles store entries uncompressed"
        ));
    }
    if comp != size {
        return Err(format!(
            "entry {name} claims {size} bytes but stores {comp}: corrupt sizes"
        ));
    }
    let mut header = [0u8; 30];
    if local.checked_add(30).is_none_or(|e| e > data_limit) {
        return Err(format!(
            "entry {name}: local header offset {local} outside the file"
        ));
    }
    file.read_exact_at(&mut header, local)
        .map_err(|e| e.to_string())?;
    if u32_at(&header, 0) != LOCAL_SIG {
        return Err(format!("entry {name}: bad local header"));
    }
    let data_offset = local + 30 + u64::from(u16_at(&header, 26)) + u64::from(u16_at(&header, 28));
    if data_offset.checked_add(size).is_none_or(|e| e > data_limit) {
        return Err(format!(
            "entry {name} claims {size} bytes, past the end of the archive data"
        ));
    }
    Ok(Entry {
        name,
        data_offset,
        size,
        crc32,
    })
}

/// Refuses names that could escape the output directory or are not plain relative paths.
fn check_entry_name(name: &str) -> Result<(), String> {
    let unsafe_name = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name.contains(':')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if unsafe_name {
        return Err(format!(
            "unsafe entry path {name:?} (absolute, `..` or not a plain relative path)"
        ));
    }
    Ok(())
}

/// CRC-32 (IEEE) of `data`, as ZIP and `.gnu_debuglink` use it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}

/// CRC-32 (IEEE), as ZIP uses.
#[derive(Debug, Clone, Copy)]
struct Crc32(u32);

impl Crc32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };

    fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }

    fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &b in data {
            c = Self::TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    fn finish(self) -> u32 {
        !self.0
    }
}

/// Extracts a packed bundle into a new directory `out`, checking every entry's CRC. Nothing is
/// written outside `out`; on failure the partly extracted directory is removed.
pub fn unpack(archive: &Path, out: &Path) -> Result<()> {
    let packed = PackedArchive::open(archive)?;
    if packed.entry(crate::MANIFEST_FILE).is_none() {
        return Err(Error::invalid(
            archive,
            "not a perfpack bundle: no manifest.json",
        ));
    }
    if out.exists() {
        return Err(Error::invalid(out, "already exists; refusing to overwrite"));
    }
    fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let result = packed
        .entries()
        .try_for_each(|e| extract_entry(&packed, e, out));
    if result.is_err() {
        let _ = fs::remove_dir_all(out);
    }
    result
}

fn extract_entry(packed: &PackedArchive, entry: &Entry, out: &Path) -> Result<()> {
    // Names were checked when the archive was opened: relative, no `..`.
    let dest = out.join(&entry.name);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut w = BufWriter::new(File::create(&dest).map_err(|e| Error::io(&dest, e))?);
    let mut crc = Crc32::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    while done < entry.size {
        let n = buf.len().min((entry.size - done) as usize);
        packed
            .file
            .read_exact_at(&mut buf[..n], entry.data_offset + done)
            .map_err(|e| Error::io(packed.path(), e))?;
        crc.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(|e| Error::io(&dest, e))?;
        done += n as u64;
    }
    w.flush().map_err(|e| Error::io(&dest, e))?;
    if crc.finish() != entry.crc32 {
        return Err(Error::invalid(
            packed.path(),
            format!("entry {}: CRC mismatch, the archive is corrupt", entry.name),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn rejects_unsafe_names() {
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "a//b",
            "C:/x",
            "a\\b",
            "",
        ] {
            assert!(check_entry_name(bad).is_err(), "{bad}");
        }
        check_entry_name("tables/frame/seg-000000.parquet").unwrap();
    }
}
