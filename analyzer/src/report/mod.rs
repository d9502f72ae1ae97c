//! `perfpack report`: one self-contained HTML file that answers "what was this box doing and
//! what was wrong with it" — header and sources with their losses, the USE checklist with the
//! SQL behind each finding, CPU and off-CPU flame graphs (interactive: search, zoom), top
//! processes and functions, frequency over time, latency heat maps and histograms, and, for
//! several bundles, the fleet ranking or (two with `--compare`) the comparison.
//!
//! Everything is inline (CSS, JS, SVG, data); nothing is fetched. The flame graphs are drawn
//! by the page's script from embedded data: stacks as a tree of names, and the CPU samples'
//! weights per time bucket, so that a range selected on a heat map redraws the flame graph of
//! that range. Untrusted strings (comms, symbols, paths, hosts) reach the page either escaped
//! as HTML text or inside JSON that the script only ever puts into text nodes.

use std::fmt::Write as _;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use perfpack_schema::time::format_duration_ns;
use perfpack_schema::{Bundle, tables};

use crate::analysis::time::{self, Origin};
use crate::flamegraph::{self, Kind};
use crate::heatmap::{self, Rows};
use crate::latency::{self, Group};
use crate::picture::{self, Progress};
use crate::scope::{Scope, quote};
use crate::sql::Session;
use crate::svg::{self, esc as h, human_ns, px};

mod cpu;
mod flame;
mod frequency;
mod heat;
mod host;
mod services;

/// Most (time bucket, stack) pairs embedded for range selection; beyond it the buckets widen.
const MAX_TIMED_CELLS: usize = 150_000;
/// Finest time bucket of the embedded samples: a row of the sub-second heat map.
const FINEST_BUCKET_NS: i64 = 20_000_000;
/// Rows of the sub-second heat map (1 s columns).
const OFFSET_ROWS: u32 = 50;

/// The section of `report --compare`: the second bundle against the first.
pub fn compare_section(c: &crate::compare::Computed) -> anyhow::Result<String> {
    let mut s = String::from("<section id=\"compare\"><h2>Comparison: second vs first</h2>\n");
    s.push_str(&crate::render::compare::render_body(c, "h3")?);
    s.push_str("</section>\n");
    Ok(s)
}

/// The whole document around the sections.
pub fn page(title: &str, body: &str) -> String {
    let mut o = String::with_capacity(body.len() + 40_000);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>\n{css}</style>\n</head><body>\n<header><h1>{t}</h1>\n\
         <nav><a href=\"#host\">Host &amp; sources</a> · <a href=\"#use\">USE checklist</a> · \
         <a href=\"#cpu\">CPU</a> · <a href=\"#offcpu\">Off-CPU</a> · <a href=\"#frequency\">Frequency</a> · \
         <a href=\"#latency\">Latency</a></nav></header>\n<main>\n",
        t = h(title),
        css = include_str!("report.css"),
    );
    o.push_str(body);
    let _ = write!(
        o,
        "</main>\n<footer>Written by perfpack {} from the bundle(s) alone; no network is used to view it. \
         Flame graphs: click a frame to zoom, type in Search to highlight; on a heat map, drag (or click two cells) \
         to draw the flame graph of that time range.</footer>\n<script>\n{}</script>\n</body></html>\n",
        h(env!("CARGO_PKG_VERSION")),
        include_str!("report.js")
    );
    o
}

/// Every section that needs the SQL session, in page order.
/// With a selection (`--cgroup`), the samples' and events' sections are of the selected threads;
/// the machine's own figures (USE checklist, services, frequency, CPU utilization) are not.
pub async fn build(
    session: &Session,
    bundles: &[Bundle],
    progress: &Progress,
    scope: &Scope,
) -> anyhow::Result<String> {
    let origin = time::origin(bundles);
    let pred = scope.sql(bundles, session.names())?;
    let mut o = String::new();
    progress.phase("header and USE checklist");
    let names = crate::sql::session::bundle_names(bundles);
    let mut configs = Vec::new();
    for n in &names {
        configs.push(
            query_rows(
                session,
                &format!(
                    "SELECT key, value FROM config WHERE bundle = {} ORDER BY key",
                    quote(&n.bundle)
                ),
            )
            .await?,
        );
    }
    o.push_str(&host::header(bundles, &configs));
    if let Some(what) = scope.describe() {
        let _ = writeln!(
            o,
            "<p class=\"note\">Selected: {}. The flame graphs, top tables, sub-second and \
             latency heat maps and histograms are of the selected threads; the USE checklist, \
             services, frequency and CPU utilization are the whole machine's.</p>",
            h(&what)
        );
    }
    o.push_str(&host::use_section(session, bundles).await?);
    progress.phase("CPU flame graph data and top tables");
    o.push_str(&cpu::cpu_section(session, bundles, &origin, &pred).await?);
    progress.phase("services");
    o.push_str(&services::services_section(session, bundles).await?);
    progress.phase("off-CPU flame graph");
    o.push_str(&cpu::offcpu_section(session, bundles, scope).await?);
    progress.phase("flame graphs of other sampled events");
    o.push_str(&cpu::event_sections(session, bundles, &origin, &pred).await?);
    progress.phase("frequency");
    o.push_str(&frequency::frequency_section(session, bundles, &origin).await?);
    progress.phase("heat maps and latency");
    o.push_str(&heat::latency_section(session, bundles, &origin, scope, &pred).await?);
    Ok(o)
}

