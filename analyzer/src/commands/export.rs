//! `perfpack export`: bundles in another tool's format (folded stacks, pprof, Perfetto's JSON),
//! or every table of them into a Hive-partitioned Parquet dataset.

use std::io::Write as _;
use std::path::PathBuf;

use crate::flamegraph::{self, Options, Weight};
use crate::scope::Scope;

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
    /// A Firefox Profiler processed profile: the CPU samples, or an event's.
    Firefox { event: Option<String> },
}

pub fn run(
    bundles: &[String],
    target: Target,
    output: Option<PathBuf>,
    scope: Scope,
) -> anyhow::Result<()> {
    if !scope.is_everything() && matches!(target, Target::Dataset(_) | Target::PerfettoJson) {
        anyhow::bail!(
            "--pid, --tid, --comm, --cpu, --from, --to, --where and --cgroup select what folded, \
             pprof and firefox exports hold; a dataset or perfetto-json export holds everything"
        );
    }
    match target {
        Target::Dataset(dataset) => {
            let mut stdout = std::io::stdout().lock();
            crate::export::dataset::export(bundles, &dataset, &mut stdout)?;
            stdout.flush()?;
            Ok(())
        }
        Target::Pprof { event } => {
            crate::export::pprof::run(bundles, event, output.as_deref(), &scope)
        }
        Target::PerfettoJson => crate::export::perfetto::run(bundles, output.as_deref()),
        Target::Firefox { event } => {
            crate::export::firefox::run(bundles, output.as_deref(), &scope, event.as_deref())
        }
        Target::Folded { event } => {
            let opts = Options {
                event,
                scope,
                output: output.unwrap_or_else(|| "-".into()),
                ..Options::folded_cpu(Weight::Period)
            };
            crate::bundle::output::write(&opts.output, &flamegraph::draw(bundles, &opts)?)
        }
    }
}
