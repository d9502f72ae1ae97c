//! Errors of bundle reading and writing. Each names the file it concerns.

use std::path::PathBuf;

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with a bundle, always with the file (or bundle) it concerns. The cause is
/// part of the message (not a `source()`: thiserror makes a field named `source` one), so
/// `{:#}` chains print it once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a file.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The bundle or one of its files is malformed.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// A Parquet file could not be read or written.
    #[error("{}: {cause}", path.display())]
    Parquet {
        path: PathBuf,
        cause: parquet::errors::ParquetError,
    },
    /// An Arrow operation failed on a table's data.
    #[error("{table}: {cause}")]
    Arrow {
        table: String,
        cause: arrow_schema::ArrowError,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn parquet(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        Error::Parquet {
            path: path.into(),
            cause: source,
        }
    }
}
