//! SQL over bundles: the object store that mounts bundles in place, the DataFusion session with
//! the `queries/` views, result output, and the interactive shell.

pub mod block_pairs;
pub mod library;
pub mod output;
mod runtime;
pub mod session;
pub mod shell;
mod store;

pub use output::OutFormat;
pub use runtime::runtime;
pub use session::{Remote, Session, SessionOptions};

/// A DataFusion error as one line (its messages can span lines).
pub fn error(e: datafusion::error::DataFusionError) -> anyhow::Error {
    anyhow::anyhow!("{}", session::one_line(&e.to_string()))
}
