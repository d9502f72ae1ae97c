//! `perfpack fleet`: rank the bundles of a fleet by how much they differ, and say in what.

use super::{Format, print};
use crate::fleet::{ranking, render_text};

/// Ranks `bundles`; with `event`, by that sampled event's rate and functions too.
pub fn run(bundles: &[String], format: Format, event: Option<&str>) -> anyhow::Result<()> {
    let bundles = crate::bundle::open_all(bundles)?;
    let ranked = ranking(bundles, event)?;
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&ranked)? + "\n",
        Format::Table => render_text(&ranked),
    };
    print(&text)
}
