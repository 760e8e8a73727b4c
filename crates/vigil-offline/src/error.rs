//! Errors of the offline drift report. Each names the file, and where it applies the line and
//! column, so a data scientist can fix the file; none is retryable (the same files give the same
//! error).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {message}")]
    Csv {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}: the file is empty (a header row is required)")]
    Empty { path: PathBuf },
    #[error("{path}: line {line}: expected {expected} fields as in the header, found {found}")]
    Ragged {
        path: PathBuf,
        line: u64,
        expected: usize,
        found: usize,
    },
    #[error("{path}: header: column {column:?} appears twice")]
    DuplicateColumn { path: PathBuf, column: String },
    #[error("column {column:?} is in {present} but missing from {missing}")]
    MissingColumn {
        column: String,
        present: PathBuf,
        missing: PathBuf,
    },
    #[error(
        "{path}: line {line}, column {column:?}: {value:?} is not a number (the column is numeric)"
    )]
    NotNumeric {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error("{flag}: {message}")]
    BadArgument { flag: &'static str, message: String },
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

impl OfflineError {
    /// Never: these are data and usage errors.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
