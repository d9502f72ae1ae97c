//! Opens a bundle, a directory or a packed `.ppk` file, in place: validates the manifest and
//! its format version, lists tables and segments, warns about segment files that were never
//! closed, and reads segments with their schema checked against the declarations.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Schema};
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader as _};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;

use crate::manifest::{Manifest, SegmentEntry};
use crate::pack::PackedArchive;
use crate::storage::{LocalFile, RandomAccess, RemoteBundle};
use crate::{Error, MANIFEST_FILE, Result, TABLES_DIR, TableDef, tables};

/// An opened bundle.
#[derive(Debug)]
pub struct Bundle {
    path: PathBuf,
    packed: Option<PackedArchive>,
    /// Set when the bundle is not a local path (`path` then holds its URL).
    remote: Option<Arc<dyn RemoteBundle>>,
    manifest: Manifest,
    warnings: Vec<String>,
}

/// Where a segment's bytes are, for engines that read files themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentSource {
    /// A file of a bundle directory.
    File(PathBuf),
    /// A byte range of a packed bundle.
    Packed {
        archive: PathBuf,
        offset: u64,
        len: u64,
    },
    /// An object of a directory-like bundle in a store (its URL).
    Remote(PathBuf),
}

/// The largest manifest read: a day of 10 s segments without ring mode lists ~200k segment
/// files in ~35 MB. Parsing costs about 4× the file in memory, so this bounds it near 260 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

fn check_manifest_size(size: u64, path: &Path) -> Result<()> {
    if size > MAX_MANIFEST_BYTES {
        return Err(Error::invalid(
            path,
            format!(
                "{:.1} MB, larger than a manifest can be ({} MiB); refused",
                size as f64 / 1e6,
                MAX_MANIFEST_BYTES >> 20
            ),
        ));
    }
    Ok(())
}

