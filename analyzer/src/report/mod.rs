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
use std::path::PathBuf;

use anyhow::bail;
use arrow_array::cast::AsArray as _;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use perfpack_schema::time::format_duration_ns;
use perfpack_schema::{Bundle, tables};

use crate::flamegraph::{self, Kind};
use crate::heatmap::{self, Origin, Rows};
use crate::latency::{self, Group};
use crate::picture::{self, Progress};
use crate::scope::quote;
use crate::sql::{Session, SessionOptions};
use crate::svg::{self, esc as h, human_ns, px};

mod flame;

/// Arguments of `perfpack report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub bundles: crate::cli::BundleArgs,
    /// The HTML file to write
    #[arg(short, long, value_name = "OUT.html")]
    pub output: PathBuf,
    /// With exactly two bundles: compare the second with the first (before/after)
    #[arg(long)]
    pub compare: bool,
    /// Title of the page
    #[arg(long)]
    pub title: Option<String>,
}

/// Most (time bucket, stack) pairs embedded for range selection; beyond it the buckets widen.
const MAX_TIMED_CELLS: usize = 150_000;
/// Finest time bucket of the embedded samples: a row of the sub-second heat map.
const FINEST_BUCKET_NS: i64 = 20_000_000;
/// Rows of the sub-second heat map (1 s columns).
const OFFSET_ROWS: u32 = 50;

pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    let bundles = crate::bundles::open_all(&a.bundles.bundles)?;
    if a.compare && bundles.len() != 2 {
        bail!(
            "--compare needs exactly two bundles, before and after ({} given)",
            bundles.len()
        );
    }
    let progress = Progress::new();
    let mut body = crate::sql_command::runtime()?.block_on(async {
        let session = Session::open(&bundles, &SessionOptions::default()).await?;
        build(&session, &bundles, &progress).await
    })?;
    if bundles.len() >= 3 {
        progress.phase("ranking the fleet");
        let reopened = bundles
            .iter()
            .map(|b| Bundle::open(b.path()))
            .collect::<Result<Vec<_>, _>>()?;
        body.push_str(&fleet_section(&crate::fleet::ranking(reopened)?));
    }
    if a.compare {
        progress.phase("comparing");
        let c = crate::compare::compute(
            &bundles[0].path().display().to_string(),
            &bundles[1].path().display().to_string(),
            None,
            15,
            true,
        )?;
        body.push_str("<section id=\"compare\"><h2>Comparison: second vs first</h2>\n");
        body.push_str(&crate::compare::render_body(&c, "h3"));
        body.push_str("</section>\n");
    }
    progress.finish();
    let names = crate::sql::session::bundle_names(&bundles);
    let title = a
        .title
        .clone()
        .unwrap_or_else(|| format!("perfpack report: {}", picture::describe_bundles(&names)));
    let html = page(&title, &body);
    picture::write_output(&a.output, html.as_bytes())?;
    if a.output.as_os_str() != "-" {
        eprintln!(
            "perfpack: wrote the report to {} ({} bytes); open it in a browser",
            a.output.display(),
            picture::group_digits(html.len() as u64)
        );
    }
    Ok(())
}

