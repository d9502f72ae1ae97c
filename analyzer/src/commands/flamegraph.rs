//! `perfpack flamegraph`: a CPU, off-CPU or other sampled event's flame graph (SVG), or its
//! folded stacks, written to the options' output.

use crate::flamegraph::{Options, draw};

pub fn run(bundles: &[String], opts: &Options) -> anyhow::Result<()> {
    crate::bundle::output::write(&opts.output, &draw(bundles, opts)?)
}
