//! The utilization heat maps' picture: one row per CPU or process.

use std::fmt::Write as _;

use crate::svg::{self, esc, human_ns, px};
use crate::utilization::Util;

/// The picture: one row per CPU or process (first row at the top), colour linear in the
/// percentage (100 and above darkest). The cells carry the same binning attributes as the
/// latency heat maps, so the report selects time ranges on them too.
pub fn render(u: &Util, title: &str, subtitle: &str) -> String {
    let col_min = u.cells.keys().map(|k| k.0).min().unwrap_or(0).min(0);
    let col_max = u.cells.keys().map(|k| k.0).max().unwrap_or(0);
    let ncols = (col_max - col_min + 1) as f64;
    let nrows = u.rows.len().max(1) as f64;
    let rh = (480.0 / nrows).clamp(8.0, 24.0);
    let (left, top, pw) = (190.0, 64.0, 990.0);
    let ph = rh * nrows;
    let cw = pw / ncols;
    let mut out = String::new();
    svg::open(&mut out, left + pw + 30.0, top + ph + 90.0, title, subtitle);
    svg::plot_area(&mut out, left, top, pw, ph);
    // Rows count from the bottom in the binning attributes, as in the latency maps.
    let nr = u.rows.len();
    let _ = writeln!(
        out,
        "<g id=\"cells\" data-step-ns=\"{}\" data-rows=\"labels\" data-row-ns=\"0\" data-col-min=\"{col_min}\" \
         data-ncols=\"{ncols}\" data-row-min=\"0\" data-nrows=\"{nr}\" data-plot=\"{} {} {} {}\">",
        u.step,
        px(left),
        px(top),
        px(pw),
        px(ph)
    );
    for (&(c, r), &(sum, n)) in &u.cells {
        let v = sum / f64::from(n);
        let x = left + (c - col_min) as f64 * cw;
        let y = top + r as f64 * rh;
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" data-col=\"{c}\" data-row=\"{}\" data-value=\"{v:.2}\"><title>{} · {}–{}: {v:.1} {}</title></rect>",
            px(x),
            px(y),
            px(cw),
            px(rh),
            svg::heat(v / 100.0),
            nr - 1 - r,
            esc(&u.rows[r]),
            esc(&human_ns(c * u.step)),
            esc(&human_ns((c + 1) * u.step)),
            esc(&u.unit),
        );
    }
    out.push_str("</g>\n");
    for (r, label) in u.rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text class=\"axis end\" x=\"{}\" y=\"{}\">{}</text>",
            px(left - 6.0),
            px(top + (r as f64 + 0.5) * rh + 4.0),
            esc(label)
        );
    }
    svg::time_axis(&mut out, (left, top, pw, ph), (col_min, col_max), u.step);
    let ky = top + ph + 58.0;
    svg::heat_key(&mut out, left, ky);
    let _ = writeln!(
        out,
        "<text class=\"axis\" x=\"{}\" y=\"{}\">{}: 0 to 100 (linear; hover a cell for its value)</text>\n</svg>",
        px(left + 21.0 * 12.0 + 8.0),
        px(ky + 10.0),
        esc(&u.unit)
    );
    out
}
