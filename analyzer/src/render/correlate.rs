//! `perfpack correlate` as text.

use std::fmt::Write as _;

use crate::correlate::Correlations;

pub fn render_text(c: &Correlations, top: usize) -> String {
    let mut out = format!("What moves with {} ({}):\n\n", c.latency, c.note);
    if c.ranked.is_empty() {
        out.push_str(
            "nothing to rank: fewer than 5 seconds with both this latency and per-interval metrics\n",
        );
        return out;
    }
    let mut t = crate::text_table::TextTable::new(&["metric", "rho", "seconds"]);
    for r in c.ranked.iter().take(top) {
        t.row(vec![
            r.metric.clone(),
            format!("{:+.2}", r.rho),
            r.seconds.to_string(),
        ]);
    }
    out.push_str(&t.render());
    if !c.demand.is_empty() {
        out.push_str(
            "\nLittle's law per disk (requests in service = mean latency × completions per second):\n\n",
        );
        let mut t = crate::text_table::TextTable::new(&[
            "disk",
            "completions/s",
            "mean latency ms",
            "in service",
            "measured aqu-sz",
        ]);
        for d in &c.demand {
            t.row(vec![
                d.disk.clone(),
                format!("{:.1}", d.completions_per_s),
                format!("{:.3}", d.mean_latency_ms),
                format!("{:.3}", d.in_service),
                d.measured_aqu_sz
                    .map_or_else(|| "-".into(), |a| format!("{a:.3}")),
            ]);
        }
        out.push_str(&t.render());
    }
    let _ = writeln!(out);
    out
}
