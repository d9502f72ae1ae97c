//! A bundle's `block_rq` segments as block pairing (`sql::block_pairs`) reads them, whether the
//! bundle was opened here or lies in a dataset another process can open.

use perfpack_schema::{Bundle, SegmentData, tables};

/// One bundle's input: its `block_rq` segments in order, and its `bundle`/`host` values.
#[derive(Debug)]
pub struct PairsInput {
    pub segments: Vec<SegmentData>,
    pub bundle: String,
    pub host: String,
    /// Where the segments lie (`s3://…`, `file://…`), when they lie in a store another process
    /// can open too (a dataset); empty for bundles opened in this process.
    pub stored: Vec<StoredSegment>,
    /// Whether the segments' pages were walked when the bundle was opened; if not, they are
    /// walked before they are matched.
    pub pages_checked: bool,
}

/// A segment as a URL and its size: what a Ballista executor needs to open it again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredSegment {
    pub url: String,
    pub size: u64,
}

impl PairsInput {
    /// The `block_rq` segments of an opened bundle.
    pub fn of(bundle: &Bundle, name: &str, host: &str) -> anyhow::Result<PairsInput> {
        let segments = bundle
            .segments(tables::BLOCK_RQ)
            .iter()
            .map(|s| bundle.segment_data(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PairsInput {
            segments,
            bundle: name.to_string(),
            host: host.to_string(),
            stored: Vec::new(),
            pages_checked: super::pages_walked_at_open(bundle),
        })
    }
}
