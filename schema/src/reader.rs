//! Opens a bundle, a directory or a packed `.ppk` file, in place: validates the manifest and
//! its format version, lists tables and segments, warns about segment files that were never
//! closed, and reads segments with their schema checked against the declarations.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};

use crate::manifest::{Manifest, SegmentEntry};
use crate::pack::PackedArchive;
use crate::storage::{LocalFile, RemoteBundle};
use crate::{Error, MANIFEST_FILE, Result, TABLES_DIR, TableDef, tables};

mod pages;
mod segment;
use pages::check_pages;
pub use segment::SegmentData;

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
        self.check_times(builder.metadata(), seg, &path)?;
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
        check_pages(&data, builder.metadata(), &path, mask.as_ref(), true)?;
        Ok((builder, mask))
    }

    /// The `ts_ns` a row may have: from a day before the recording started to a day after it
    /// ended (ten years after the start while it has no end). Within these, every difference of
    /// two times and every time less the start fits an i64, which the analyzer relies on.
    pub fn ts_range(&self) -> std::ops::RangeInclusive<i64> {
        const DAY: i64 = 86_400 * 1_000_000_000;
        let c = &self.manifest.clocks;
        let start = c.start.monotonic_ns;
        let end = c
            .end
            .map_or(start.saturating_add(3650 * DAY), |e| e.monotonic_ns);
        start.saturating_sub(DAY)..=end.saturating_add(DAY)
    }

    /// Refuses a segment whose `ts_ns` (by the manifest's figures and the footer's statistics)
    /// lies outside [`Bundle::ts_range`], naming it.
    fn check_times(
        &self,
        meta: &parquet::file::metadata::ParquetMetaData,
        seg: &SegmentEntry,
        path: &Path,
    ) -> Result<()> {
        let range = self.ts_range();
        let outside = |what: &str, v: i64| {
            Error::invalid(
                path,
                format!(
                    "{what} ts_ns {v} is outside the recording ({}..={} ns, a day of slack \
                     each side): refused",
                    range.start(),
                    range.end()
                ),
            )
        };
        for (what, v) in [
            ("the manifest's first", seg.min_ts_ns),
            ("the manifest's last", seg.max_ts_ns),
        ] {
            if let Some(v) = v.filter(|v| !range.contains(v)) {
                return Err(outside(what, v));
            }
        }
        let schema = meta.file_metadata().schema_descr();
        let Some(col) =
            (0..schema.num_columns()).find(|&i| schema.column(i).path().string() == "ts_ns")
        else {
            return Ok(());
        };
        for rg in meta.row_groups() {
            if let Some(parquet::file::statistics::Statistics::Int64(s)) =
                rg.column(col).statistics()
            {
                for (what, v) in [("a row's", s.min_opt()), ("a row's", s.max_opt())] {
                    if let Some(&v) = v.filter(|v| !range.contains(v)) {
                        return Err(outside(what, v));
                    }
                }
            }
        }
        Ok(())
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

    /// [`Bundle::verify_tables`] with every page of every column walked and checked as a
    /// decoding read checks them: what a reader that bypasses [`Bundle::open_segment`] (an SQL
    /// engine's own Parquet scan) needs before it decodes anything.
    pub fn verify_pages(&self, which: &[&TableDef]) -> Result<()> {
        for t in which {
            for seg in self.segments(t) {
                self.checked_segment(t, seg, Decode::Columns(None))?;
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
