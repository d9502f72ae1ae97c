//! What `perfpack compare` prints and draws: the sections of tables (shared by the text and
//! HTML pages), the paired latency histograms and the differential flame graph.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context as _;

use crate::flamegraph::Folded;
use crate::latency::Group;

use crate::compare::{Comparison, Computed, LatencyChange, Side, Z_SIGNIFICANT};

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// A function's row: name, kind, samples before/after, then the rates and changes given
/// (already formatted), its z and whether it changed beyond noise.
fn function_row(
    function: &str,
    kind: &str,
    samples: (u64, u64),
    figures: impl IntoIterator<Item = String>,
    z: f64,
    significant: bool,
) -> Vec<String> {
    let mut row = vec![
        function.to_string(),
        kind.to_string(),
        format!("{}/{}", samples.0, samples.1),
    ];
    row.extend(figures);
    row.push(format!("{z:.1}"));
    row.push(if significant { "CHANGED" } else { "noise" }.into());
    row
}

/// One table of the comparison, as plain strings, for the text and the HTML renderings.
struct Section {
    title: String,
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

/// The comparison's tables: sides, functions, latency, system.
fn sections(c: &Comparison) -> Vec<Section> {
    let mut sides = Vec::new();
    let mut row = |k: &str, f: &dyn Fn(&Side) -> String| {
        sides.push(vec![k.to_string(), f(&c.before), f(&c.after)]);
    };
    row("bundles", &|s| s.bundles.clone());
    row("seconds", &|s| format!("{:.1}", s.seconds));
    row("busy MHz", &|s| opt(s.frequency.busy_mhz, 0));
    row("busy MHz p10-p90", &|s| {
        format!(
            "{}-{}",
            opt(s.frequency.busy_mhz_p10, 0),
            opt(s.frequency.busy_mhz_p90, 0)
        )
    });
    row("busy %", &|s| opt(s.frequency.busy_pct, 1));
    row("TSC MHz", &|s| opt(s.frequency.tsc_mhz, 0));
    row("frequency source", &|s| s.frequency.source.clone());
    row("confidence", &|s| s.frequency.confidence.clone());
    row("IPC", &|s| opt(s.ipc, 2));
    row("G cycles/s", &|s| opt(s.cycles_per_s.map(|x| x / 1e9), 3));
    row("G instructions/s", &|s| {
        opt(s.instructions_per_s.map(|x| x / 1e9), 3)
    });
    row("busy samples", &|s| s.busy_samples.to_string());
    row("busy CPU s", &|s| format!("{:.3}", s.busy_ns as f64 / 1e9));
    if let Some(r) = c.ref_mhz {
        row(&format!("busy CPU s at {r:.0} MHz"), &|s| {
            opt(s.busy_ns_normalized.map(|n| n as f64 / 1e9), 3)
        });
    }
    if let Some(e) = &c.event {
        let (b, a) = (&e.before, &e.after);
        sides.push(vec![
            format!("{} samples", e.event),
            b.samples.to_string(),
            a.samples.to_string(),
        ]);
        sides.push(vec![
            format!("{} per s", e.event),
            format!("{:.1}", b.events_per_s),
            format!("{:.1}", a.events_per_s),
        ]);
    }
    let functions = c
        .functions
        .iter()
        .map(|x| {
            function_row(
                &x.function,
                x.kind,
                (x.samples_before, x.samples_after),
                [
                    format!("{:.2}", x.ms_per_s_before),
                    format!("{:.2}", x.ms_per_s_after),
                    opt(x.raw_change_pct, 1),
                    opt(x.normalized_change_pct, 1),
                ],
                x.z,
                x.significant,
            )
        })
        .collect();
    let both = |l: &LatencyChange, f: &dyn Fn(&Group) -> String| {
        let one = |g: &Option<Group>| g.as_ref().map_or("-".into(), f);
        format!("{} → {}", one(&l.before), one(&l.after))
    };
    let latency = c
        .latency
        .iter()
        .map(|l| {
            vec![
                l.source.to_string(),
                both(l, &|g| g.count.to_string()),
                both(l, &|g| crate::svg::human_ns(g.p50_ns)),
                both(l, &|g| crate::svg::human_ns(g.p90_ns)),
                both(l, &|g| crate::svg::human_ns(g.p99_ns)),
                both(l, &|g| crate::svg::human_ns(g.max_ns)),
                opt(l.ks, 3),
            ]
        })
        .collect();
    let system = c
        .system
        .iter()
        .map(|x| {
            vec![
                x.resource.clone(),
                x.kind.clone(),
                x.metric.clone(),
                opt(x.before, 2),
                opt(x.after, 2),
                x.unit.clone(),
                format!(
                    "{} → {}",
                    x.status_before.as_deref().unwrap_or("-"),
                    x.status_after.as_deref().unwrap_or("-")
                ),
            ]
        })
        .collect();
    let (had_before, had_after) = c.config_recorded;
    let config_title = match (had_before, had_after) {
        (true, true) => format!(
            "what changed: {} configuration setting(s) differ",
            c.config_changes.len()
        ),
        (false, false) => "what changed: neither side recorded its configuration".into(),
        (false, true) => "what changed: the before side recorded no configuration".into(),
        (true, false) => "what changed: the after side recorded no configuration".into(),
    };
    let config = if had_before && had_after {
        c.config_changes
            .iter()
            .map(|x| {
                let v = |o: &Option<String>| o.clone().unwrap_or_else(|| "(absent)".into());
                vec![x.key.clone(), v(&x.before), v(&x.after)]
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut sections = vec![
        Section {
            title: config_title,
            head: vec!["setting", "before", "after"],
            rows: config,
        },
        Section {
            title: "sides".into(),
            head: vec!["", "before", "after"],
            rows: sides,
        },
        Section {
            title: format!(
                "functions by |z| (CPU ms per second of recording; z from sample counts, |z| ≥ {Z_SIGNIFICANT} is beyond noise)"
            ),
            head: vec![
                "function",
                "kind",
                "samples",
                "ms/s before",
                "ms/s after",
                "raw %",
                "normalized %",
                "z",
                "",
            ],
            rows: functions,
        },
        Section {
            title: "latency (before → after)".into(),
            head: vec!["source", "count", "p50", "p90", "p99", "max", "KS distance"],
            rows: latency,
        },
        Section {
            title: "what moves with block I/O latency (Spearman's rho per second; correlation, not causation)".into(),
            head: vec!["", "before", "after"],
            rows: (0..c.correlated_before.len().max(c.correlated_after.len()))
                .map(|i| {
                    let cell = |v: &[crate::correlate::Correlation]| {
                        v.get(i)
                            .map_or_else(String::new, |x| format!("{} ({:+.2})", x.metric, x.rho))
                    };
                    vec![
                        (i + 1).to_string(),
                        cell(&c.correlated_before),
                        cell(&c.correlated_after),
                    ]
                })
                .collect(),
        },
        Section {
            title: "system (USE method, mean over the recording)".into(),
            head: vec![
                "resource", "type", "metric", "before", "after", "unit", "status",
            ],
            rows: system,
        },
    ];
    if let Some(e) = &c.event {
        let rows = e
            .functions
            .iter()
            .map(|x| {
                function_row(
                    &x.function,
                    x.kind,
                    (x.samples_before, x.samples_after),
                    [
                        format!("{:.1}", x.events_per_s_before),
                        format!("{:.1}", x.events_per_s_after),
                        opt(x.change_pct, 1),
                    ],
                    x.z,
                    x.significant,
                )
            })
            .collect();
        // After the CPU functions.
        sections.insert(
            3,
            Section {
                title: format!(
                    "{} by function ({} per second of recording, {}; z from sample counts, |z| ≥ {Z_SIGNIFICANT} is beyond noise)",
                    e.event,
                    e.event,
                    match e.change_pct {
                        Some(p) => format!("{p:+.1}% in all"),
                        None => "none before".into(),
                    }
                ),
                head: vec![
                    "function", "kind", "samples", "/s before", "/s after", "change %", "z", "",
                ],
                rows,
            },
        );
    }
    sections
}

pub fn render_text(c: &Comparison) -> String {
    let mut out = format!("{}\n", c.verdict);
    for s in sections(c) {
        if !s.title.is_empty() && s.title != "sides" {
            let _ = write!(out, "\n{}\n", s.title);
        } else {
            out.push('\n');
        }
        let mut t = crate::text_table::TextTable::new(&s.head);
        for r in s.rows {
            t.row(r);
        }
        out.push_str(&t.render());
    }
    out
}

/// inferno's differential flame graph of the two sides' busy stacks (counts normalized to the
/// same total, so a side with more samples does not look hotter everywhere), when `compute`
/// kept them.
pub fn differential(computed: &Computed) -> anyhow::Result<Option<Vec<u8>>> {
    let Some((before, after)) = &computed.stacks else {
        return Ok(None);
    };
    let c = &computed.comparison;
    let text = |f: &Folded| {
        let mut s = String::new();
        for (l, w) in &f.lines {
            let _ = writeln!(s, "{l} {w}");
        }
        s
    };
    let mut diff = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options {
            normalize: true,
            strip_hex: false,
        },
        text(before).as_bytes(),
        text(after).as_bytes(),
        &mut diff,
    )
    .context("differential folding")?;
    let mut o = inferno::flamegraph::Options::default();
    let (what, widths, unit) = match (&c.event, c.ref_mhz) {
        (Some(e), _) => (
            crate::flamegraph::title_of(&e.event),
            format!("{} events", e.event),
            e.event.clone(),
        ),
        (None, Some(r)) => (
            "CPU Flame Graph".into(),
            format!("CPU time at {r:.0} MHz"),
            "ns".into(),
        ),
        (None, None) => (
            "CPU Flame Graph".into(),
            "CPU time, not frequency-corrected".into(),
            "ns".into(),
        ),
    };
    o.title = format!("Differential {what} (after vs before)");
    o.subtitle = Some(format!(
        "{} vs {} · widths: {widths}; red grew, blue shrank (totals equalized) · {}",
        c.after.bundles, c.before.bundles, c.verdict
    ));
    o.count_name = unit;
    o.deterministic = true;
    let mut svg = Vec::new();
    inferno::flamegraph::from_reader(&mut o, diff.as_slice(), &mut svg)
        .context("rendering the differential flame graph")?;
    Ok(Some(svg))
}

/// Latency histograms of both sides, one panel per source, the two sides' bars next to each
/// other in every log2 bucket; heights are each side's share of its own events, so a side with
/// more events does not look worse everywhere.
pub fn render_histograms(c: &Comparison) -> String {
    use crate::svg::{esc, human_ns, px};
    let panels: Vec<&LatencyChange> = c
        .latency
        .iter()
        .filter(|l| l.before.is_some() || l.after.is_some())
        .collect();
    let (left, width, panel_h, gap) = (70.0, 1000.0, 170.0, 70.0);
    let height = 80.0 + panels.len().max(1) as f64 * (panel_h + gap);
    let mut out = String::new();
    crate::svg::open(
        &mut out,
        left + width + 30.0,
        height,
        "Latency distributions: before vs after",
        &format!(
            "{} (blue) vs {} (orange) · bar height = share of that side's events",
            c.before.bundles, c.after.bundles
        ),
    );
    let share = |g: &Option<Group>| -> BTreeMap<u32, (u64, f64)> {
        g.as_ref().map_or_else(BTreeMap::new, |g| {
            g.buckets
                .iter()
                .map(|&(k, n)| (k, (n, n as f64 / g.count.max(1) as f64)))
                .collect()
        })
    };
    for (pi, l) in panels.iter().enumerate() {
        let (b, a) = (share(&l.before), share(&l.after));
        let ks: Vec<u32> = b.keys().chain(a.keys()).copied().collect();
        let (kmin, kmax) = (
            ks.iter().min().copied().unwrap_or(0),
            ks.iter().max().copied().unwrap_or(0),
        );
        let top = 80.0 + pi as f64 * (panel_h + gap);
        let base = top + panel_h;
        let max = b
            .values()
            .chain(a.values())
            .map(|x| x.1)
            .fold(0.0, f64::max)
            .max(1e-9);
        let slot = width / f64::from(kmax - kmin + 1);
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\">{} latency · KS distance {}</text>",
            px(left),
            px(top - 8.0),
            esc(l.source),
            opt(l.ks, 3)
        );
        let _ = writeln!(
            out,
            "<line x1=\"{l}\" y1=\"{y}\" x2=\"{r}\" y2=\"{y}\" stroke=\"#999\"/>",
            l = px(left),
            r = px(left + width),
            y = px(base)
        );
        for k in kmin..=kmax {
            let x0 = left + f64::from(k - kmin) * slot;
            let lo = if k == 0 { 0 } else { 1i64 << k };
            for (side, colour, map, dx) in [
                ("before", "#4a7bd0", &b, 0.0),
                ("after", "#e8701a", &a, slot / 2.0),
            ] {
                let Some(&(n, f)) = map.get(&k) else { continue };
                let h = f / max * (panel_h - 12.0);
                let _ = writeln!(
                    out,
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{colour}\"><title>{side} [{}, {}): {n} ({:.1}%)</title></rect>",
                    px(x0 + dx + 1.0),
                    px(base - h),
                    px((slot / 2.0 - 2.0).max(0.5)),
                    px(h),
                    esc(&human_ns(lo)),
                    esc(&human_ns(1i64 << (k + 1))),
                    100.0 * f
                );
            }
            if (k - kmin) % 2 == 0 {
                let _ = writeln!(
                    out,
                    "<text class=\"axis mid\" x=\"{}\" y=\"{}\">{}</text>",
                    px(x0),
                    px(base + 15.0),
                    esc(&human_ns(lo))
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Escaped text for HTML.
use crate::svg::strip_prolog;

fn h(s: &str) -> String {
    crate::svg::esc(s)
}

/// The comparison as one self-contained HTML page (no external fetches): verdict, tables,
/// the histograms and the differential flame graph inline.
pub fn render_html(c: &Computed) -> anyhow::Result<String> {
    let cmp = &c.comparison;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>perfpack compare: {b} vs {a}</title>\n\
         <style>body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; margin: 1em 0; }} \
         td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }} td:first-child, th:first-child {{ text-align: left; }} \
         .changed {{ color: #b00; font-weight: bold; }} .verdict {{ font-size: 1.2em; }}</style></head><body>\n\
         <h1>{b} vs {a}</h1>\n",
        b = h(&cmp.before.bundles),
        a = h(&cmp.after.bundles),
    );
    o.push_str(&render_body(c, "h2")?);
    o.push_str("\n</body></html>\n");
    Ok(o)
}

/// The comparison as HTML to put inside a page: verdict, tables (headings at `level`), the
/// histograms, the differential flame graph.
pub fn render_body(c: &Computed, level: &str) -> anyhow::Result<String> {
    let histograms = render_histograms(&c.comparison);
    let mut o = String::new();
    let _ = writeln!(o, "<p class=\"verdict\">{}</p>", h(&c.comparison.verdict));
    for s in sections(&c.comparison) {
        if !s.title.is_empty() && s.title != "sides" {
            let _ = writeln!(o, "<{level}>{}</{level}>", h(&s.title));
        }
        o.push_str("<table><tr>");
        for x in &s.head {
            let _ = write!(o, "<th>{}</th>", h(x));
        }
        o.push_str("</tr>\n");
        for r in s.rows {
            o.push_str("<tr>");
            for x in r {
                if x == "CHANGED" {
                    o.push_str("<td class=\"changed\">CHANGED</td>");
                } else {
                    let _ = write!(o, "<td>{}</td>", h(&x));
                }
            }
            o.push_str("</tr>\n");
        }
        o.push_str("</table>\n");
        // The histograms under the latency table.
        if s.title.starts_with("latency") {
            o.push_str(strip_prolog(&histograms));
            o.push('\n');
        }
    }
    if let Some(svg) = differential(c)? {
        let _ = writeln!(o, "<{level}>Differential flame graph</{level}>");
        o.push_str(strip_prolog(&String::from_utf8_lossy(&svg)));
    }
    Ok(o)
}
