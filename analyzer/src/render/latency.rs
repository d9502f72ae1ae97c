//! `perfpack latency`'s outputs: text histograms as biolatency prints them, CSV rows, and the
//! SVG of the histograms.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::latency::{Group, Source};
use crate::svg::{self, esc, human_ns, px};

/// The range of bucket k, for people: `[128 µs, 256 µs)`; bucket 0 also holds 0.
fn bucket_range(k: u32) -> (i64, i64) {
    let lo = if k == 0 { 0 } else { 1i64 << k };
    (lo, 1i64 << (k + 1))
}

/// Text histograms, one per group, as biolatency prints them, with the statistics under each.
pub fn render_text(groups: &[Group], source: Source, by: Option<&str>) -> String {
    let mut out = String::new();
    for g in groups {
        if let Some(by) = by {
            let _ = writeln!(out, "{by} = {}", g.group);
        }
        let (Some(&(first, _)), Some(&(last, _))) = (g.buckets.first(), g.buckets.last()) else {
            continue;
        };
        let max = g.buckets.iter().map(|b| b.1).max().unwrap_or(1);
        let counts: BTreeMap<u32, u64> = g.buckets.iter().copied().collect();
        let _ = writeln!(
            out,
            "{:>24} : {:<10} distribution",
            "latency",
            source.noun()
        );
        for k in first..=last {
            let n = counts.get(&k).copied().unwrap_or(0);
            let (lo, hi) = bucket_range(k);
            let bar = "*".repeat(((n * 40).div_ceil(max.max(1))) as usize);
            let _ = writeln!(
                out,
                "{:>10} -> {:<10} : {:<10} |{:<40}|",
                human_ns(lo),
                human_ns(hi),
                n,
                bar
            );
        }
        let _ = writeln!(
            out,
            "count {}  mean {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
            g.count,
            human_ns(g.mean_ns.round() as i64),
            human_ns(g.p50_ns),
            human_ns(g.p90_ns),
            human_ns(g.p99_ns),
            human_ns(g.p999_ns),
            human_ns(g.max_ns)
        );
    }
    out
}

/// CSV field quoting (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One row per group and non-empty bucket, with the group's statistics repeated.
pub fn render_csv(groups: &[Group]) -> String {
    let mut out = String::from(
        "group,bucket,lo_ns,hi_ns,bucket_count,count,mean_ns,p50_ns,p90_ns,p99_ns,p999_ns,max_ns\n",
    );
    for g in groups {
        for &(k, n) in &g.buckets {
            let (lo, hi) = bucket_range(k);
            let _ = writeln!(
                out,
                "{},{k},{lo},{hi},{n},{},{:.1},{},{},{},{},{}",
                csv_field(&g.group),
                g.count,
                g.mean_ns,
                g.p50_ns,
                g.p90_ns,
                g.p99_ns,
                g.p999_ns,
                g.max_ns
            );
        }
    }
    out
}

/// Histograms as bars, one panel per group, buckets left to right.
pub fn render_svg(groups: &[Group], source: Source, title: &str, subtitle: &str) -> String {
    let kmin = groups
        .iter()
        .filter_map(|g| g.buckets.first())
        .map(|b| b.0)
        .min()
        .unwrap_or(0);
    let kmax = groups
        .iter()
        .filter_map(|g| g.buckets.last())
        .map(|b| b.0)
        .max()
        .unwrap_or(0);
    let nb = (kmax - kmin + 1) as f64;
    let (left, width, panel_h, gap) = (90.0, 1000.0, 160.0, 70.0);
    let height = 70.0 + groups.len() as f64 * (panel_h + gap);
    let mut out = String::new();
    svg::open(&mut out, left + width + 30.0, height, title, subtitle);
    let bar_w = width / nb;
    for (gi, g) in groups.iter().enumerate() {
        let top = 70.0 + gi as f64 * (panel_h + gap);
        let base = top + panel_h;
        let max = g.buckets.iter().map(|b| b.1).max().unwrap_or(1) as f64;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\">{} · {} {} · p50 {} · p99 {} · max {}</text>",
            px(left),
            px(top - 6.0),
            esc(&g.group),
            g.count,
            source.noun(),
            esc(&human_ns(g.p50_ns)),
            esc(&human_ns(g.p99_ns)),
            esc(&human_ns(g.max_ns))
        );
        let _ = writeln!(
            out,
            "<line x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/>",
            l = px(left),
            r = px(left + width),
            b = px(base)
        );
        let _ = writeln!(
            out,
            "<text class=\"axis end\" x=\"{}\" y=\"{}\">{}</text>",
            px(left - 6.0),
            px(top + 10.0),
            max as u64
        );
        for &(k, n) in &g.buckets {
            let h = (n as f64 / max) * (panel_h - 14.0);
            let x = left + (k - kmin) as f64 * bar_w;
            let (lo, hi) = bucket_range(k);
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#e8701a\"><title>[{}, {}): {} {} ({:.1}%)</title></rect>",
                px(x + 1.0),
                px(base - h),
                px((bar_w - 2.0).max(1.0)),
                px(h),
                esc(&human_ns(lo)),
                esc(&human_ns(hi)),
                n,
                source.noun(),
                100.0 * n as f64 / g.count as f64
            );
        }
        // Every other bucket's lower edge along the axis.
        for k in (kmin..=kmax).step_by(if nb > 24.0 { 2 } else { 1 }) {
            let _ = writeln!(
                out,
                "<text class=\"axis mid\" x=\"{}\" y=\"{}\">{}</text>",
                px(left + (k - kmin) as f64 * bar_w),
                px(base + 16.0),
                esc(&human_ns(bucket_range(k).0))
            );
        }
    }
    let _ = writeln!(
        out,
        "<text class=\"axis mid\" x=\"{}\" y=\"{}\">latency (log2 buckets; bar height = {} per bucket)</text>\n</svg>",
        px(left + width / 2.0),
        px(height - 12.0),
        source.noun()
    );
    out
}