/// The whole document around the sections.
fn page(title: &str, body: &str) -> String {
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
async fn build(
    session: &Session,
    bundles: &[Bundle],
    progress: &Progress,
) -> anyhow::Result<String> {
    let origin = heatmap::origin(bundles);
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
    o.push_str(&header(bundles, &configs));
    o.push_str(&use_section(session, bundles).await?);
    progress.phase("CPU flame graph data and top tables");
    o.push_str(&cpu_section(session, bundles, &origin).await?);
    progress.phase("off-CPU flame graph");
    o.push_str(&offcpu_section(session, bundles).await?);
    progress.phase("frequency");
    o.push_str(&frequency_section(session, bundles, &origin).await?);
    progress.phase("heat maps and latency");
    o.push_str(&latency_section(session, bundles, &origin).await?);
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

/// Host, kernel, CPU, window, recorder, the sources table and the configuration of each bundle.
fn header(bundles: &[Bundle], configs: &[Vec<Vec<String>>]) -> String {
    let mut o = String::from("<section id=\"host\"><h2>Host and sources</h2>\n");
    for (i, b) in bundles.iter().enumerate() {
        let info = crate::info::summarize(b);
        let m = b.manifest();
        let hst = &m.host;
        let window = match (&info.start_wall, &info.end_wall, info.duration_ns) {
            (Some(a), Some(e), Some(d)) => format!("{a} to {e} ({})", format_duration_ns(d)),
            (Some(a), _, _) => format!("{a} to ? (no end recorded)"),
            _ => "unknown".into(),
        };
        let facts = vec![
            vec![
                "bundle".into(),
                format!("{} ({})", info.path, info.state_note),
            ],
            vec!["host".into(), hst.hostname.clone()],
            vec![
                "instance type".into(),
                hst.instance_type
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            ],
            vec![
                "kernel".into(),
                format!("{} {}", hst.kernel_release, hst.arch),
            ],
            vec![
                "CPU".into(),
                format!(
                    "{} × {}{}{}",
                    hst.n_cpus,
                    hst.cpu_model_name.as_deref().unwrap_or("unknown model"),
                    hst.base_mhz
                        .map(|v| format!(", base {v} MHz"))
                        .unwrap_or_default(),
                    hst.max_mhz
                        .map(|v| format!(", max {v} MHz"))
                        .unwrap_or_default()
                ),
            ],
            vec!["capture window".into(), window],
            vec![
                "recorder".into(),
                format!(
                    "{} {}: {}",
                    m.recorder.name,
                    m.recorder.version,
                    m.recorder.command_line.join(" ")
                ),
            ],
            vec![
                "recorder cost".into(),
                format!(
                    "{:.3} CPU s, peak RSS {:.1} MiB",
                    m.self_cost.cpu_user_s + m.self_cost.cpu_system_s,
                    m.self_cost.peak_rss_bytes as f64 / 1048576.0
                ),
            ],
        ];
        let _ = writeln!(o, "<h3>{}</h3>", h(&hst.hostname));
        o.push_str(&table(&["", ""], &facts, "facts"));
        // Coverage, stated per source.
        let mut coverage = Vec::new();
        let mut rows = Vec::new();
        for s in &m.sources {
            let lost = s.total_lost();
            let losses: Vec<String> = s
                .losses
                .iter()
                .filter(|l| l.count > 0)
                .map(|l| {
                    format!(
                        "{} {}{}",
                        l.count,
                        l.kind,
                        l.cpu.map(|c| format!(" (CPU {c})")).unwrap_or_default()
                    )
                })
                .collect();
            let status = s.status.as_str();
            coverage.push(if status == "ok" || status == "partial" {
                format!(
                    "{}: {} records, {}",
                    s.name,
                    s.records,
                    if lost == 0 {
                        "0 lost".to_string()
                    } else {
                        format!("{lost} LOST")
                    }
                )
            } else {
                format!("{}: {status} — {}", s.name, s.reason)
            });
            rows.push(vec![
                s.name.clone(),
                status.into(),
                s.records.to_string(),
                if losses.is_empty() {
                    "0".into()
                } else {
                    losses.join(", ")
                },
                if s.reason.is_empty() {
                    s.detail.clone()
                } else {
                    s.reason.clone()
                },
            ]);
        }
        let _ = writeln!(
            o,
            "<p class=\"coverage\">Coverage: {}.</p>",
            h(&coverage.join("; "))
        );
        o.push_str(&table(
            &["source", "status", "records", "lost", "detail or reason"],
            &rows,
            "sources",
        ));
        for w in b.warnings() {
            let _ = writeln!(o, "<p class=\"note\">warning: {}</p>", h(w));
        }
        if let Some(settings) = configs.get(i).filter(|c| !c.is_empty()) {
            let _ = writeln!(
                o,
                "<details><summary>Configuration ({} settings: kernel command line, sysctls, THP, governor, NUMA, clocksource, mounts, block queues, NICs)</summary>",
                settings.len()
            );
            o.push_str(&table(&["setting", "value"], settings, "config"));
            o.push_str("</details>\n");
        }
    }
    o.push_str("</section>\n");
    o
}

/// The USE checklist, each row with the query that gives it.
async fn use_section(session: &Session, bundles: &[Bundle]) -> anyhow::Result<String> {
    let mut o = String::from(
        "<section id=\"use\"><h2>USE checklist</h2>\n<p>Utilization, saturation and errors of every resource \
         over the capture: mean, worst interval, and <b>warn</b> where the worst interval crosses the rule-of-thumb \
         threshold. Click a row's <i>SQL</i> to see the query that produced it (run it with <code>perfpack sql</code>).</p>\n",
    );
    let rows = query_rows(
        session,
        "SELECT bundle, resource, type, metric, mean, worst, unit, threshold, status FROM use_checklist \
         ORDER BY bundle, status DESC, resource, type, metric",
    )
    .await?;
    if rows.is_empty() {
        o.push_str(&unavailable(bundles, "USE checklist", &["procfs"]));
        o.push_str("</section>\n");
        return Ok(o);
    }
    let warns = rows.iter().filter(|r| r[8] == "warn").count();
    let _ = writeln!(
        o,
        "<p class=\"verdict\">{warns} of {} checks warn.</p>",
        rows.len()
    );
    o.push_str("<table class=\"use\"><thead><tr>");
    let several = bundles.len() > 1;
    let head: &[&str] = &[
        "bundle",
        "resource",
        "type",
        "metric",
        "mean",
        "worst",
        "unit",
        "threshold",
        "status",
        "",
    ];
    for x in head.iter().skip(usize::from(!several)) {
        let _ = write!(o, "<th>{}</th>", h(x));
    }
    o.push_str("</tr></thead><tbody>\n");
    let paths = crate::sql::session::bundle_names(bundles);
    for r in &rows {
        let class = if r[8] == "warn" { "warn" } else { "ok" };
        let _ = write!(o, "<tr class=\"{class}\">");
        for x in r.iter().skip(usize::from(!several)) {
            let _ = write!(o, "<td>{}</td>", h(x));
        }
        let bundle_path = bundles
            .iter()
            .zip(&paths)
            .find(|(_, n)| n.bundle == r[0])
            .map_or_else(String::new, |(b, _)| b.path().display().to_string());
        let sql = format!(
            "SELECT * FROM use_checklist WHERE bundle = {} AND resource = {} AND type = {} AND metric = {}",
            quote(&r[0]),
            quote(&r[1]),
            quote(&r[2]),
            quote(&r[3])
        );
        let _ = writeln!(
            o,
            "<td><details><summary>SQL</summary><pre>perfpack sql {} -q {}</pre></details></td></tr>",
            h(&shell_quote(&bundle_path)),
            h(&shell_quote(&sql))
        );
    }
    o.push_str("</tbody></table>\n");
    if let Some(v) = crate::sql::library::find("use_checklist") {
        let _ = writeln!(
            o,
            "<details><summary>The view behind the checklist (queries/{})</summary><pre>{}</pre></details>",
            h(v.file),
            h(&v.sql)
        );
    }
    o.push_str("</section>\n");
    Ok(o)
}

/// A word as a POSIX shell reads it.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The sampled event with the most samples.
async fn main_event(session: &Session) -> anyhow::Result<Option<String>> {
    let rows = query_rows(
        session,
        "SELECT event, COUNT(*) AS n FROM stack_sample GROUP BY event ORDER BY n DESC, event LIMIT 1",
    )
    .await?;
    Ok(rows.into_iter().next().map(|mut r| r.swap_remove(0)))
}

/// CPU flame graph (range-selectable), top processes and functions.
async fn cpu_section(
    session: &Session,
    bundles: &[Bundle],
    origin: &Origin,
) -> anyhow::Result<String> {
    let mut o = String::from("<section id=\"cpu\"><h2>CPU</h2>\n");
    let Some(event) = main_event(session).await? else {
        o.push_str(&unavailable(bundles, "CPU samples", &["perf-samples"]));
        o.push_str("</section>\n");
        return Ok(o);
    };
    let timed = flamegraph::timed(
        session,
        bundles,
        &event,
        origin,
        FINEST_BUCKET_NS,
        MAX_TIMED_CELLS,
    )
    .await?;
    let samples: u64 = timed.cells.iter().map(|c| c.3).sum();
    let unit = if matches!(event.as_str(), "cpu-clock" | "task-clock") {
        "ns".to_string()
    } else {
        event.clone()
    };
    let names = crate::sql::session::bundle_names(bundles);
    let sub = [
        picture::describe_bundles(&names),
        format!("{} {event} samples", picture::group_digits(samples)),
        picture::describe_losses(bundles, &["perf-samples"]),
        format!("time ranges snap to {} buckets", human_ns(timed.bucket_ns)),
    ]
    .join(" · ");
    o.push_str(&flame::html(
        "fg-cpu",
        "CPU flame graph",
        &sub,
        &unit,
        &flame::Data::timed(&timed),
    ));
    // Top processes.
    let rows = query_rows(
        session,
        "SELECT bundle, pid, comm, samples, pct, weight FROM (SELECT *, ROW_NUMBER() OVER \
         (PARTITION BY bundle ORDER BY samples DESC, pid) AS r FROM top_processes) WHERE r <= 15 \
         ORDER BY bundle, samples DESC, pid",
    )
    .await?;
    o.push_str("<div class=\"tops\"><div><h3>Top processes</h3>\n");
    let skip = usize::from(bundles.len() == 1);
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r[skip..].to_vec()).collect();
    let head = ["bundle", "pid", "comm", "samples", "%", "weight"];
    o.push_str(&table(&head[skip..], &rows, "top"));
    o.push_str("</div><div><h3>Top functions</h3>\n");
    o.push_str(&table(
        &["function", "self %", "total %"],
        &top_functions(&timed, 20),
        "top",
    ));
    o.push_str("</div></div>\n</section>\n");
    Ok(o)
}

/// The functions with the most self (leaf) weight, with their total (anywhere on the stack).
fn top_functions(timed: &flamegraph::Timed, n: usize) -> Vec<Vec<String>> {
    let mut per_stack = vec![0u64; timed.lines.len()];
    for c in &timed.cells {
        per_stack[c.1 as usize] += c.2;
    }
    let all: u64 = per_stack.iter().sum();
    let mut own: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for (line, &w) in timed.lines.iter().zip(&per_stack) {
        let frames: Vec<&str> = line.split(';').skip(1).collect();
        if let Some(leaf) = frames.last() {
            own.entry(leaf).or_default().0 += w;
        }
        let mut seen: Vec<&str> = frames.clone();
        seen.sort_unstable();
        seen.dedup();
        for f in seen {
            own.entry(f).or_default().1 += w;
        }
    }
    let mut v: Vec<(&str, u64, u64)> = own.into_iter().map(|(f, (s, t))| (f, s, t)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(b.0)));
    let pct = |x: u64| format!("{:.2}", 100.0 * x as f64 / all.max(1) as f64);
    v.into_iter()
        .filter(|x| x.1 > 0)
        .take(n)
        .map(|(f, s, t)| vec![f.to_string(), pct(s), pct(t)])
        .collect()
}

