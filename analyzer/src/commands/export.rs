//! `perfpack export`: bundles in another tool's format (folded stacks, pprof, Perfetto's JSON),
//! or every table of them into a Hive-partitioned Parquet dataset.

use std::io::Write as _;
use std::path::PathBuf;

use crate::flamegraph::{self, Options, Weight};

/// What `perfpack export` writes.
#[derive(Debug)]
pub enum Target {
    /// Every table, into this dataset (a directory, `s3://` or `file://` URL).
    Dataset(String),
    /// Folded CPU stacks of an event (default: the first sampled), weighted by period.
    Folded { event: Option<String> },
    /// A gzipped pprof profile of an event's samples.
    Pprof { event: Option<String> },
    /// Chrome trace-event JSON for the Perfetto UI.
    PerfettoJson,
    /// A Firefox Profiler processed profile.
    Firefox,
}

pub fn run(bundles: &[String], target: Target, output: Option<PathBuf>) -> anyhow::Result<()> {
    match target {
        Target::Dataset(dataset) => {
            let mut stdout = std::io::stdout().lock();
            crate::export::dataset::export(bundles, &dataset, &mut stdout)?;
            stdout.flush()?;
            Ok(())
        }
        Target::Pprof { event } => crate::export::pprof::run(bundles, event, output.as_deref()),
        Target::PerfettoJson => crate::export::perfetto::run(bundles, output.as_deref()),
        Target::Firefox => crate::export::firefox::run(bundles, output.as_deref()),
        Target::Folded { event } => {
            let opts = Options {
                event,
                output: output.unwrap_or_else(|| "-".into()),
                ..Options::folded_cpu(Weight::Period)
            };
            crate::bundle::output::write(&opts.output, &flamegraph::draw(bundles, &opts)?)
        }
    }
}
