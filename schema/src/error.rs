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

/// An error and its causes as one line, `outer: cause: root`, each cause left out when the
/// text before it already says it. Libraries such as object_store put their causes into their
/// own message as well as into `source()`, and `{:#}` would print those two or three times.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn causes_already_in_the_message_are_said_once() {
        let root = Layer("connection refused", None);
        let mid = Layer(
            "request failed after 3 retries: sending",
            Some(Box::new(root)),
        );
        let top = Layer(
            "s3://b/x: request failed after 3 retries: sending",
            Some(Box::new(mid)),
        );
        assert_eq!(
            one_line(&top),
            "s3://b/x: request failed after 3 retries: sending: connection refused"
        );
        let plain = Layer("a", Some(Box::new(Layer("b", None))));
        assert_eq!(one_line(&plain), "a: b");
    }
}