/// Off-CPU flame graph, where context switches were recorded.
async fn offcpu_section(session: &Session, bundles: &[Bundle]) -> anyhow::Result<String> {
    let mut o = String::from("<section id=\"offcpu\"><h2>Off-CPU</h2>\n");
    if rows_of(bundles, tables::SCHED_SWITCH) == 0 {
        o.push_str(&unavailable(bundles, "context switches", &["ftrace"]));
        o.push_str("</section>\n");
        return Ok(o);
    }
    let opts = flamegraph::Options {
        kind: Kind::Offcpu,
        folded: false,
        wakers: true,
        ..flamegraph::Options::folded_cpu(flamegraph::Weight::Ns)
    };
    let folded = flamegraph::collect(session, bundles, &opts, &Progress::hidden()).await?;
    if folded.lines.values().all(|&w| w == 0) {
        o.push_str("<p class=\"note\">No thread blocked off the CPU in the capture.</p>\n");
    } else {
        let names = crate::sql::session::bundle_names(bundles);
        let sub = flamegraph::subtitle(bundles, &names, &opts, &folded);
        o.push_str(&flame::html(
            "fg-offcpu",
            "Off-CPU flame graph (time blocked; wakers stacked above --)",
            &sub,
            &folded.unit,
            &flame::Data::folded(&folded.lines),
        ));
    }
    o.push_str("</section>\n");
    Ok(o)
}

