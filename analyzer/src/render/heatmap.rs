//! The heat map picture: cells as rectangles with hover titles, axes with units, a colour key.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::heatmap::{Cells, Rows};
use crate::svg::{self, esc, human_ns, px};

/// The picture: cells as rectangles with hover titles, axes with units, a colour key.
pub fn render(cells: &Cells, title: &str, subtitle: &str, noun: &str, samples: bool) -> String {
    let sorted: BTreeMap<(i64, i64), u64> = cells.counts.iter().map(|(k, v)| (*k, *v)).collect();
    let col_min = sorted.keys().map(|k| k.0).min().unwrap_or(0).min(0);
    let col_max = sorted.keys().map(|k| k.0).max().unwrap_or(0);
    let (row_min, row_max) = match cells.rows {
        Rows::Log2 => (
            sorted.keys().map(|k| k.1).min().unwrap_or(0),
            sorted.keys().map(|k| k.1).max().unwrap_or(0),
        ),
        Rows::Fixed { n, .. } | Rows::Offset { n, .. } | Rows::Doubling { n, .. } => {
            (0, n as i64 - 1)
        }
    };
    let ncols = (col_max - col_min + 1) as f64;
    let nrows = (row_max - row_min + 1) as f64;
    let max = sorted.values().copied().max().unwrap_or(1) as f64;
    let (left, top, pw, ph) = (100.0, 64.0, 1080.0, 480.0);
    let (cw, rh) = (pw / ncols, ph / nrows);
    let width = left + pw + 30.0;
    let height = top + ph + 90.0;
    let mut out = String::new();
    svg::open(&mut out, width, height, title, subtitle);
    svg::plot_area(&mut out, left, top, pw, ph);
    // The binning, for programs that read the cells back (the report links them to flame
    // graphs of their time range).
    let _ = writeln!(
        out,
        "<g id=\"cells\" data-step-ns=\"{}\" data-rows=\"{}\" data-row-ns=\"{}\" \
         data-col-min=\"{col_min}\" data-ncols=\"{ncols}\" data-row-min=\"{row_min}\" data-nrows=\"{nrows}\" \
         data-plot=\"{} {} {} {}\">",
        cells.step,
        if matches!(cells.rows, Rows::Log2) {
            "log2"
        } else {
            "linear"
        },
        cells.row_ns().unwrap_or(0),
        px(left),
        px(top),
        px(pw),
        px(ph),
    );
    for (&(c, r), &n) in &sorted {
        let x = left + (c - col_min) as f64 * cw;
        let y = top + ph - (r - row_min + 1) as f64 * rh;
        let (t0, t1) = (
            c.saturating_mul(cells.step),
            c.saturating_add(1).saturating_mul(cells.step),
        );
        let (lo, hi) = cells.row_range(r);
        let range = if samples {
            format!("offset {}–{}", human_ns(lo), human_ns(hi))
        } else {
            format!("latency {}–{}", human_ns(lo), human_ns(hi))
        };
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" data-col=\"{c}\" data-row=\"{r}\" data-count=\"{n}\"><title>time {}–{}, {}: {n} {}</title></rect>",
            px(x),
            px(y),
            px(cw),
            px(rh),
            svg::heat((n as f64 / max).sqrt()),
            esc(&human_ns(t0)),
            esc(&human_ns(t1)),
            esc(&range),
            esc(noun),
        );
    }
    out.push_str("</g>\n");
    svg::time_axis(
        &mut out,
        (left, top, pw, ph),
        (col_min, col_max),
        cells.step,
    );
    // Y axis: log2 rows labelled by their lower edge; linear rows at round values.
    match cells.rows {
        Rows::Log2 => {
            let every = ((nrows / 24.0).ceil() as i64).max(1);
            for r in (row_min..=row_max).step_by(every as usize) {
                let y = top + ph - (r - row_min) as f64 * rh;
                let _ = writeln!(
                    out,
                    "<text class=\"axis end\" x=\"{}\" y=\"{}\">{}</text>",
                    px(left - 6.0),
                    px(y),
                    esc(&human_ns(cells.row_range(r).0))
                );
            }
        }
        _ => {
            let top_ns = cells.row_range(row_max).1;
            let tick = svg::nice_step(top_ns.max(1), 10);
            let mut v = 0;
            while v <= top_ns {
                let y = top + ph - v as f64 / top_ns as f64 * ph;
                let _ = writeln!(
                    out,
                    "<text class=\"axis end\" x=\"{}\" y=\"{}\">{}</text>",
                    px(left - 6.0),
                    px(y + 4.0),
                    esc(&human_ns(v))
                );
                v += tick;
            }
        }
    }
    let y_title = if samples {
        format!(
            "offset within the column ({} rows)",
            human_ns(cells.row_ns().unwrap_or(0))
        )
    } else {
        match cells.row_ns() {
            Some(h) => format!("latency (rows of {})", human_ns(h)),
            None => "latency (log2 rows)".into(),
        }
    };
    let _ = writeln!(
        out,
        "<text class=\"axis mid\" transform=\"translate(18,{}) rotate(-90)\">{}</text>",
        px(top + ph / 2.0),
        esc(&y_title)
    );
    // Colour key.
    let ky = top + ph + 58.0;
    svg::heat_key(&mut out, left, ky);
    let _ = writeln!(
        out,
        "<text class=\"axis\" x=\"{}\" y=\"{}\">{} per cell: 1 to {} (colour ∝ √count; hover a cell for its count)</text>\n</svg>",
        px(left + 21.0 * 12.0 + 8.0),
        px(ky + 10.0),
        esc(noun),
        max as u64
    );
    out
}
