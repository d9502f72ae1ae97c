//! Pictures and text from computed data: SVG, tables, text histograms. Nothing here runs a
//! query; the commands and the report hand these functions what `analysis` and the picture
//! modules computed.

pub mod compare;
pub mod correlate;
pub mod heatmap;
pub mod latency;
pub mod utilization;
