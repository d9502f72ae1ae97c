//! A segment's bytes where they lie (a file, or a range of a packed bundle or a remote object),
//! read with positional reads, as Parquet's `ChunkReader`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parquet::file::reader::{ChunkReader, Length};

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};

use super::pages::check_pages;
use crate::storage::RandomAccess;
use crate::{Error, Result};

/// A segment's bytes in place: a whole file or a range of a packed bundle, read with positional
/// reads so several readers can share one file handle.
#[derive(Debug, Clone)]
pub struct SegmentData {
    file: Arc<dyn RandomAccess>,
    offset: u64,
    pub(super) len: u64,
    pub(super) display: PathBuf,
}

impl SegmentData {
    /// The footer of this segment, for [`SegmentData::check_range`].
    pub fn footer(&self) -> Result<Arc<parquet::file::metadata::ParquetMetaData>> {
        let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
        ArrowReaderMetadata::load(self, options)
            .map(|m| m.metadata().clone())
            .map_err(|e| Error::invalid(&self.display, format!("not a readable Parquet file: {e}")))
    }

    /// Checks the pages of every column chunk that the byte range `range` of this segment
    /// overlaps, as a decoding read would (see `check_pages`): for readers that fetch the
    /// chunks themselves (DataFusion's scan of a bundle read in place from an object store),
    /// so that each chunk is checked as it is first fetched. The leaves in `done` are not
    /// checked again; those checked now are added to it. (The row count was checked when the
    /// bundle was opened.)
    pub fn check_range(
        &self,
        footer: &parquet::file::metadata::ParquetMetaData,
        range: std::ops::Range<u64>,
        done: &mut std::collections::BTreeSet<usize>,
    ) -> Result<()> {
        let mut leaves = Vec::new();
        for rg in footer.row_groups() {
            for (leaf, c) in rg.columns().iter().enumerate() {
                let start = c
                    .dictionary_page_offset()
                    .unwrap_or(c.data_page_offset())
                    .max(0) as u64;
                let end = start.saturating_add(c.compressed_size().max(0) as u64);
                if start < range.end
                    && range.start < end
                    && !done.contains(&leaf)
                    && !leaves.contains(&leaf)
                {
                    leaves.push(leaf);
                }
            }
        }
        if !leaves.is_empty() {
            let mask = ProjectionMask::leaves(
                footer.file_metadata().schema_descr(),
                leaves.iter().copied(),
            );
            check_pages(self, footer, &self.display, Some(&mask), false)?;
            done.extend(leaves);
        }
        Ok(())
    }

    /// All of `file`, named `display` in messages (a segment file of a dataset, say).
    pub fn new(file: Arc<dyn RandomAccess>, display: PathBuf) -> Self {
        let len = file.len();
        Self::range(file, 0, len, display)
    }

    pub(super) fn range(
        file: Arc<dyn RandomAccess>,
        offset: u64,
        len: u64,
        display: PathBuf,
    ) -> Self {
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
