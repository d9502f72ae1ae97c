//! `perfpack heatmap`: a latency heat map (block, run queue, syscalls, any SQL), the sub-second
//! offset heat map of CPU samples, or the CPU and process utilization heat maps.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use perfpack_schema::Bundle;
use perfpack_schema::manifest::sources;

use crate::analysis::time::origin;
use crate::heatmap::{Rows, Source, bin, clock_event, latency_source, source_query};
use crate::picture::{self, Progress};
use crate::render::heatmap::render;
use crate::scope::Scope;
use crate::sql::{Session, SessionOptions};
use crate::svg;

/// What `perfpack heatmap` draws.
#[derive(Debug)]
pub struct Request {
    pub bundles: Vec<String>,
    /// A latency source, or CPU samples by sub-second offset (FlameScope).
    pub source: Source,
    /// A query yielding ts_ns and latency_ns columns (and optionally bundle) instead.
    pub sql: Option<String>,
    pub scope: Scope,
    /// Column width in time (default: a round step giving at most 200 columns; 1 s for samples).
    pub step: Option<i64>,
    /// Log2 latency rows.
    pub log: bool,
    /// Linear rows: the top of the latency axis.
    pub max: Option<i64>,
    /// Linear rows: how many (samples: rows per second).
    pub rows: u32,
    /// `Source::Process`: how many of the busiest processes.
    pub top: usize,
    pub title: Option<String>,
    /// The SVG file to write (`-` for stdout).
    pub output: PathBuf,
}

/// The SELECT that yields (bundle, ts_ns, latency_ns) for the options.
fn query(a: &Request, pred: &str) -> String {
    match &a.sql {
        Some(sql) => format!("SELECT * FROM ({sql}) WHERE {pred}"),
        None => source_query(a.source, pred),
    }
}

pub fn run(a: Request) -> anyhow::Result<()> {
    let bundles = crate::bundle::open_all(&a.bundles)?;
    if a.sql.is_none() && matches!(a.source, Source::Cpu | Source::Process) {
        return utilization(&a, &bundles);
    }
    let scope = &a.scope;
    let samples = a.sql.is_none() && a.source == Source::Samples;
    if a.rows == 0 {
        bail!("--rows must be at least 1");
    }
    if samples && (a.log || a.max.is_some()) {
        bail!("--log and --max are for latency heat maps; samples rows are offsets in the column");
    }
    if a.step.is_some_and(|s| s <= 0) || a.max.is_some_and(|m| m <= 0) {
        bail!("--step and --max must be positive durations");
    }
    let origin = origin(&bundles);
    let step = a.step.unwrap_or_else(|| {
        if samples {
            1_000_000_000
        } else {
            svg::nice_step(origin.span.max(1), 200).max(1_000_000)
        }
    });
    let rows = if samples {
        Rows::Offset {
            height: (step / a.rows as i64).max(1),
            n: a.rows,
        }
    } else if a.log {
        Rows::Log2
    } else if let Some(max) = a.max {
        Rows::Fixed {
            height: (max / a.rows as i64).max(1),
            n: a.rows,
        }
    } else {
        Rows::Doubling {
            shift: 0,
            n: a.rows,
        }
    };
    let progress = Progress::new();
    let result = crate::sql::runtime()?.block_on(async {
        let session = Session::open(&bundles, &SessionOptions::default()).await?;
        let pred = scope.sql(&bundles, session.names())?;
        progress.phase("binning");
        let cells = bin(&session, &query(&a, &pred), rows, step, &origin, &progress)
            .await
            .with_context(|| if a.sql.is_some() { "--sql" } else { "--where" })?;
        let names = session.names().to_vec();
        anyhow::Ok((cells, names))
    });
    progress.finish();
    let (cells, names) = result?;
    if cells.events == 0 && cells.above > 0 {
        bail!(
            "nothing to draw: all {} latencies are above --max",
            cells.above
        );
    }
    if cells.events == 0 {
        bail!(
            "nothing to draw: no {} {}",
            if samples {
                "stack samples"
            } else {
                "latencies"
            },
            if scope.is_everything() {
                "in the bundle(s)"
            } else {
                "match the selection"
            }
        );
    }
    let what = if a.sql.is_some() {
        "latency (--sql)".to_string()
    } else if samples {
        "CPU samples by offset within the second".to_string()
    } else {
        latency_source(a.source).what().to_string()
    };
    let noun = if samples {
        "samples"
    } else if a.sql.is_some() {
        "events"
    } else {
        latency_source(a.source).noun()
    };
    let mut sub = vec![picture::describe_bundles(&names), origin.describe()];
    sub.push(format!("{} {noun}", picture::group_digits(cells.events)));
    if cells.above > 0 {
        sub.push(format!(
            "{} above --max not drawn",
            picture::group_digits(cells.above)
        ));
    }
    sub.extend(scope.describe());
    sub.push(picture::describe_losses(
        &bundles,
        if samples {
            &[sources::PERF_SAMPLES]
        } else {
            &[sources::FTRACE]
        },
    ));
    let title = a.title.clone().unwrap_or_else(|| {
        if samples {
            "Sub-second Offset Heat Map".into()
        } else {
            format!("Latency Heat Map: {what}")
        }
    });
    let out = render(&cells, &title, &sub.join(" · "), noun, samples);
    crate::bundle::output::write(&a.output, out.as_bytes())
}

/// `--source cpu|process`: the utilization heat maps.
fn utilization(a: &Request, bundles: &[Bundle]) -> anyhow::Result<()> {
    if a.log || a.max.is_some() || !a.scope.is_everything() {
        bail!("--log, --max and selections are for latency heat maps, not --source cpu|process");
    }
    if a.step.is_some_and(|s| s <= 0) {
        bail!("--step must be a positive duration");
    }
    let origin = origin(bundles);
    let step = a.step.unwrap_or(1_000_000_000);
    let (u, names) = crate::sql::runtime()?.block_on(async {
        let session = Session::open(bundles, &SessionOptions::default()).await?;
        let u = match a.source {
            Source::Cpu => crate::utilization::cpus(&session, &origin, step).await?,
            _ => {
                let event = clock_event(&session).await?;
                crate::utilization::processes(
                    &session, bundles, &origin, step, a.top, &event, "TRUE",
                )
                .await?
            }
        };
        anyhow::Ok((u, session.names().to_vec()))
    })?;
    if u.is_empty() {
        bail!(
            "nothing to draw: {}",
            if a.source == Source::Cpu {
                "no CPU counters (the procfs source) in the bundle(s)"
            } else {
                "no clock-event stack samples of any process but the idle loop"
            }
        );
    }
    let (title, sources): (&str, &[&str]) = if a.source == Source::Cpu {
        ("CPU Utilization Heat Map", &[sources::PROCFS])
    } else {
        ("Process CPU Heat Map", &[sources::PERF_SAMPLES])
    };
    let sub = [
        picture::describe_bundles(&names),
        origin.describe(),
        format!("{} rows, {}", u.rows.len(), u.unit),
        picture::describe_losses(bundles, sources),
    ]
    .join(" · ");
    let out = crate::render::utilization::render(&u, a.title.as_deref().unwrap_or(title), &sub);
    crate::bundle::output::write(&a.output, out.as_bytes())
}
