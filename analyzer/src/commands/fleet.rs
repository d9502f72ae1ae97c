//! `perfpack fleet`: rank the bundles of a fleet by how much they differ, and say in what.

use super::{Format, print};
use crate::fleet::{ranking, render_text};

pub fn run(bundles: &[String], format: Format) -> anyhow::Result<()> {
    let bundles = crate::bundle::open_all(bundles)?;
    let ranked = ranking(bundles)?;
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&ranked)? + "\n",
        Format::Table => render_text(&ranked),
    };
    print(&text)
}
