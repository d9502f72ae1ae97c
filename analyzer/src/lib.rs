//! `perfpack`: the analyzer. Reads bundles (directories or packed files) anywhere, later.
//!
//! The binary is `src/main.rs`; this library holds everything so that the fuzz targets under
//! `fuzz/` reach the importers ([`import`]) as the command does.

mod analysis;
mod bundles;
pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
mod compare;
mod correlate;
mod dataset;
mod flamegraph;
mod fleet;
mod fold;
pub mod harness;
mod heatmap;
pub mod import;
mod info;
mod intern;
mod latency;
pub mod location;
mod perfetto;
mod picture;
mod pprof;
mod redact;
mod report;
mod scope;
mod sql;
mod sql_command;
mod stacks;
mod staged;
mod svg;
mod text_table;
mod utilization;

use std::io::Write as _;

use anyhow::Context as _;

use crate::cli::{Cli, Command, Format};

/// Runs one command line; `main` prints the error.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    location::set_endpoint(cli.endpoint.clone());
    let result = run_command(cli);
    location::print_stats();
    result
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Info { bundles, format } => {
            let bundles = bundles::open_all(&bundles.bundles)?;
            let infos: Vec<_> = bundles.iter().map(info::summarize).collect();
            match format {
                Format::Json => {
                    serde_json::to_writer_pretty(&mut stdout, &infos)?;
                    writeln!(stdout)?;
                }
                Format::Table => {
                    for (i, info) in infos.iter().enumerate() {
                        if i > 0 {
                            writeln!(stdout)?;
                        }
                        stdout.write_all(info::render_text(info).as_bytes())?;
                    }
                }
            }
        }
        Command::Sql(args) => sql_command::run(args)?,
        Command::Flamegraph(a) => flamegraph::run(
            &a.bundles.bundles,
            &flamegraph::Options {
                kind: a.kind,
                scope: a.scope.scope()?,
                event: a.event,
                weight: a.weight,
                inverted: a.inverted,
                reverse: a.reverse,
                folded: a.folded,
                wakers: !a.no_wakers,
                no_idle: a.no_idle,
                ref_mhz: a.ref_mhz,
                title: a.title,
                output: a.output,
            },
        )?,
        Command::Heatmap(a) => heatmap::run(a)?,
        Command::Latency(a) => latency::run(a)?,
        Command::Compare(a) => compare::run(a)?,
        Command::Fleet(a) => fleet::run(a)?,
        Command::Correlate(a) => correlate::run(a)?,
        Command::Report(a) => report::run(a)?,
        Command::Redact(a) => redact::run(a)?,
        Command::Queries { format } => sql_command::list_queries(format)?,
        Command::Import {
            kind,
            file,
            output,
            force,
        } => {
            let report = import::run(kind, &file, &output, force)?;
            report.print(&mut stdout, &file, &output)?;
        }
        Command::Export {
            bundles,
            dataset: Some(dataset),
            ..
        } => dataset::export(&bundles.bundles, &dataset, &mut stdout)?,
        Command::Export {
            bundles,
            format: cli::ExportFormat::Pprof,
            event,
            output,
            ..
        } => pprof::run(&bundles.bundles, event, output.as_deref())?,
        Command::Export {
            bundles,
            format: cli::ExportFormat::PerfettoJson,
            output,
            ..
        } => perfetto::run(&bundles.bundles, output.as_deref())?,
        Command::Export {
            bundles,
            format: cli::ExportFormat::Folded,
            event,
            output,
            ..
        } => flamegraph::run(
            &bundles.bundles,
            &flamegraph::Options {
                event,
                output: output.unwrap_or_else(|| "-".into()),
                ..flamegraph::Options::folded_cpu(flamegraph::Weight::Period)
            },
        )?,
        Command::Pack { dir, output, force } => {
            // Refuse to pack something that is not a readable bundle.
            let bundle = perfpack_schema::Bundle::open(&dir)?;
            if bundle.is_packed() {
                anyhow::bail!("{}: already a packed bundle", dir.display());
            }
            bundle.verify()?;
            let bytes = perfpack_schema::pack::pack_dir(&dir, &output, force)?;
            writeln!(
                stdout,
                "packed {} into {} ({bytes} bytes)",
                dir.display(),
                output.display()
            )?;
        }
        #[cfg(feature = "cluster")]
        Command::Cluster(node) => sql_command::runtime()?.block_on(async {
            match node {
                cli::ClusterCommand::Scheduler(a) => cluster::run_scheduler(a).await,
                cli::ClusterCommand::Executor(a) => cluster::run_executor(a).await,
            }
        })?,
        Command::Unpack { file, output } => {
            perfpack_schema::pack::unpack(&file, &output)
                .with_context(|| format!("unpacking {}", file.display()))?;
            writeln!(
                stdout,
                "unpacked {} into {}",
                file.display(),
                output.display()
            )?;
        }
    }
    stdout.flush()?;
    Ok(())
}
