//! Writes query results as an aligned table, CSV, JSON or Parquet, streaming batch by batch
//! except for the aligned table (which needs every row to size its columns). A file output is
//! written next to its destination and renamed into place, so a failed query leaves no half
//! file behind and never clobbers an existing one halfway.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::csv;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::json::{self, writer::JsonArray};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;
use datafusion::prelude::DataFrame;
use futures::StreamExt as _;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Output formats of `perfpack sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    /// Aligned text table
    Table,
    /// Comma-separated values with a header line
    Csv,
    /// A JSON array of objects (nulls written out)
    Json,
    /// A zstd Parquet file (needs -o)
    Parquet,
}

/// Runs `df` and writes its rows to `out` (or stdout). Returns the number of rows.
pub async fn write(df: DataFrame, format: OutFormat, out: Option<&Path>) -> anyhow::Result<u64> {
    match out {
        None => {
            if format == OutFormat::Parquet {
                bail!("--format parquet writes a file: give -o OUT.parquet");
            }
            // `Stdout` (not its lock) because the writer lives across awaits on any thread.
            let mut w = std::io::BufWriter::new(PipeWatch {
                inner: std::io::stdout(),
                broken: false,
            });
            let result = async {
                let n = write_to(df, format, &mut w).await?;
                w.flush()?;
                anyhow::Ok(n)
            }
            .await;
            // Arrow's CSV and JSON writers turn I/O errors into strings; a reader that went
            // away (`| head`) must still read as a closed pipe, which is not a failure.
            if result.is_err() && w.get_ref().broken {
                return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe).into());
            }
            result
        }
        Some(path) if crate::bundle::staged::special_file(path).is_some() => {
            // A device or FIFO (`-o /dev/null`): written into, since a rename would replace it.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("{}: cannot open", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let n = write_to(df, format, &mut w).await?;
            w.flush()
                .with_context(|| format!("{}: write failed", path.display()))?;
            Ok(n)
        }
        Some(path) => {
            let tmp = crate::bundle::output::temp_path(path);
            // Removes the temporary file however this ends: an error, or the future dropped
            // (`--timeout`).
            struct Cleanup<'a>(&'a Path);
            impl Drop for Cleanup<'_> {
                fn drop(&mut self) {
                    let _ = std::fs::remove_file(self.0);
                }
            }
            let _cleanup = Cleanup(&tmp);
            async {
                let file = std::fs::File::create(&tmp)
                    .with_context(|| format!("{}: cannot create", tmp.display()))?;
                let mut w = std::io::BufWriter::new(file);
                let n = write_to(df, format, &mut w).await?;
                w.flush()
                    .with_context(|| format!("{}: write failed", path.display()))?;
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("{}: cannot rename into place", path.display()))?;
                anyhow::Ok(n)
            }
            .await
        }
    }
}

/// CSV has no lists or maps: such columns are written as their display text (`[a, b]`,
/// `{k: v}`), as the table format shows them.
fn flatten_nested(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| f.data_type().is_nested())
    {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type().is_nested() {
            let fmt = ArrayFormatter::try_new(col.as_ref(), &options)?;
            let text: StringArray = (0..col.len())
                .map(|i| (!col.is_null(i)).then(|| fmt.value(i).to_string()))
                .collect();
            fields.push(Field::new(field.name(), DataType::Utf8, true));
            columns.push(Arc::new(text));
        } else {
            fields.push(field.as_ref().clone());
            columns.push(col.clone());
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Remembers whether the reader of a pipe went away.
struct PipeWatch<W> {
    inner: W,
    broken: bool,
}

impl<W: Write> Write for PipeWatch<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| {
            self.broken |= e.kind() == std::io::ErrorKind::BrokenPipe;
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|e| {
            self.broken |= e.kind() == std::io::ErrorKind::BrokenPipe;
        })
    }
}

/// Writes every row of `df` to `w` in `format`.
pub async fn write_to<W: Write + Send>(
    df: DataFrame,
    format: OutFormat,
    w: &mut W,
) -> anyhow::Result<u64> {
    let schema = df.schema().inner().clone();
    let mut stream = df.execute_stream().await.map_err(super::error)?;
    let mut n_rows = 0u64;
    match format {
        OutFormat::Table => {
            let mut batches: Vec<RecordBatch> = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(super::error)?;
                n_rows += batch.num_rows() as u64;
                batches.push(batch);
            }
            writeln!(
                w,
                "{}",
                pretty_format_batches_with_schema(schema, &batches)?
            )?;
        }
        OutFormat::Csv => {
            let mut writer = csv::WriterBuilder::new().with_header(true).build(&mut *w);
            let mut wrote = false;
            while let Some(batch) = stream.next().await {
                let batch = flatten_nested(&batch.map_err(super::error)?)?;
                n_rows += batch.num_rows() as u64;
                writer.write(&batch)?;
                wrote = true;
            }
            if !wrote {
                // The header of an empty result still says what the columns are.
                writer.write(&flatten_nested(&RecordBatch::new_empty(schema))?)?;
            }
        }
        OutFormat::Json => {
            let mut writer = json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(&mut *w);
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(super::error)?;
                n_rows += batch.num_rows() as u64;
                writer.write(&batch)?;
            }
            writer.finish()?;
            drop(writer);
            writeln!(w)?;
        }
        OutFormat::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let mut writer = ArrowWriter::try_new(&mut *w, schema, Some(props))?;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(super::error)?;
                n_rows += batch.num_rows() as u64;
                writer.write(&batch)?;
            }
            writer.close()?;
        }
    }
    Ok(n_rows)
}
