//! `perfpack`: the analyzer. Reads bundles (directories or packed files) anywhere, later.
//!
//! The binary is `src/main.rs`; this library holds everything so that the fuzz targets under
//! `fuzz/` reach the importers ([`import`]) as the command does.

mod analysis;
mod bundle;
pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
mod commands;
mod compare;
mod correlate;
mod export;
mod flamegraph;
mod fleet;
mod fold;
pub mod harness;
mod heatmap;
pub mod import;
mod info;
mod intern;
mod latency;
mod picture;
mod redact;
mod render;
mod report;
mod scope;
mod sql;
mod stacks;
mod svg;
mod text_table;
mod utilization;

#[cfg(feature = "cluster")]
use crate::cli::ClusterCommand;
use crate::cli::{Cli, Command, ExportFormat};
use crate::commands::export::Target;

/// Runs one command line; `main` prints the error.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    bundle::location::set_endpoint(cli.endpoint.clone());
    let result = run_command(cli.command);
    bundle::location::print_stats();
    result
}

/// Hands each subcommand's request to its `commands` module.
fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Info { bundles, format } => commands::info::run(&bundles.bundles, format),
        Command::Sql(a) => commands::sql::run(a.request()),
        Command::Queries { format } => commands::sql::list_queries(format),
        Command::Flamegraph(mut a) => {
            let bundles = std::mem::take(&mut a.bundles.bundles);
            commands::flamegraph::run(&bundles, &a.options()?)
        }
        Command::Heatmap(a) => commands::heatmap::run(a.request()?),
        Command::Latency(a) => commands::latency::run(a.request()?),
        Command::Compare(a) => commands::compare::run(a.request()),
        Command::Fleet(a) => commands::fleet::run(&a.bundles.bundles, a.format, a.event.as_deref()),
        Command::Correlate(a) => commands::correlate::run(a.request()),
        Command::Report(a) => commands::report::run(a.request()),
        Command::Redact(a) => commands::redact::run(a.options()),
        Command::Import {
            kind,
            file,
            output,
            force,
        } => commands::import::run(kind, &file, &output, force),
        Command::Export {
            bundles,
            dataset,
            format,
            event,
            output,
            scope,
        } => {
            let target = match (dataset, format) {
                (Some(d), _) => Target::Dataset(d),
                (None, ExportFormat::Folded) => Target::Folded { event },
                (None, ExportFormat::Pprof) => Target::Pprof { event },
                (None, ExportFormat::PerfettoJson) => Target::PerfettoJson,
                (None, ExportFormat::Firefox) => Target::Firefox { event },
            };
            commands::export::run(&bundles.bundles, target, output, scope.scope()?)
        }
        Command::Pack { dir, output, force } => commands::pack::pack(&dir, &output, force),
        Command::Unpack { file, output } => commands::pack::unpack(&file, &output),
        #[cfg(feature = "cluster")]
        Command::Cluster(node) => commands::cluster::run(match node {
            ClusterCommand::Scheduler(a) => commands::cluster::Node::Scheduler(a.into()),
            ClusterCommand::Executor(a) => commands::cluster::Node::Executor(a.into()),
        }),
    }
}
