//! `perfpack compare A B`: before/after (or this box/that box), corrected for clock frequency,
//! as text or JSON, and optionally a differential flame graph, histograms and an HTML page.

use std::path::PathBuf;

use super::{Format, print};
use crate::compare::compute;
use crate::render::compare::{differential, render_histograms, render_html, render_text};

/// What `perfpack compare` compares and writes.
#[derive(Debug)]
pub struct Request {
    /// The baseline bundle(s) ("before"; a glob makes a set).
    pub before: String,
    /// The bundle(s) compared with it ("after").
    pub after: String,
    /// Frequency CPU time is normalized to (default: the lower base MHz of the two sides).
    pub ref_mhz: Option<f64>,
    /// How many functions to list.
    pub top: usize,
    pub format: Format,
    /// Also write the differential flame graph to this SVG.
    pub flamegraph: Option<PathBuf>,
    /// Also write the latency histograms of both sides to this SVG.
    pub histograms: Option<PathBuf>,
    /// Also write everything as one self-contained HTML page.
    pub output: Option<PathBuf>,
    /// CPU time and functions of the threads of these cgroups only.
    pub cgroups: Vec<String>,
    /// Also compare this sampled event, and draw its stacks in the differential flame graph.
    pub event: Option<String>,
}

pub fn run(a: Request) -> anyhow::Result<()> {
    let c = compute(
        &a.before,
        &a.after,
        a.ref_mhz,
        a.top,
        a.flamegraph.is_some() || a.output.is_some(),
        &a.cgroups,
        a.event.as_deref(),
    )?;
    if let (Some(path), Some(svg)) = (&a.flamegraph, differential(&c)?) {
        crate::bundle::output::write(path, &svg)?;
    }
    if let Some(path) = &a.histograms {
        crate::bundle::output::write(path, render_histograms(&c.comparison).as_bytes())?;
    }
    if let Some(path) = &a.output {
        let html = render_html(&c)?;
        crate::bundle::output::write(path, html.as_bytes())?;
    }
    let text = match a.format {
        Format::Json => serde_json::to_string_pretty(&c.comparison)? + "\n",
        Format::Table => render_text(&c.comparison),
    };
    print(&text)
}