/// Busy MHz, busy % and temperature per second, averaged over CPUs.
async fn frequency_section(
    session: &Session,
    bundles: &[Bundle],
    origin: &Origin,
) -> anyhow::Result<String> {
    let mut o = String::from("<section id=\"frequency\"><h2>Frequency</h2>\n");
    let names = crate::sql::session::bundle_names(bundles);
    let index = picture::bundle_index(&names);
    // (bundle, second) → sums of (busy MHz, busy %, n, temperature °C, n).
    type Acc = std::collections::BTreeMap<(usize, i64), [f64; 5]>;
    let mut acc: Acc = Default::default();
    let mut sources: Vec<String> = Vec::new();
    picture::stream(
        session,
        "SELECT bundle, ts_ns, bzy_mhz, busy_pct, source FROM cpu_frequency WHERE bzy_mhz IS NOT NULL",
        &Progress::hidden(),
        |b| {
            let bundle = b.column(0).as_string::<i32>();
            let ts = b.column(1).as_primitive::<Int64Type>();
            let mhz = b.column(2).as_primitive::<Float64Type>();
            let busy = b.column(3).as_primitive::<Float64Type>();
            let src = b.column(4).as_string::<i32>();
            for i in 0..b.num_rows() {
                let bi = index[bundle.value(i)];
                let sec = (ts.value(i) - origin.zero[bi]).div_euclid(1_000_000_000);
                let e = acc.entry((bi, sec)).or_default();
                e[0] += mhz.value(i);
                if !busy.is_null(i) {
                    e[1] += busy.value(i);
                }
                e[2] += 1.0;
                if !sources.iter().any(|s| s == src.value(i)) {
                    sources.push(src.value(i).to_string());
                }
            }
            Ok(())
        },
    )
    .await?;
    // Temperature: TjMax (TEMPERATURE_TARGET bits 23:16) minus the digital readout
    // (THERM_STATUS bits 22:16, valid when bit 31 is set), Intel's encoding.
    let mut tjmax: std::collections::HashMap<(usize, i32), u64> = Default::default();
    let mut readings: Vec<(usize, i64, i32, u64)> = Vec::new();
    picture::stream(
        session,
        "SELECT bundle, ts_ns, cpu, name, value FROM msr WHERE name IN ('THERM_STATUS', 'TEMPERATURE_TARGET') ORDER BY ts_ns",
        &Progress::hidden(),
        |b| {
            let bundle = b.column(0).as_string::<i32>();
            let ts = b.column(1).as_primitive::<Int64Type>();
            let cpu = b.column(2).as_primitive::<arrow_array::types::Int32Type>();
            let name = b.column(3).as_string::<i32>();
            let value = b.column(4).as_primitive::<UInt64Type>();
            for i in 0..b.num_rows() {
                let bi = index[bundle.value(i)];
                if name.value(i) == "TEMPERATURE_TARGET" {
                    tjmax.insert((bi, cpu.value(i)), (value.value(i) >> 16) & 0xff);
                } else {
                    readings.push((bi, ts.value(i), cpu.value(i), value.value(i)));
                }
            }
            Ok(())
        },
    )
    .await?;
    for (bi, ts, cpu, v) in readings {
        if let Some(&tj) = tjmax.get(&(bi, cpu))
            && v >> 31 & 1 == 1
        {
            let sec = (ts - origin.zero[bi]).div_euclid(1_000_000_000);
            let e = acc.entry((bi, sec)).or_default();
            e[3] += tj as f64 - ((v >> 16) & 0x7f) as f64;
            e[4] += 1.0;
        }
    }
    if acc.is_empty() {
        o.push_str(&unavailable(
            bundles,
            "frequency (APERF/MPERF, cpufreq)",
            &["msr"],
        ));
        o.push_str("</section>\n");
        return Ok(o);
    }
    let series = |k: usize, n: usize| -> Vec<(usize, Vec<(f64, f64)>)> {
        (0..bundles.len())
            .map(|bi| {
                let pts = acc
                    .range((bi, i64::MIN)..=(bi, i64::MAX))
                    .filter(|(_, v)| v[n] > 0.0)
                    .map(|(&(_, s), v)| (s as f64 + 0.5, v[k] / v[n]))
                    .collect();
                (bi, pts)
            })
            .filter(|(_, p): &(usize, Vec<(f64, f64)>)| !p.is_empty())
            .collect()
    };
    let label = |bi: usize| names[bi].bundle.clone();
    let _ = writeln!(
        o,
        "<p>Averaged over CPUs per second ({}; source: {}).</p>",
        h(&origin.describe()),
        h(&sources.join(", "))
    );
    o.push_str(&line_chart("busy MHz", &series(0, 2), &label));
    o.push_str(&line_chart("busy %", &series(1, 2), &label));
    let temp = series(3, 4);
    if temp.is_empty() {
        o.push_str("<p class=\"note\">Temperature: not in the bundle(s) (needs THERM_STATUS and TEMPERATURE_TARGET MSRs).</p>\n");
    } else {
        o.push_str(&line_chart("temperature °C", &temp, &label));
    }
    o.push_str("</section>\n");
    Ok(o)
}