impl Bundle {
    /// Opens a bundle directory or packed file and validates its manifest.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let meta = fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        let (packed, manifest_bytes, manifest_path) = if meta.is_dir() {
            let mpath = path.join(MANIFEST_FILE);
            if !mpath.is_file() {
                return Err(Error::invalid(
                    &path,
                    "not a perfpack bundle: no manifest.json",
                ));
            }
            let size = fs::metadata(&mpath)
                .map_err(|e| Error::io(&mpath, e))?
                .len();
            check_manifest_size(size, &mpath)?;
            let bytes = fs::read(&mpath).map_err(|e| Error::io(&mpath, e))?;
            (None, bytes, mpath)
        } else {
            let archive = PackedArchive::open(&path)?;
            let entry = archive
                .entry(MANIFEST_FILE)
                .ok_or_else(|| Error::invalid(&path, "not a perfpack bundle: no manifest.json"))?;
            check_manifest_size(entry.size, &path.join(MANIFEST_FILE))?;
            let bytes = archive.read_entry(entry)?;
            (Some(archive), bytes, path.join(MANIFEST_FILE))
        };
        Self::from_parts(path, packed, None, &manifest_bytes, &manifest_path)
    }

    /// Opens a bundle that `remote` reaches (a directory-like prefix with `manifest.json`, or
    /// one object holding a packed bundle); `name` (its URL) names it in messages.
    pub fn open_remote(name: impl Into<PathBuf>, remote: Arc<dyn RemoteBundle>) -> Result<Self> {
        let path = name.into();
        let manifest_path = path.join(MANIFEST_FILE);
        let opened = remote
            .open(MANIFEST_FILE)
            .map_err(|e| Error::io(&manifest_path, e))?;
        let (packed, bytes) = match opened {
            Some(m) => {
                check_manifest_size(m.len(), &manifest_path)?;
                let mut buf = vec![0u8; m.len() as usize];
                m.read_exact_at(&mut buf, 0)
                    .map_err(|e| Error::io(&manifest_path, e))?;
                (None, buf)
            }
            None => {
                let whole = remote
                    .open("")
                    .map_err(|e| Error::io(&path, e))?
                    .ok_or_else(|| {
                        Error::invalid(&path, "no such bundle (no object, no manifest.json below)")
                    })?;
                let archive = PackedArchive::from_source(&path, whole)?;
                let entry = archive.entry(MANIFEST_FILE).ok_or_else(|| {
                    Error::invalid(&path, "not a perfpack bundle: no manifest.json")
                })?;
                check_manifest_size(entry.size, &manifest_path)?;
                let bytes = archive.read_entry(entry)?;
                (Some(archive), bytes)
            }
        };
        Self::from_parts(path, packed, Some(remote), &bytes, &manifest_path)
    }

    fn from_parts(
        path: PathBuf,
        packed: Option<PackedArchive>,
        remote: Option<Arc<dyn RemoteBundle>>,
        manifest_bytes: &[u8],
        manifest_path: &Path,
    ) -> Result<Self> {
        let manifest = Manifest::parse(manifest_bytes, manifest_path)?;
        let mut bundle = Bundle {
            path,
            packed,
            remote,
            manifest,
            warnings: Vec::new(),
        };
        bundle.check_layout()?;
        Ok(bundle)
    }

    /// Opens the same bundle again (a fresh handle: readers of the two share nothing).
    pub fn reopen(&self) -> Result<Self> {
        match &self.remote {
            Some(r) => Self::open_remote(&self.path, Arc::clone(r)),
            None => Self::open(&self.path),
        }
    }

    /// The path the bundle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the bundle is a packed file.
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Things worth telling the user that did not stop the bundle from opening (segment files
    /// that were never closed, unknown tables).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The closed segments of a table (empty if the manifest does not list the table).
    pub fn segments(&self, table: &TableDef) -> &[SegmentEntry] {
        self.manifest
            .tables
            .get(table.name)
            .map_or(&[], |t| t.segments.as_slice())
    }

    /// A name for a segment in messages: `BUNDLE/tables/t/seg-000000.parquet`.
    pub fn display_path(&self, seg: &SegmentEntry) -> PathBuf {
        self.path.join(&seg.file)
    }

    /// Where a segment's bytes are.
    pub fn segment_source(&self, seg: &SegmentEntry) -> Result<SegmentSource> {
        match &self.packed {
            None if self.remote.is_some() => Ok(SegmentSource::Remote(self.display_path(seg))),
            None => {
                let p = self.path.join(&seg.file);
                // A symbolic link (of the file or of a directory on the way) must not lead a
                // reader out of the bundle: a stranger's bundle could point at /etc/shadow.
                if let (Ok(file), Ok(root)) = (p.canonicalize(), self.path.canonicalize())
                    && !file.starts_with(&root)
                {
                    return Err(Error::invalid(
                        &p,
                        "a symbolic link to a file outside the bundle; refused",
                    ));
                }
                Ok(SegmentSource::File(p))
            }
            Some(archive) => {
                let entry = archive.entry(&seg.file).ok_or_else(|| {
                    Error::invalid(
                        self.display_path(seg),
                        "listed in manifest.json but missing",
                    )
                })?;
                Ok(SegmentSource::Packed {
                    archive: self.path.clone(),
                    offset: entry.data_offset,
                    len: entry.size,
                })
            }
        }
    }

    /// Opens a segment's bytes for a Parquet reader, in place.
    pub fn segment_data(&self, seg: &SegmentEntry) -> Result<SegmentData> {
        let display = self.display_path(seg);
        match self.segment_source(seg)? {
            SegmentSource::File(p) => {
                let file = LocalFile::open(&p).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        Error::invalid(&p, "listed in manifest.json but missing")
                    }
                    _ => Error::io(&p, e),
                })?;
                Ok(SegmentData::new(Arc::new(file), display))
            }
            SegmentSource::Remote(p) => {
                let remote = self.remote.as_ref().expect("remote");
                let object = remote
                    .open(&seg.file)
                    .map_err(|e| Error::io(&p, e))?
                    .ok_or_else(|| Error::invalid(&p, "listed in manifest.json but missing"))?;
                Ok(SegmentData::new(object, display))
            }
            SegmentSource::Packed { offset, len, .. } => {
                let file = Arc::clone(self.packed.as_ref().expect("packed").file());
                Ok(SegmentData::range(file, offset, len, display))
            }
        }
    }

    /// Opens one segment for reading in batches, after checking that its footer is readable,
    /// its schema is the table's and its row count is the manifest's.
    pub fn open_segment(
        &self,
        table: &TableDef,
        seg: &SegmentEntry,
    ) -> Result<ParquetRecordBatchReader> {
        self.open_segment_columns(table, seg, None)
    }

    /// Like [`Bundle::open_segment`], decoding only `columns` (in the table's order) when given.
    pub fn open_segment_columns(
        &self,
        table: &TableDef,
        seg: &SegmentEntry,
        columns: Option<&[&str]>,
    ) -> Result<ParquetRecordBatchReader> {
        let (builder, mask) = self.checked_segment(table, seg, Decode::Columns(columns))?;
        let builder = match mask {
            Some(mask) => builder.with_projection(mask),
            None => builder,
        };
        let path = self.display_path(seg);
        builder
            .with_batch_size(8 * 1024)
            .build()
            .map_err(|e| Error::parquet(&path, e))
    }

    /// Opens a segment's footer, checks it against the table and the manifest, and walks the
    /// pages of the columns that `decode` names (see [`check_pages`]).
    fn checked_segment(
        &self,
        table: &TableDef,
        seg: &SegmentEntry,
        decode: Decode,
    ) -> Result<(
        ParquetRecordBatchReaderBuilder<SegmentData>,
        Option<ProjectionMask>,
    )> {
        let data = self.segment_data(seg)?;
        let path = data.display.clone();
        // The Arrow schema a writer may embed is not parsed (arrow-ipc 59 panics on a corrupt
        // one, as a fuzzer found): the file's own Parquet types are checked against the table,
        // and the table's declared schema is what the reader decodes into.
        let unreadable = |e| Error::invalid(&path, format!("not a readable Parquet file: {e}"));
        let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
        let found = ArrowReaderMetadata::load(&data, options.clone()).map_err(unreadable)?;
        check_schema(table, found.schema(), &path)?;
        let declared = ArrowReaderMetadata::try_new(
            found.metadata().clone(),
            options.with_schema(table.schema()),
        )
        .map_err(|e| {
            Error::invalid(
                &path,
                format!("schema does not match table {}: {e}", table.name),
            )
        })?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(data.clone(), declared);
        let rows = builder.metadata().file_metadata().num_rows();
        if rows as u64 != seg.rows {
            return Err(Error::invalid(
                &path,
                format!("has {rows} rows but manifest.json lists {}", seg.rows),
            ));
        }
        let mask = match decode {
            Decode::Columns(Some(cols)) => {
                let mut roots = Vec::with_capacity(cols.len());
                for c in cols {
                    roots.push(builder.schema().index_of(c).map_err(|_| {
                        Error::invalid(&path, format!("{}: no column {c}", table.name))
                    })?);
                }
                Some(ProjectionMask::roots(builder.parquet_schema(), roots))
            }
            Decode::Columns(None) => Some(ProjectionMask::all()),
            Decode::Nothing => None,
        };
        check_pages(&data, builder.metadata(), &path, mask.as_ref())?;
        Ok((builder, mask))
    }

    /// Reads a whole table into memory (tests, small tables; engines stream instead).
    pub fn read_table(&self, table: &TableDef) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for seg in self.segments(table) {
            let path = self.display_path(seg);
            for batch in self.open_segment(table, seg)? {
                out.push(batch.map_err(|e| Error::invalid(&path, format!("corrupt data: {e}")))?);
            }
        }
        Ok(out)
    }

    /// Checks every listed segment: present, Parquet footer readable, schema and row count as
    /// declared, and the page headers of one column holding the rows the footer claims. Data
    /// pages are walked column by column only when a segment is opened for decoding.
    pub fn verify(&self) -> Result<()> {
        self.verify_tables(tables::ALL)
    }

    /// [`Bundle::verify`] for some tables only (a command that reads three tables need not
    /// open the footers of all of them).
    pub fn verify_tables(&self, which: &[&TableDef]) -> Result<()> {
        for t in which {
            for seg in self.segments(t) {
                self.checked_segment(t, seg, Decode::Nothing)?;
            }
        }
        Ok(())
    }

    /// Checks the manifest's table list and finds files the manifest does not list.
    fn check_layout(&mut self) -> Result<()> {
        let mut listed = BTreeSet::new();
        for (name, table) in &self.manifest.tables {
            if tables::by_name(name).is_none() {
                self.warnings.push(format!(
                    "{}: unknown table {name} ignored",
                    self.path.display()
                ));
                continue;
            }
            for seg in &table.segments {
                let expected = crate::segment_path(name, seg.index);
                if seg.file != expected {
                    return Err(Error::invalid(
                        self.path.join(MANIFEST_FILE),
                        format!("segment path {:?} is not {expected:?}", seg.file),
                    ));
                }
                listed.insert(seg.file.clone());
            }
        }
        let present: Vec<String> = match &self.packed {
            Some(archive) => archive
                .entries()
                .map(|e| e.name.clone())
                .filter(|n| n.starts_with("tables/"))
                .collect(),
            None => match &self.remote {
                // Listing only feeds a warning: a store that will not list gives none.
                Some(r) => r.list(TABLES_DIR).unwrap_or_default(),
                None => list_table_files(&self.path),
            },
        };
        for name in present {
            if !listed.contains(&name) {
                self.warnings.push(format!(
                    "{}: skipping {name}: not listed in manifest.json (a segment that was never closed)",
                    self.path.display()
                ));
            }
        }
        Ok(())
    }
}

