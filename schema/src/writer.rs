//! Writes a bundle directory: rows are buffered per table for the open segment; closing a segment
//! sorts each table by its sort key, writes one zstd Parquet file per table, and rewrites
//! `manifest.json` atomically (write, fsync, rename). A crash loses at most the open segment.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use arrow_array::{Array, Int64Array, RecordBatch};
use arrow_ord::sort::{SortOptions, sort_to_indices};
use arrow_select::concat::concat_batches;
use arrow_select::take::take_record_batch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::manifest::{ClockSnapshot, Manifest, SegmentEntry, State};
use crate::{Error, MANIFEST_FILE, Result, TABLES_DIR, TableDef, tables};

/// How a bundle is written.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WriterOptions {
    /// Replace an existing bundle at the path instead of refusing.
    pub overwrite: bool,
    /// Rows per Parquet row group: small enough that `ts_ns`/`cpu` statistics prune well.
    pub row_group_rows: usize,
    /// zstd level of the Parquet pages.
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            overwrite: false,
            row_group_rows: 64 * 1024,
            zstd_level: 3,
        }
    }
}

impl WriterOptions {
    /// Replace an existing bundle instead of refusing.
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }

    /// Rows per Parquet row group.
    pub fn row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }
}

/// A bundle being written. Create it, `append` batches, `close_segment` at each boundary, and
/// `finish` at the end.
#[derive(Debug)]
pub struct BundleWriter {
    root: PathBuf,
    manifest: Manifest,
    opts: WriterOptions,
    next_segment: u32,
    pending: BTreeMap<&'static str, Vec<RecordBatch>>,
    pending_bytes: usize,
    /// Dictionary segments that the next `close_segment` drops (table, before this index):
    /// their still needed rows are pending ([`BundleWriter::replace_closed`]).
    replacing: BTreeMap<&'static str, u32>,
}