/// A small SVG line chart: x = seconds, one line per bundle.
fn line_chart(
    what: &str,
    series: &[(usize, Vec<(f64, f64)>)],
    label: &dyn Fn(usize) -> String,
) -> String {
    const COLOURS: [&str; 6] = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    // 5% of the range (at least 1) above and below, not below zero.
    let pad = ((y1 - y0) * 0.05).max(1.0);
    let (y0, y1) = ((y0 - pad).max(0.0), y1 + pad);
    let (left, top, pw, ph) = (70.0, 10.0, 1000.0, 140.0);
    let mut o = format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption><svg width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" xmlns=\"http://www.w3.org/2000/svg\">\n",
        h(what),
        px(left + pw + 20.0),
        px(top + ph + 30.0),
        px(left + pw + 20.0),
        px(top + ph + 30.0)
    );
    let _ = writeln!(
        o,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fff\" stroke=\"#bbb\"/>",
        px(left),
        px(top),
        px(pw),
        px(ph)
    );
    // Enough decimals that the five labels differ.
    let digits = if y1 - y0 < 8.0 { 1 } else { 0 };
    for k in 0..=4 {
        let v = y0 + (y1 - y0) * k as f64 / 4.0;
        let y = top + ph - ph * k as f64 / 4.0;
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{v:.digits$}</text>",
            px(left - 5.0),
            px(y + 4.0),
        );
    }
    let tick = svg::nice_step((x1.ceil() as i64).max(1) * 1_000_000_000, 10) as f64 / 1e9;
    let mut t = 0.0;
    while t <= x1 {
        let x = left + t / x1 * pw;
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            px(x),
            px(top + ph + 16.0),
            h(&human_ns((t * 1e9) as i64))
        );
        t += tick.max(1.0);
    }
    for (k, (bi, points)) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let d: Vec<String> = points
            .iter()
            .map(|&(x, y)| {
                format!(
                    "{},{}",
                    px(left + x / x1 * pw),
                    px(top + ph - (y - y0) / (y1 - y0) * ph)
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"><title>{}</title></polyline>",
            d.join(" "),
            h(&label(*bi))
        );
        if series.len() > 1 {
            let _ = writeln!(
                o,
                "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{colour}\">{}</text>",
                px(left + 8.0),
                px(top + 14.0 + 13.0 * k as f64),
                h(&label(*bi))
            );
        }
    }
    o.push_str("</svg></figure>\n");
    o
}