/// Files under `tables/*/` of a bundle directory, as bundle-relative paths.
fn list_table_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dirs) = fs::read_dir(root.join(TABLES_DIR)) else {
        return out;
    };
    for dir in dirs.flatten() {
        let Ok(files) = fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            out.push(format!(
                "{TABLES_DIR}/{}/{}",
                dir.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

/// Which columns of a segment will be decoded, and so have their pages walked.
enum Decode<'a> {
    /// None: the segment is only being verified.
    Nothing,
    /// These columns (all when `None`).
    Columns(Option<&'a [&'a str]>),
}

/// Checks what the footer says against the pages, so that a lying file is refused with an error
/// naming it rather than making parquet 59 panic or spin:
/// - every column chunk lies inside the file (parquet asserts offsets are not negative);
/// - the data pages of each row group hold the rows its footer claims, counted on its smallest
///   flat column (a footer and manifest that agree on a trillion rows in a 100 KB file would
///   otherwise keep readers busy producing nothing);
/// - in each column that `decoded` selects, a dictionary-encoded data page follows a dictionary
///   page (parquet 59 panics with "Decoder for dict should have been set" otherwise, a fuzzer
///   found). This decompresses those pages once more; verification alone (`decoded` = `None`)
///   walks only the counted column.
///
/// Pages are read with `get_next_page`, not `peek_next_page`, which in parquet 59 panics on a
/// data page without its header.
fn check_pages(
    data: &SegmentData,
    md: &ParquetMetaData,
    path: &Path,
    decoded: Option<&ProjectionMask>,
) -> Result<()> {
    let reader = Arc::new(data.clone());
    for (i, rg) in md.row_groups().iter().enumerate() {
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let inside = u64::try_from(start)
                .ok()
                .zip(u64::try_from(c.compressed_size()).ok())
                .and_then(|(s, n)| s.checked_add(n))
                .is_some_and(|end| end <= data.len);
            if !inside || c.data_page_offset() < 0 {
                return Err(Error::invalid(
                    path,
                    format!(
                        "row group {i}: column chunk {} lies outside the file",
                        c.column_path()
                    ),
                ));
            }
            // What the footer says a chunk uses, checked for every column: DataFusion decodes
            // the tables SQL reads itself, past the page checks below.
            #[allow(deprecated)]
            let levels_only = Encoding::BIT_PACKED;
            if let Some(e) = c
                .encodings()
                .find(|&e| e != levels_only && !written_encoding(e))
            {
                return Err(Error::invalid(
                    path,
                    format!(
                        "row group {i}: column {}: values encoded as {e}, which perfpack does not write",
                        c.column_path()
                    ),
                ));
            }
        }
        let counted = rg
            .columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.column_descr().max_rep_level() == 0)
            .min_by_key(|(_, c)| c.compressed_size())
            .map(|(leaf, _)| leaf);
        for (leaf, col) in rg.columns().iter().enumerate() {
            let decodes = decoded.is_some_and(|m| m.leaf_included(leaf));
            if !decodes && Some(leaf) != counted {
                continue;
            }
            let bad = |e: parquet::errors::ParquetError| Error::parquet(path, e);
            let mut pages =
                SerializedPageReader::new(reader.clone(), col, rg.num_rows() as usize, None)
                    .map_err(bad)?;
            let mut held = 0u64;
            let mut dictionary = false;
            let descr = col.column_descr();
            let (max_def, max_rep) = (descr.max_def_level(), descr.max_rep_level());
            while let Some(page) = pages.get_next_page().map_err(bad)? {
                if decodes && let Err(why) = check_data_page(&page, max_def, max_rep) {
                    return Err(Error::invalid(
                        path,
                        format!("row group {i}: column {}: {why}", col.column_path()),
                    ));
                }
                let (rows, encoding) = match page {
                    Page::DataPage {
                        num_values,
                        encoding,
                        ..
                    } => (u64::from(num_values), encoding),
                    Page::DataPageV2 {
                        num_rows, encoding, ..
                    } => (u64::from(num_rows), encoding),
                    Page::DictionaryPage { .. } => {
                        dictionary = true;
                        continue;
                    }
                };
                held += rows;
                let needs_dictionary = matches!(
                    encoding,
                    Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY
                );
                if decodes && needs_dictionary && !dictionary {
                    return Err(Error::invalid(
                        path,
                        format!(
                            "row group {i}: column {} has a dictionary-encoded page but no dictionary page",
                            col.column_path()
                        ),
                    ));
                }
            }
            if Some(leaf) == counted && held != rg.num_rows() as u64 {
                return Err(Error::invalid(
                    path,
                    format!(
                        "row group {i} claims {} rows but its pages hold {held}",
                        rg.num_rows()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// What parquet 59's decoders trust in a decompressed data page of a flat column (no
/// repetition levels) and panic on when it lies, as a fuzzer found:
/// - the definition levels lie within the page, and (max level 1, read by a packed decoder
///   that trusts a run's length) their bit-packed runs within the levels;
/// - a dictionary-encoded page has its index bit width (the first byte of its values), at most
///   32;
/// - the values' encoding is one perfpack writes, DELTA_BINARY_PACKED only in a column without
///   nulls and with a header that counts the page's values;
/// - a dictionary page of no values holds no data.
fn check_data_page(page: &Page, max_def: i16, max_rep: i16) -> std::result::Result<(), String> {
    const PAST: &str = "definition levels that run past their data";
    let encoding = match page {
        Page::DataPage { encoding, .. } | Page::DataPageV2 { encoding, .. } => *encoding,
        Page::DictionaryPage { .. } => Encoding::PLAIN,
    };
    if !written_encoding(encoding) {
        return Err(format!(
            "values encoded as {encoding}, which perfpack does not write"
        ));
    }
    if max_rep > 0 {
        return Ok(());
    }
    let (buf, num_values, encoding, levels) = match page {
        Page::DataPage {
            buf,
            num_values,
            encoding,
            def_level_encoding,
            ..
        } => {
            let levels = match (max_def, def_level_encoding) {
                (0, _) => Some(0..0),
                (_, Encoding::RLE) => buf.get(..4).and_then(|len| {
                    let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
                    let end = 4usize.checked_add(len)?;
                    (end <= buf.len()).then_some(4..end)
                }),
                // One bit a value at max level 1, and parquet slices that many bytes off.
                #[allow(deprecated)]
                (1, Encoding::BIT_PACKED) => {
                    let n = (*num_values as usize).div_ceil(8);
                    (n <= buf.len()).then_some(0..n)
                }
                _ => return Ok(()),
            };
            (buf, *num_values, *encoding, levels)
        }
        Page::DataPageV2 {
            buf,
            num_values,
            encoding,
            def_levels_byte_len,
            rep_levels_byte_len,
            ..
        } => {
            let start = *rep_levels_byte_len as usize;
            let end = start.checked_add(*def_levels_byte_len as usize);
            let levels = end.filter(|&e| e <= buf.len()).map(|e| start..e);
            (buf, *num_values, *encoding, levels)
        }
        // The plain decoder spreads the page's bytes over its count, and divides by zero.
        Page::DictionaryPage {
            buf, num_values, ..
        } => {
            if *num_values == 0 && !buf.is_empty() {
                return Err("a dictionary page of no values that holds data".into());
            }
            return Ok(());
        }
    };
    let Some(levels) = levels else {
        return Err(PAST.into());
    };
    // For the v1 RLE levels, the values follow them; v2 and bit-packed levels likewise.
    let values_at = levels.end;
    if max_def == 1 && !bit_packed_runs_fit(&buf[levels], num_values) {
        return Err(PAST.into());
    }
    // perfpack writes DELTA_BINARY_PACKED for its sort key only, a column without nulls; the
    // decoder trusts the header's value count (and its subtraction overflows on a zero).
    if encoding == Encoding::DELTA_BINARY_PACKED {
        let mut at = values_at;
        // Block size, miniblocks per block, value count, first value (zigzag): each a ULEB128
        // that ends within 64 bits (the decoder shifts past them otherwise).
        let header: Option<Vec<u64>> = (0..4).map(|_| uleb128(buf, &mut at)).collect();
        let total = header.map(|h| h[2]);
        if max_def != 0 || num_values == 0 || total != Some(u64::from(num_values)) {
            return Err(format!(
                "a DELTA_BINARY_PACKED page whose header does not count its {num_values} values"
            ));
        }
    }
    let dictionary = matches!(
        encoding,
        Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY
    );
    if dictionary {
        // The index decoder reads the width byte unchecked.
        match buf.get(values_at) {
            None => return Err("a dictionary-encoded page without its index width".into()),
            Some(&width) if width > 32 => {
                return Err("dictionary indices wider than 32 bits".into());
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Walks the RLE / bit-packing hybrid at bit width 1 as far as the decoder reads (until
/// `num_values` levels are covered): a ULEB128 header, then for a bit-packed run (header & 1)
/// `header >> 1` bytes of 8 levels each, for an RLE run one byte. False when a bit-packed run
/// claims more bytes than are left.
fn bit_packed_runs_fit(levels: &[u8], num_values: u32) -> bool {
    let (mut at, mut covered) = (0usize, 0u64);
    while covered < u64::from(num_values) && at < levels.len() {
        let Some(header) = uleb128(levels, &mut at) else {
            return false;
        };
        let n = header >> 1;
        if header & 1 == 1 {
            if n > (levels.len() - at) as u64 {
                return false;
            }
            at += n as usize;
            covered = covered.saturating_add(n.saturating_mul(8));
        } else {
            at += 1;
            covered = covered.saturating_add(n);
        }
    }
    true
}

/// The value encodings perfpack's writer uses. parquet 59's other decoders (BYTE_STREAM_SPLIT,
/// DELTA_*_BYTE_ARRAY) index past hostile data and panic, so no other is decoded.
fn written_encoding(e: Encoding) -> bool {
    matches!(
        e,
        Encoding::PLAIN
            | Encoding::PLAIN_DICTIONARY
            | Encoding::RLE_DICTIONARY
            | Encoding::RLE
            | Encoding::DELTA_BINARY_PACKED
    )
}

/// The ULEB128 integer at `*at` in `buf`, moving `*at` past it; `None` when it runs off the
/// end or past 64 bits.
fn uleb128(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Checks a file's Arrow schema against the declaration, naming the first difference.
fn check_schema(table: &TableDef, found: &Schema, path: &Path) -> Result<()> {
    let expected = table.schema();
    for (i, col) in expected.fields().iter().enumerate() {
        let Some(f) = found.fields().get(i) else {
            return Err(Error::invalid(
                path,
                format!(
                    "schema does not match table {}: column {} is missing",
                    table.name,
                    col.name()
                ),
            ));
        };
        // Parquet stores a map's field names its own way: a map is checked to be a map, and
        // decoding into the declared schema checks the rest.
        let same_type = match col.data_type() {
            DataType::Map(..) => matches!(f.data_type(), DataType::Map(..)),
            t => f.data_type() == t,
        };
        if f.name() != col.name() || !same_type || f.is_nullable() != col.is_nullable() {
            return Err(Error::invalid(
                path,
                format!(
                    "schema does not match table {}: column {} should be `{}` {}, found `{}` {}",
                    table.name,
                    i,
                    col.name(),
                    col.data_type(),
                    f.name(),
                    f.data_type()
                ),
            ));
        }
    }
    if found.fields().len() != expected.fields().len() {
        return Err(Error::invalid(
            path,
            format!(
                "schema does not match table {}: {} columns instead of {}",
                table.name,
                found.fields().len(),
                expected.fields().len()
            ),
        ));
    }
    Ok(())
}

/// A segment's bytes in place: a whole file or a range of a packed bundle, read with positional
/// reads so several readers can share one file handle.
#[derive(Debug, Clone)]
pub struct SegmentData {
    file: Arc<dyn RandomAccess>,
    offset: u64,
    len: u64,
    display: PathBuf,
}

impl SegmentData {
    /// All of `file`, named `display` in messages (a segment file of a dataset, say).
    pub fn new(file: Arc<dyn RandomAccess>, display: PathBuf) -> Self {
        let len = file.len();
        Self::range(file, 0, len, display)
    }

    fn range(file: Arc<dyn RandomAccess>, offset: u64, len: u64, display: PathBuf) -> Self {
        SegmentData {
            file,
            offset,
            len,
            display,
        }
    }

    /// The path used in messages about this segment.
    pub fn display_path(&self) -> &Path {
        &self.display
    }

    fn read_range(&self, start: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = start.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the segment",
            ));
        }
        self.file.read_exact_at(buf, self.offset + start)
    }
}

impl Length for SegmentData {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for SegmentData {
    type T = SegmentRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<SegmentRead> {
        Ok(SegmentRead {
            data: self.clone(),
            pos: start.min(self.len),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        // A footer's sizes are claims: check them against the file before allocating.
        if start.saturating_add(length as u64) > self.len {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "{length} bytes at {start} asked of a {}-byte segment",
                self.len
            )));
        }
        let mut buf = vec![0u8; length];
        self.read_range(start, &mut buf)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        Ok(Bytes::from(buf))
    }
}

/// Sequential reader over a segment, for `ChunkReader::get_read`.
#[derive(Debug)]
pub struct SegmentRead {
    data: SegmentData,
    pos: u64,
}

impl Read for SegmentRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.data.len - self.pos) as usize;
        self.data.read_range(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}
