//! The small SVG vocabulary of the heat maps and histograms: escaping of untrusted text, number
//! formatting that never varies between runs, axis labels, and a colour ramp.

use std::fmt::Write as _;

/// Escapes text for SVG/XML content and attribute values. Control characters (not allowed in
/// XML 1.0) become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A length in pixels with at most two decimals (`12`, `12.5`, `12.25`).
pub fn px(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A duration for an axis or a tooltip: `0`, `750 ns`, `1.5 µs`, `12 ms`, `2.25 s`.
pub fn human_ns(ns: i64) -> String {
    let (v, unit) = match ns.unsigned_abs() {
        0 => return "0".into(),
        n if n < 1_000 => return format!("{ns} ns"),
        n if n < 1_000_000 => (ns as f64 / 1e3, "µs"),
        n if n < 1_000_000_000 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} {unit}")
}

/// A "nice" step (1, 2 or 5 × 10^k ns) so that `span / step` is at most `max_ticks`.
pub fn nice_step(span: i64, max_ticks: i64) -> i64 {
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            let s = step.saturating_mul(m);
            if span / s <= max_ticks {
                return s;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// White (0) to dark red (1), through yellow and orange, as heat maps are read. `f` is clamped.
pub fn heat(f: f64) -> String {
    let f = f.clamp(0.0, 1.0);
    const STOPS: [(f64, [f64; 3]); 4] = [
        (0.0, [255.0, 250.0, 205.0]),
        (0.35, [253.0, 190.0, 80.0]),
        (0.7, [232.0, 90.0, 30.0]),
        (1.0, [140.0, 10.0, 10.0]),
    ];
    let i = STOPS.iter().rposition(|(p, _)| *p <= f).unwrap_or(0).min(2);
    let (p0, c0) = STOPS[i];
    let (p1, c1) = STOPS[i + 1];
    let t = (f - p0) / (p1 - p0);
    let c: Vec<u8> = (0..3)
        .map(|k| (c0[k] + (c1[k] - c0[k]) * t).round() as u8)
        .collect();
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// The opening of a standalone SVG document with a white background and the styles the
/// pictures use.
/// The white, grey-bordered area a heat map's cells are drawn on.
pub fn plot_area(out: &mut String, left: f64, top: f64, width: f64, height: f64) {
    let _ = writeln!(
        out,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#ffffff\" stroke=\"#bbb\"/>",
        px(left),
        px(top),
        px(width),
        px(height)
    );
}

pub fn open(out: &mut String, width: f64, height: f64, title: &str, subtitle: &str) {
    let _ = write!(
        out,
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         xmlns=\"http://www.w3.org/2000/svg\">\n\
         <style>text {{ font-family: Verdana, sans-serif; font-size: 12px; fill: #000; }} \
         .title {{ font-size: 17px; text-anchor: middle; }} .sub {{ fill: #555; text-anchor: middle; }} \
         .axis {{ fill: #333; }} .end {{ text-anchor: end; }} .mid {{ text-anchor: middle; }}</style>\n\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n\
         <text class=\"title\" x=\"{cx}\" y=\"24\">{t}</text>\n\
         <text class=\"sub\" x=\"{cx}\" y=\"44\">{s}</text>\n",
        w = px(width),
        h = px(height),
        cx = px(width / 2.0),
        t = esc(title),
        s = esc(subtitle),
    );
}

/// The time axis of a heat map: ticks at a round step under a plot at (left, top, width,
/// height) whose columns `col_min..=col_max` are `step` ns wide, and the axis title.
pub fn time_axis(out: &mut String, plot: (f64, f64, f64, f64), cols: (i64, i64), step: i64) {
    let (left, top, pw, ph) = plot;
    // In i128: the columns come from a stranger's timestamps, whose products with the step
    // need not fit an i64.
    let cols_step = step;
    let (col_min, col_max, step) = (i128::from(cols.0), i128::from(cols.1), i128::from(step));
    let span = (col_max - col_min + 1) * step;
    let tick = i128::from(nice_step(
        i64::try_from(span.max(1)).unwrap_or(i64::MAX),
        10,
    ));
    let mut t = (col_min * step).div_euclid(tick) * tick;
    while t <= (col_max + 1) * step {
        let x = left + (t - col_min * step) as f64 / span as f64 * pw;
        if x >= left - 0.5 {
            let _ = writeln!(
                out,
                "<line x1=\"{x}\" y1=\"{b}\" x2=\"{x}\" y2=\"{b2}\" stroke=\"#666\"/><text class=\"axis mid\" x=\"{x}\" y=\"{ty}\">{}</text>",
                esc(&human_ns(t.clamp(i64::MIN.into(), i64::MAX.into()) as i64)),
                x = px(x),
                b = px(top + ph),
                b2 = px(top + ph + 5.0),
                ty = px(top + ph + 19.0)
            );
        }
        t += tick;
    }
    let _ = writeln!(
        out,
        "<text class=\"axis mid\" x=\"{}\" y=\"{}\">time (columns of {})</text>",
        px(left + pw / 2.0),
        px(top + ph + 40.0),
        esc(&human_ns(cols_step))
    );
}

/// The colour ramp of heat maps, 21 squares from `heat(0)` to `heat(1)` starting at (x, y).
pub fn heat_key(out: &mut String, x: f64, y: f64) {
    for i in 0..=20 {
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>",
            px(x + i as f64 * 12.0),
            px(y),
            heat(i as f64 / 20.0)
        );
    }
}

/// An SVG document without its XML declaration and doctype, for inlining into HTML.
pub fn strip_prolog(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |i| &svg[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            esc("<script>alert(1)</script> & \"q\" 'a'\u{7}"),
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot; &#39;a&#39;\u{FFFD}"
        );
    }

    #[test]
    fn formats_durations_and_steps() {
        assert_eq!(human_ns(0), "0");
        assert_eq!(human_ns(750), "750 ns");
        assert_eq!(human_ns(1_500), "1.5 µs");
        assert_eq!(human_ns(262_144), "262.144 µs");
        assert_eq!(human_ns(2_250_000_000), "2.25 s");
        assert_eq!(nice_step(10_000_000_000, 200), 50_000_000);
        assert_eq!(nice_step(10, 200), 1);
        assert_eq!(px(12.0), "12");
        assert_eq!(px(12.256), "12.26");
        assert_eq!(heat(0.0), "#fffacd");
        assert_eq!(heat(1.0), "#8c0a0a");
    }
}