/// The sub-second heat map of samples and the latency heat maps with their histograms.
async fn latency_section(
    session: &Session,
    bundles: &[Bundle],
    origin: &Origin,
) -> anyhow::Result<String> {
    let mut o = String::from(
        "<section id=\"latency\"><h2>Heat maps and latency</h2>\n<p>Drag across a heat map (or click one \
         cell, then another) to draw the CPU flame graph of that time range above; \
         <a href=\"#cpu\">jump to it</a>.</p>\n",
    );
    let names = crate::sql::session::bundle_names(bundles);
    if rows_of(bundles, tables::STACK_SAMPLE) > 0 {
        let cells = heatmap::bin(
            session,
            &heatmap::source_query(heatmap::Source::Samples, "TRUE"),
            Rows::Offset {
                height: 1_000_000_000 / OFFSET_ROWS as i64,
                n: OFFSET_ROWS,
            },
            1_000_000_000,
            origin,
            &Progress::hidden(),
        )
        .await?;
        let sub = format!(
            "{} · {} · {} samples",
            picture::describe_bundles(&names),
            origin.describe(),
            picture::group_digits(cells.events)
        );
        o.push_str("<h3>CPU samples: sub-second offset heat map</h3>\n");
        o.push_str(&heat_div(
            "offset",
            &heatmap::render(&cells, "Sub-second Offset Heat Map", &sub, "samples", true),
        ));
    }
    // Utilization beside latency: every CPU, and the busiest processes.
    if rows_of(bundles, tables::SYS_COUNTER) > 0 {
        let u = crate::utilization::cpus(session, origin, 1_000_000_000).await?;
        o.push_str(&utilization_block(
            "CPU utilization",
            "CPU Utilization Heat Map",
            &u,
            &names,
            origin,
            "busy % per CPU per second (procfs)",
        ));
    }
    if rows_of(bundles, tables::STACK_SAMPLE) > 0
        && let Ok(event) = heatmap::clock_event(session).await
    {
        let u = crate::utilization::processes(session, bundles, origin, 1_000_000_000, 15, &event)
            .await?;
        o.push_str(&utilization_block(
            "Process CPU",
            "Process CPU Heat Map",
            &u,
            &names,
            origin,
            &format!("% of one CPU per second, the 15 busiest processes ({event} samples)"),
        ));
    }
    for (source, rows_table, lsource) in [
        (
            heatmap::Source::Block,
            tables::BLOCK_RQ,
            latency::Source::Block,
        ),
        (
            heatmap::Source::Runq,
            tables::SCHED_SWITCH,
            latency::Source::Runq,
        ),
        (
            heatmap::Source::Syscall,
            tables::SYSCALL,
            latency::Source::Syscall,
        ),
    ] {
        let what = lsource.what();
        let _ = writeln!(o, "<h3>{}</h3>", h(&capitalized(what)));
        if rows_of(bundles, rows_table) == 0 {
            o.push_str(&unavailable(bundles, what, &["ftrace"]));
            continue;
        }
        let step = svg::nice_step(origin.span.max(1), 200).max(1_000_000);
        let cells = heatmap::bin(
            session,
            &heatmap::source_query(source, "TRUE"),
            Rows::Log2,
            step,
            origin,
            &Progress::hidden(),
        )
        .await?;
        if cells.events == 0 {
            let _ = writeln!(
                o,
                "<p class=\"note\">No complete {} in the capture.</p>",
                h(lsource.noun())
            );
            continue;
        }
        let losses = picture::describe_losses(bundles, lsource.manifest_sources());
        let sub = format!(
            "{} · {} · {} {} · {losses}",
            picture::describe_bundles(&names),
            origin.describe(),
            picture::group_digits(cells.events),
            lsource.noun()
        );
        o.push_str(&heat_div(
            "time",
            &heatmap::render(
                &cells,
                &format!("Latency Heat Map: {what}"),
                &sub,
                lsource.noun(),
                false,
            ),
        ));
        if let Some(values) = latency::all_values(session, bundles, lsource).await? {
            let g = Group::from_values("all".into(), values);
            o.push_str(&table(
                &["count", "mean", "p50", "p90", "p99", "p99.9", "max"],
                &[vec![
                    g.count.to_string(),
                    human_ns(g.mean_ns.round() as i64),
                    human_ns(g.p50_ns),
                    human_ns(g.p90_ns),
                    human_ns(g.p99_ns),
                    human_ns(g.p999_ns),
                    human_ns(g.max_ns),
                ]],
                "percentiles",
            ));
            let svg = latency::render_svg(
                std::slice::from_ref(&g),
                lsource,
                &format!("Histogram: {what}"),
                &sub,
            );
            o.push_str(crate::compare::strip_prolog(&svg));
            o.push('\n');
        }
        let c = crate::correlate::correlations(session, bundles, origin, lsource).await?;
        if !c.ranked.is_empty() {
            let _ = writeln!(
                o,
                "<h4>What moves with it</h4>\n<p class=\"note\">{}; Spearman's rho of per-second series.</p>",
                h(&capitalized(c.note))
            );
            let rows: Vec<Vec<String>> = c
                .ranked
                .iter()
                .take(10)
                .map(|r| {
                    vec![
                        r.metric.clone(),
                        format!("{:+.2}", r.rho),
                        r.seconds.to_string(),
                    ]
                })
                .collect();
            o.push_str(&table(&["metric", "rho", "seconds"], &rows, "correlation"));
        }
        if !c.demand.is_empty() {
            o.push_str("<p>Little's law per disk: requests in service = mean latency × completions per second.</p>\n");
            let rows: Vec<Vec<String>> = c
                .demand
                .iter()
                .map(|d| {
                    vec![
                        d.disk.clone(),
                        format!("{:.1}", d.completions_per_s),
                        format!("{:.3}", d.mean_latency_ms),
                        format!("{:.3}", d.in_service),
                        d.measured_aqu_sz
                            .map_or_else(|| "-".into(), |a| format!("{a:.3}")),
                    ]
                })
                .collect();
            o.push_str(&table(
                &[
                    "disk",
                    "completions/s",
                    "mean latency ms",
                    "in service",
                    "measured aqu-sz",
                ],
                &rows,
                "demand",
            ));
        }
    }
    o.push_str("</section>\n");
    Ok(o)
}

/// A heat map the page's script can select time ranges on (`kind`: `time` or `offset`); the
/// selection redraws the CPU flame graph.
fn heat_div(kind: &str, svg: &str) -> String {
    format!(
        "<div class=\"heat\" data-kind=\"{kind}\" data-target=\"fg-cpu\">{}</div>\n",
        crate::compare::strip_prolog(svg)
    )
}

/// A utilization heat map under its heading, when it has cells.
fn utilization_block(
    heading: &str,
    title: &str,
    u: &crate::utilization::Util,
    names: &[crate::sql::session::BundleName],
    origin: &Origin,
    what: &str,
) -> String {
    if u.is_empty() {
        return String::new();
    }
    let sub = format!(
        "{} · {} · {what}",
        picture::describe_bundles(names),
        origin.describe()
    );
    format!(
        "<h3>{}</h3>\n{}",
        h(heading),
        heat_div("time", &crate::utilization::render(u, title, &sub))
    )
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The fleet ranking as a table with the reasons of each outlier.
fn fleet_section(ranked: &[crate::fleet::Ranked]) -> String {
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
