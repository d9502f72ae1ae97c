//! `perfpack sql` and `perfpack queries`: resolve the arguments (bundles, a library view name,
//! a query or a file), open the session and print the rows, or start the shell.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::Format;
use crate::sql::{OutFormat, Remote, Session, SessionOptions, library, shell};

/// What `perfpack sql` runs, over what.
#[derive(Debug)]
pub struct Request {
    /// Bundles, and perhaps last a library view's name.
    pub args: Vec<String>,
    /// A dataset written by `perfpack export --dataset`, queried in place.
    pub dataset: Option<String>,
    /// A Ballista scheduler, df://HOST:PORT.
    pub cluster: Option<String>,
    pub query: Option<String>,
    /// A file of SQL statements; the last one's rows are printed.
    pub file: Option<PathBuf>,
    pub format: OutFormat,
    /// Write the rows to this file instead of stdout.
    pub output: Option<PathBuf>,
    /// Allow DDL/DML, CREATE EXTERNAL TABLE and COPY.
    pub allow_ddl: bool,
    /// Memory the query engine may use before spilling to disk.
    pub memory_limit: Option<usize>,
    /// Give up on a query that runs longer than this many ns.
    pub timeout: Option<i64>,
}

pub fn run(a: Request) -> anyhow::Result<()> {
    let mut bundle_args = a.args;
    // `perfpack sql B... NAME`: a last argument that is not a path but a view name.
    let mut view = None;
    if let Some(last) = bundle_args.last()
        && !Path::new(last).exists()
        && let Some(v) = library::find(last)
    {
        if a.query.is_some() || a.file.is_some() {
            bail!("give either a view name ({}) or -q/-f, not both", v.name);
        }
        view = Some(v);
        bundle_args.pop();
    }
    if bundle_args.is_empty() && a.dataset.is_none() {
        bail!("no bundle given");
    }
    if !bundle_args.is_empty() && a.dataset.is_some() {
        bail!("give bundles or --dataset, not both");
    }
    let sql = if let Some(v) = &view {
        Some(v.select_sql())
    } else if let Some(q) = a.query {
        Some(q)
    } else if let Some(f) = &a.file {
        Some(std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?)
    } else if !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading SQL from stdin")?;
        Some(s)
    } else {
        None
    };

    let dataset = a
        .dataset
        .as_deref()
        .map(crate::bundle::dataset::Dataset::at)
        .transpose()?;
    let bundles = match dataset {
        Some(_) => Vec::new(),
        None => crate::bundle::open_all(&bundle_args)?,
    };
    let mut opts = SessionOptions::default()
        .allow_ddl(a.allow_ddl)
        .cluster(a.cluster.map(remote).transpose()?);
    if let Some(m) = a.memory_limit {
        opts = opts.memory_limit(m);
    }
    if let (Some(ns), Some(_)) = (a.timeout, &sql) {
        watchdog(ns, a.output.clone());
    }
    crate::sql::runtime()?.block_on(async {
        let session = match &dataset {
            Some(d) => Session::open_dataset(d, &opts).await?,
            None => Session::open(&bundles, &opts).await?,
        };
        match sql {
            None => shell::run(&session, a.format).await,
            Some(sql) => {
                let mut frames = session.plan(&sql).await?;
                let last = frames.pop().expect("plan returns at least one statement");
                // Earlier statements (SET, CREATE VIEW with --allow-ddl) run for their effect.
                for df in frames {
                    df.collect().await.map_err(crate::sql::error)?;
                }
                crate::sql::output::write(last, a.format, a.output.as_deref()).await?;
                Ok(())
            }
        }
    })
}

/// `--timeout`: a thread that ends the process when the query outlives its time. The engine's
/// tasks do not yield to a timer while they compute, so a timer inside the runtime would not
/// fire; a plain thread does, removes the output's temporary file, and exits with an error.
fn watchdog(ns: i64, output: Option<PathBuf>) {
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_nanos(ns.max(0) as u64));
        if let Some(p) = &output {
            let _ = std::fs::remove_file(crate::bundle::output::temp_path(p));
        }
        eprintln!(
            "perfpack: the query ran longer than --timeout {} and was stopped{}",
            crate::svg::human_ns(ns),
            if output.is_some() {
                "; nothing was written"
            } else {
                ""
            }
        );
        std::process::exit(1);
    });
}

/// `perfpack queries`: the library's views.
pub fn list_queries(format: Format) -> anyhow::Result<()> {
    let views = library::views();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let items: Vec<_> = views
                .iter()
                .map(|v| {
                    serde_json::json!({
                        "name": v.name,
                        "file": format!("queries/{}", v.file),
                        "summary": v.summary,
                        "description": v.doc,
                        "columns": v.columns.iter().map(|(c, m)| serde_json::json!({"name": c, "meaning": m})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &items)?;
            writeln!(out)?;
        }
        Format::Table => {
            let width = views.iter().map(|v| v.name.len()).max().unwrap_or(0);
            for v in &views {
                writeln!(out, "{:<width$}  {}", v.name, v.summary)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// `--cluster URL`: the Ballista cluster queries run on.
#[cfg(feature = "cluster")]
fn remote(url: String) -> anyhow::Result<Remote> {
    Ok(Remote {
        url,
        connect: |url, ctx| Box::pin(async move { crate::cluster::remote(&url, ctx).await }),
    })
}

#[cfg(not(feature = "cluster"))]
fn remote(url: String) -> anyhow::Result<Remote> {
    bail!(
        "--cluster {url}: this perfpack was built without Ballista (cargo build --features cluster)"
    )
}
