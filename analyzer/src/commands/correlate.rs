//! `perfpack correlate`: which resource metrics move with a latency, and each disk's demand.

use super::{Format, print};
use crate::latency;
use crate::sql::{Session, SessionOptions};

/// What `perfpack correlate` explains and prints.
#[derive(Debug)]
pub struct Request {
    pub bundles: Vec<String>,
    /// The latency to explain.
    pub latency: latency::Source,
    /// How many metrics to list.
    pub top: usize,
    pub format: Format,
}

pub fn run(a: Request) -> anyhow::Result<()> {
    let bundles = crate::bundle::open_all(&a.bundles)?;
    let origin = crate::analysis::time::origin(&bundles);
    let c = crate::sql::runtime()?.block_on(async {
        let session = Session::open(&bundles, &SessionOptions::default()).await?;
        crate::correlate::correlations(&session, &bundles, &origin, a.latency).await
    })?;
    let text = match a.format {
        Format::Json => serde_json::to_string_pretty(&c)? + "\n",
        Format::Table => crate::render::correlate::render_text(&c, a.top),
    };
    print(&text)
}