/// Rows of a table in the bundles, from the manifests.
fn rows_of(bundles: &[Bundle], table: &perfpack_schema::TableDef) -> u64 {
    bundles
        .iter()
        .flat_map(|b| b.segments(table))
        .map(|s| s.rows)
        .sum()
}

/// `<p class="note">` with the reasons the named sources give for not having data.
fn unavailable(bundles: &[Bundle], what: &str, sources: &[&str]) -> String {
    let mut why: Vec<String> = Vec::new();
    for b in bundles {
        for s in &b.manifest().sources {
            if sources.contains(&s.name.as_str()) {
                why.push(if s.reason.is_empty() {
                    format!(
                        "{} recorded, but not this ({})",
                        s.name,
                        if s.detail.is_empty() {
                            "no detail"
                        } else {
                            &s.detail
                        }
                    )
                } else {
                    format!("{} {}: {}", s.name, s.status.as_str(), s.reason)
                });
            }
        }
    }
    why.dedup();
    if why.is_empty() {
        why.push("the source was not recorded".into());
    }
    format!(
        "<p class=\"note\">{}: not in the bundle(s) — {}.</p>\n",
        h(what),
        h(&why.join("; "))
    )
}

/// An HTML table; cells are escaped.
fn table(head: &[&str], rows: &[Vec<String>], class: &str) -> String {
    let mut o = format!("<table class=\"{class}\"><thead><tr>");
    for x in head {
        let _ = write!(o, "<th>{}</th>", h(x));
    }
    o.push_str("</tr></thead><tbody>\n");
    for r in rows {
        o.push_str("<tr>");
        for x in r {
            let _ = write!(o, "<td>{}</td>", h(x));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody></table>\n");
    o
}

/// Runs a query and formats every cell (floats to two decimals, nulls empty).
async fn query_rows(session: &Session, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    let options = FormatOptions::default();
    picture::stream(session, sql, &Progress::hidden(), |b: &RecordBatch| {
        let mut cols: Vec<Box<dyn Fn(usize) -> String + '_>> = Vec::new();
        for c in b.columns() {
            let c = c.as_ref();
            if c.data_type() == &DataType::Float64 {
                let a = c.as_primitive::<Float64Type>();
                cols.push(Box::new(move |i| {
                    if a.is_null(i) {
                        String::new()
                    } else {
                        format!("{:.2}", a.value(i))
                    }
                }));
            } else {
                let f = ArrayFormatter::try_new(c, &options)?;
                cols.push(Box::new(move |i| {
                    if c.is_null(i) {
                        String::new()
                    } else {
                        f.value(i).to_string()
                    }
                }));
            }
        }
        for i in 0..b.num_rows() {
            rows.push(cols.iter().map(|f| f(i)).collect());
        }
        Ok(())
    })
    .await?;
    Ok(rows)
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The fleet ranking as a table with the reasons of each outlier.
pub fn fleet_section(ranked: &[crate::fleet::Ranked]) -> String {
    let mut o = String::from("<section id=\"fleet\"><h2>Fleet ranking</h2>\n");
    let flagged = ranked.iter().filter(|r| r.flagged).count();
    let _ = writeln!(
        o,
        "<p class=\"verdict\">{flagged} of {} bundles are worse than the fleet.</p>",
        ranked.len()
    );
    let rows: Vec<Vec<String>> = ranked
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let why: Vec<String> = r
                .reasons
                .iter()
                .map(|x| {
                    format!(
                        "{}: {:.3} vs median {:.3} (z {:+.1}) → {}",
                        x.feature, x.value, x.fleet_median, x.z, x.evidence
                    )
                })
                .collect();
            vec![
                (i + 1).to_string(),
                r.bundle.clone(),
                r.host.clone(),
                format!("{:.1}", r.score),
                if r.flagged {
                    "OUTLIER"
                } else {
                    "like the fleet"
                }
                .into(),
                why.join("; "),
            ]
        })
        .collect();
    o.push_str(&table(
        &["rank", "bundle", "host", "max |z|", "verdict", "why"],
        &rows,
        "fleet",
    ));
    o.push_str("</section>\n");
    o
}
