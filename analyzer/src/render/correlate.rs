//! `perfpack correlate` as text.

use std::fmt::Write as _;

use crate::correlate::Correlations;

/// The ranked metrics' table (the `top` first): head and rows, for the text and the report.
pub fn ranked_table(c: &Correlations, top: usize) -> ([&'static str; 3], Vec<Vec<String>>) {
    let rows = c
        .ranked
        .iter()
        .take(top)
        .map(|r| {
            vec![
                r.metric.clone(),
                format!("{:+.2}", r.rho),
                r.seconds.to_string(),
            ]
        })
        .collect();
    (["metric", "rho", "seconds"], rows)
}

/// Little's law per disk: head and rows, for the text and the report.
pub fn demand_table(c: &Correlations) -> ([&'static str; 5], Vec<Vec<String>>) {
    let rows = c
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
    (
        [
            "disk",
            "completions/s",
            "mean latency ms",
            "in service",
            "measured aqu-sz",
        ],
        rows,
    )
}

pub fn render_text(c: &Correlations, top: usize) -> String {
    let mut out = format!("What moves with {} ({}):\n\n", c.latency, c.note);
    if c.ranked.is_empty() {
        out.push_str(
            "nothing to rank: fewer than 5 seconds with both this latency and per-interval metrics\n",
        );
        return out;
    }
    let (head, rows) = ranked_table(c, top);
    let mut t = crate::text_table::TextTable::new(&head);
    for r in rows {
        t.row(r);
    }
    out.push_str(&t.render());
    if !c.demand.is_empty() {
        out.push_str(
            "\nLittle's law per disk (requests in service = mean latency × completions per second):\n\n",
        );
        let (head, rows) = demand_table(c);
        let mut t = crate::text_table::TextTable::new(&head);
        for r in rows {
            t.row(r);
        }
        out.push_str(&t.render());
    }
    let _ = writeln!(out);
    out
}