impl BundleWriter {
    /// Creates the bundle directory and writes the initial manifest (state `recording`).
    /// Refuses an existing path unless `opts.overwrite`.
    pub fn create(
        root: impl Into<PathBuf>,
        manifest: Manifest,
        opts: WriterOptions,
    ) -> Result<Self> {
        let root = root.into();
        if root.exists() {
            if !opts.overwrite {
                return Err(Error::invalid(
                    &root,
                    "already exists; refusing to overwrite (use --force)",
                ));
            }
            let removed = if root.is_dir() {
                fs::remove_dir_all(&root)
            } else {
                fs::remove_file(&root)
            };
            removed.map_err(|e| Error::io(&root, e))?;
        }
        for t in tables::ALL {
            let dir = root.join(TABLES_DIR).join(t.name);
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let mut manifest = manifest;
        manifest.state = State::Recording;
        let writer = BundleWriter {
            root,
            manifest,
            opts,
            next_segment: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            replacing: BTreeMap::new(),
        };
        writer.write_manifest()?;
        Ok(writer)
    }

    /// The bundle directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The manifest as it will be written at the next segment close (sources, losses, cost).
    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Bytes of Arrow data buffered for the open segment; close the segment early when this
    /// grows past the memory budget.
    pub fn buffered_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Number of the segment that the next `close_segment` writes.
    pub fn open_segment(&self) -> u32 {
        self.next_segment
    }

    /// Buffers a batch of `table` rows for the open segment. The batch must have the table's
    /// declared schema.
    pub fn append(&mut self, table: &'static TableDef, batch: RecordBatch) -> Result<()> {
        if batch.schema() != table.schema() {
            return Err(Error::invalid(
                self.root.join(TABLES_DIR).join(table.name),
                "batch does not have the declared schema of the table",
            ));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.pending_bytes += batch.get_array_memory_size();
        self.pending.entry(table.name).or_default().push(batch);
        Ok(())
    }

    /// Writes the open segment (one file per table, empty tables included, so every table of
    /// every bundle has its schema on disk) and rewrites the manifest.
    ///
    /// All or nothing: if any file cannot be written (disk full), the files of this segment that
    /// were written are removed again, the manifest is left as it was, and the rows are dropped.
    pub fn close_segment(&mut self) -> Result<()> {
        let index = self.next_segment;
        self.next_segment += 1;
        self.pending_bytes = 0;
        let mut entries = Vec::with_capacity(tables::ALL.len());
        for t in tables::ALL {
            let batches = self.pending.remove(t.name).unwrap_or_default();
            match self.write_segment_file(t, index, batches) {
                Ok(entry) => entries.push((t.name, entry)),
                Err(e) => {
                    self.pending.clear();
                    // The kept rows of a replacement are gone with the segment: the old
                    // segments stay.
                    self.replacing.clear();
                    for (_, written) in &entries {
                        let _ = fs::remove_file(self.root.join(&written.file));
                    }
                    let _ = fs::remove_file(self.root.join(t.segment_path(index)));
                    return Err(e);
                }
            }
        }
        let before = self.manifest.clone();
        for (name, entry) in entries {
            let table = self.manifest.tables.entry(name.to_string()).or_default();
            table.rows += entry.rows;
            table.segments.push(entry);
        }
        // Replaced dictionary segments leave the manifest in the same write that adds their
        // kept rows, so a reader sees every row once.
        let mut replaced = Vec::new();
        for (name, below) in std::mem::take(&mut self.replacing) {
            if let Some(table) = self.manifest.tables.get_mut(name) {
                let (old, keep): (Vec<_>, Vec<_>) =
                    table.segments.drain(..).partition(|s| s.index < below);
                table.segments = keep;
                for s in old {
                    table.rows -= s.rows;
                    replaced.push(s.file);
                }
            }
        }
        if let Err(e) = self.write_manifest() {
            // The segment's files exist but no manifest lists them: readers skip them.
            self.manifest = before;
            return Err(e);
        }
        for file in replaced {
            let path = self.root.join(&file);
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// Drops the oldest closed segments of event tables (ring mode): their files and their
    /// manifest entries. Dictionary tables (frames, callsites, threads, mappings) keep every
    /// segment, since newer samples refer to rows first written long ago. Returns the bytes
    /// freed.
    pub fn drop_segments_before(&mut self, index: u32) -> Result<u64> {
        let mut freed = 0;
        for (name, table) in &mut self.manifest.tables {
            if tables::by_name(name).is_none_or(|t| t.dictionary) {
                continue;
            }
            let (old, keep): (Vec<_>, Vec<_>) =
                table.segments.drain(..).partition(|s| s.index < index);
            table.segments = keep;
            for s in old {
                table.rows -= s.rows;
                freed += s.bytes;
                let path = self.root.join(&s.file);
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        self.write_manifest()?;
        Ok(freed)
    }

    /// The rows of the closed segments of `table` numbered below `before`, read back.
    pub fn closed_rows(&self, table: &'static TableDef, before: u32) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let Some(t) = self.manifest.tables.get(table.name) else {
            return Ok(out);
        };
        for s in t.segments.iter().filter(|s| s.index < before) {
            let path = self.root.join(&s.file);
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.build())
                .map_err(|cause| Error::Parquet {
                    path: path.clone(),
                    cause,
                })?;
            for batch in reader {
                out.push(batch.map_err(|cause| Error::Arrow {
                    table: table.name.to_string(),
                    cause,
                })?);
            }
        }
        Ok(out)
    }

    /// Ring mode: replaces the closed segments of dictionary `table` numbered below `before`
    /// by those of their rows (`rows`, as [`BundleWriter::closed_rows`] read them) for which
    /// `keep(batch, row)` holds. Those rows are written with the open segment, and the old
    /// segments leave the manifest in the same manifest write (then the disk), so a reader
    /// never sees a row twice or misses one. Returns the rows dropped.
    pub fn replace_closed(
        &mut self,
        table: &'static TableDef,
        before: u32,
        rows: Vec<RecordBatch>,
        keep: impl Fn(&RecordBatch, usize) -> bool,
    ) -> Result<u64> {
        debug_assert!(table.dictionary, "only dictionary tables are compacted");
        let mut dropped = 0u64;
        for batch in rows {
            let mask: arrow_array::BooleanArray = (0..batch.num_rows())
                .map(|i| Some(keep(&batch, i)))
                .collect();
            dropped += (batch.num_rows() - mask.true_count()) as u64;
            let kept =
                arrow_select::filter::filter_record_batch(&batch, &mask).map_err(|cause| {
                    Error::Arrow {
                        table: table.name.to_string(),
                        cause,
                    }
                })?;
            self.append(table, kept)?;
        }
        self.replacing.insert(table.name, before);
        Ok(dropped)
    }

    /// Closes the open segment if it has rows, records the end clock and the final state, and
    /// writes the manifest one last time.
    pub fn finish(mut self, state: State, end: ClockSnapshot) -> Result<Manifest> {
        if !self.pending.is_empty() || self.next_segment == 0 {
            self.close_segment()?;
        }
        self.manifest.state = state;
        self.manifest.clocks.end = Some(end);
        self.write_manifest()?;
        Ok(self.manifest)
    }

    /// Ends a recording that stopped on an error: drops the rows of the open segment and
    /// writes the manifest with state `interrupted` (best effort: on a full disk even that may
    /// fail, and the last manifest, listing every closed segment, stays).
    pub fn abort(mut self, end: ClockSnapshot) -> Result<Manifest> {
        self.pending.clear();
        self.manifest.state = State::Interrupted;
        self.manifest.clocks.end = Some(end);
        self.write_manifest()?;
        Ok(self.manifest)
    }

    fn write_segment_file(
        &self,
        table: &'static TableDef,
        index: u32,
        batches: Vec<RecordBatch>,
    ) -> Result<SegmentEntry> {
        let rel = table.segment_path(index);
        let path = self.root.join(&rel);
        let schema = table.schema();
        // Batches that arrive in order (the recorder merges its streams) are written as they
        // are; otherwise they are concatenated and sorted here.
        let batches = if in_order(table, &batches) {
            batches
        } else {
            let batch = concat_batches(&schema, &batches).map_err(|cause| Error::Arrow {
                table: table.name.to_string(),
                cause,
            })?;
            vec![sort_batch(table, batch)?]
        };
        let (min_ts_ns, max_ts_ns) = match (batches.first(), batches.last()) {
            (Some(a), Some(b)) => (ts_range(table, a).0, ts_range(table, b).1),
            _ => (None, None),
        };
        let n_rows: usize = batches.iter().map(RecordBatch::num_rows).sum();

        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(self.opts.zstd_level).unwrap_or_default(),
            ))
            .set_max_row_group_row_count(Some(self.opts.row_group_rows))
            // Min/max per row group for every column; per page (the page index) only for the
            // sort key, where time ranges prune pages. A page index on every column costs more
            // than it saves in the many small files of a short capture.
            .set_statistics_enabled(EnabledStatistics::Chunk);
        if let Some(key) = table.sort_key {
            let path = parquet::schema::types::ColumnPath::from(key);
            props = props.set_column_statistics_enabled(path.clone(), EnabledStatistics::Page);
            // Sorted timestamps are nearly all distinct: a dictionary never pays (the writer
            // hashes every value before giving up on it), while their deltas are small.
            // DELTA_BINARY_PACKED stores ~1-2 bytes per event row instead of 8 (then zstd).
            props = props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
            let column_idx = schema.index_of(key).expect("sort key is a declared column");
            props = props.set_sorting_columns(Some(vec![SortingColumn {
                column_idx: column_idx as i32,
                descending: false,
                nulls_first: false,
            }]));
        }
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        // The Arrow schema is embedded only where reading the Parquet schema back would not give
        // the same types (maps name their parts); elsewhere it is ~1 KB of every file for nothing.
        let options = ArrowWriterOptions::new()
            .with_properties(props.build())
            .with_skip_arrow_metadata(!needs_arrow_schema(&schema));
        let mut writer = ArrowWriter::try_new_with_options(file, schema, options)
            .map_err(|e| Error::parquet(&path, e))?;
        for batch in &batches {
            // The writer cuts row groups at `row_group_rows` across calls.
            writer.write(batch).map_err(|e| Error::parquet(&path, e))?;
        }
        let file = writer.into_inner().map_err(|e| Error::parquet(&path, e))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        let bytes = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        Ok(SegmentEntry {
            index,
            file: rel,
            rows: n_rows as u64,
            bytes,
            min_ts_ns,
            max_ts_ns,
        })
    }

    /// Writes `manifest.json` through a temporary file and a rename, so a reader (or a crash)
    /// sees either the old or the new manifest, never half of one.
    fn write_manifest(&self) -> Result<()> {
        write_atomic(
            &self.root.join(MANIFEST_FILE),
            self.manifest.to_json().as_bytes(),
        )
    }
}

/// Whether a schema has types that Parquet alone does not round-trip exactly.
fn needs_arrow_schema(schema: &arrow_schema::Schema) -> bool {
    schema.fields().iter().any(|f| {
        !matches!(
            f.data_type(),
            arrow_schema::DataType::Int8
                | arrow_schema::DataType::Int16
                | arrow_schema::DataType::Int32
                | arrow_schema::DataType::Int64
                | arrow_schema::DataType::UInt8
                | arrow_schema::DataType::UInt16
                | arrow_schema::DataType::UInt32
                | arrow_schema::DataType::UInt64
                | arrow_schema::DataType::Float32
                | arrow_schema::DataType::Float64
                | arrow_schema::DataType::Boolean
                | arrow_schema::DataType::Utf8
        )
    })
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(dir) = path.parent() {
        // Persist the rename itself; a directory fsync failing is not worth losing the data over.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Sorts a batch by the table's sort key (stable, so equal timestamps keep arrival order).
/// Already sorted input is detected and left alone.
fn sort_batch(table: &TableDef, batch: RecordBatch) -> Result<RecordBatch> {
    let Some(key) = table.sort_key else {
        return Ok(batch);
    };
    let column = batch
        .column_by_name(key)
        .expect("sort key is a declared column");
    if let Some(ts) = column.as_any().downcast_ref::<Int64Array>()
        && ts.null_count() == 0
        && ts.values().windows(2).all(|w| w[0] <= w[1])
    {
        return Ok(batch);
    }
    let arrow_err = |cause| Error::Arrow {
        table: table.name.to_string(),
        cause,
    };
    let indices = sort_to_indices(column, Some(SortOptions::default()), None).map_err(arrow_err)?;
    take_record_batch(&batch, &indices).map_err(arrow_err)
}

/// Whether every batch is sorted by the table's key and each starts at or after the end of
/// the one before, so writing them one after the other gives a sorted file.
fn in_order(table: &TableDef, batches: &[RecordBatch]) -> bool {
    let Some(key) = table.sort_key else {
        return true;
    };
    let mut last = i64::MIN;
    for b in batches {
        let Some(ts) = b
            .column_by_name(key)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        else {
            return false;
        };
        if ts.null_count() > 0 {
            return false;
        }
        let v = ts.values();
        if v.first().is_some_and(|&f| f < last) || !v.windows(2).all(|w| w[0] <= w[1]) {
            return false;
        }
        last = v.last().copied().unwrap_or(last);
    }
    true
}

/// Smallest and largest `ts_ns` of a sorted batch, for tables that have the column.
fn ts_range(table: &TableDef, batch: &RecordBatch) -> (Option<i64>, Option<i64>) {
    if table.sort_key != Some("ts_ns") || batch.num_rows() == 0 {
        return (None, None);
    }
    let ts = batch
        .column_by_name("ts_ns")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>());
    match ts {
        Some(ts) => (Some(ts.value(0)), Some(ts.value(ts.len() - 1))),
        None => (None, None),
    }
}
