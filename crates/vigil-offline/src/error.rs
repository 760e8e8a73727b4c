//! Errors of the offline drift report. Each names the file, and where it applies the line and
//! column, so a data scientist can fix the file; none is retryable (the same files give the same
//! error).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: line {line}: {message}")]
    Csv { path: PathBuf, line: u64, message: String },
    #[error("{path}: the file is empty (a CSV file needs a header row, a Parquet or Arrow file a schema)")]
    Empty { path: PathBuf },
    #[error("{path}: line {line}: expected {expected} fields as in the header, found {found}")]
    Ragged { path: PathBuf, line: u64, expected: usize, found: usize },
    #[error("{path}: header: column {column:?} appears twice")]
    DuplicateColumn { path: PathBuf, column: String },
    #[error("column {column:?} is in {present} but missing from {missing}")]
    MissingColumn { column: String, present: PathBuf, missing: PathBuf },
    #[error("{path}: line {line}, column {column:?}: {value:?} is not a number (the column is numeric)")]
    NotNumeric { path: PathBuf, line: u64, column: String, value: String },
    #[error("{path}: {place}, column {column:?}: {message}")]
    BadValue { path: PathBuf, place: Place, column: String, message: String },
    #[error("{path}: {place}: {message}")]
    Avro { path: PathBuf, place: Place, message: String },
    #[error("{first}\n{}", bad_rows_hint(*.limit))]
    /// The first bad row's error, once more rows were bad than `--max-bad-rows` allows.
    TooManyBadRows { first: Box<OfflineError>, count: u64, limit: u64 },
    #[error("{path}: no rows to build a reference from{detail}")]
    NoRows { path: PathBuf, detail: String },
    #[error("{path}: the file names its columns but has no data rows")]
    HeaderOnly { path: PathBuf },
    #[error("{path}: expected {} {expected} file: {detail}", article(expected))]
    WrongFormat { path: PathBuf, expected: &'static str, detail: String },
    /// `columns`: how many were counted when reading stopped (at least `limit + 1`).
    #[error("{path}: more than {limit} columns, the limit (--max-columns)")]
    TooWide { path: PathBuf, columns: usize, limit: usize },
    #[error("{path}: line {line}: longer than {limit} bytes (--max-line-bytes)")]
    LineTooLong { path: PathBuf, line: u64, limit: usize },
    #[error("{flag}: {message}")]
    BadArgument { flag: &'static str, message: String },
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

/// Where in a file a problem is: a CSV line, an Avro record (1-based) or the file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Header,
    Line(u64),
    Record(u64),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Header => f.write_str("header"),
            Place::Line(n) => write!(f, "line {n}"),
            Place::Record(n) => write!(f, "record {n}"),
        }
    }
}

/// "an" before a vowel sound ("an Arrow IPC file"), "a" otherwise ("a CSV file").
fn article(word: &str) -> &'static str {
    if word.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    }
}

fn bad_rows_hint(limit: u64) -> String {
    match limit {
        0 => {
            "fix the row, or let bad rows be skipped (counted and reported) with --max-bad-rows N".to_owned()
        }
        _ => format!("more than {limit} bad rows (--max-bad-rows {limit}): fix the file or raise the limit"),
    }
}

impl OfflineError {
    /// Never: these are data and usage errors.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
