//! The perfpack bundle format: table declarations (Arrow schemas with column docs), the manifest,
//! the bundle layout, and the reader and writer that both binaries use.
//!
//! A bundle is a directory `NAME.ppk/` (or the same packed into one stored ZIP file):
//!
//! ```text
//! manifest.json
//! tables/<table>/seg-000000.parquet
//! tables/<table>/seg-000001.parquet
//! ```
//!
//! This crate knows nothing of perf_event, tracefs or SQL engines.

pub mod column;
mod docs;
mod error;
pub mod fxhash;
pub mod harness;
pub mod manifest;
pub mod pack;
mod reader;
#[doc(hidden)]
pub mod skip;
pub mod storage;
pub mod syscalls_x86_64;
pub mod tables;
pub mod time;
pub mod units;
mod writer;

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};

pub use column::{Column, KindId};
pub use docs::schema_markdown;
pub use error::{Error, Result, one_line};
pub use manifest::{FORMAT_VERSION, Manifest};
pub use reader::{Bundle, SegmentData, SegmentSource};
pub use storage::{LocalFile, RandomAccess, RemoteBundle};
pub use writer::{BundleWriter, WriterOptions};

/// Name of the manifest file at the root of a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Directory holding one sub-directory per table.
pub const TABLES_DIR: &str = "tables";

/// The declaration of one table.
#[derive(Debug)]
pub struct TableDef {
    /// Table name, also its directory under `tables/` and its SQL name.
    pub name: &'static str,
    /// What a row is.
    pub doc: &'static str,
    /// Column every file of the table is sorted by, if any.
    pub sort_key: Option<&'static str>,
    /// Whether rows of later segments refer to this table's rows (frames, callsites, threads,
    /// mappings): ring mode keeps its segments when it drops old event data.
    pub dictionary: bool,
    /// The columns, in storage order.
    pub columns: &'static [Column],
}

impl TableDef {
    /// The Arrow schema of the table.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns.iter().map(Column::field).collect::<Vec<_>>(),
        ))
    }

    /// Relative path of segment `index` of this table inside a bundle.
    pub fn segment_path(&self, index: u32) -> String {
        segment_path(self.name, index)
    }

    /// The name SQL sessions give the stored table: its own, except `ftrace_event`, whose name
    /// goes to the analyzer's view of every event (the hot events are stored in their typed
    /// tables only, and the view adds them back).
    pub fn sql_name(&self) -> &'static str {
        if self.name == "ftrace_event" {
            "ftrace_event_stored"
        } else {
            self.name
        }
    }
}

/// Relative path of segment `index` of `table` inside a bundle.
pub fn segment_path(table: &str, index: u32) -> String {
    format!("{TABLES_DIR}/{table}/seg-{index:06}.parquet")
}
