//! Reading a reference file for `vigil reference upload`: a CSV file (one column per feature,
//! typed as `vigil drift` types them), an Avro object container file (vigil `PredictionEvent`s,
//! or flat records whose fields are features), or a Parquet or Arrow IPC file (columns typed by
//! the file, read by `vigil drift`'s columnar engine). Each row reaches the caller as the
//! [`PredictionView`] the monitor would have decoded from a live event, one at a time (CSV and
//! Avro stream through in constant memory; Parquet and Arrow are read as columns first);
//! building the profile is the caller's.
//!
//! Bad rows (a ragged CSV line, a value that does not fit its column's type, a score that is not
//! a finite number, an invalid prediction event) stop the read at the first one, naming file,
//! line or record, and column; with `--max-bad-rows N` up to N are skipped, counted and the first
//! few reported. A file that is not CSV or Avro at all, or an unreadable file, always stops it.

mod from_avro;
mod from_columns;
mod from_csv;
mod progress;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vigil_events::PredictionView;

use crate::error::OfflineError;
pub use progress::{grouped, Progress};

/// How many bad rows a report keeps the reason of.
pub const BAD_ROW_EXAMPLES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Avro,
    Parquet,
    /// Arrow IPC, file (Feather v2) or stream format.
    Arrow,
}

impl Format {
    /// `--format` if given, else the file's extension.
    pub fn of(path: &Path, given: Option<Format>) -> Result<Format, OfflineError> {
        if let Some(format) = given {
            return Ok(format);
        }
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("avro") => Ok(Format::Avro),
            Some("parquet" | "pq") => Ok(Format::Parquet),
            Some("arrow" | "feather" | "ipc" | "arrows") => Ok(Format::Arrow),
            _ => Err(OfflineError::BadArgument {
                flag: "--format",
                message: format!(
                    "cannot tell the format of {} from its extension (.csv, .avro, .parquet, .arrow): pass --format csv, avro, parquet or arrow",
                    path.display()
                ),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Avro => "avro",
            Format::Parquet => "parquet",
            Format::Arrow => "arrow",
        }
    }
}

/// How to read a reference file: the flags of `vigil reference upload` that concern the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReadOptions {
    /// The file's format; by default from its extension (.csv, .avro, .parquet, .arrow).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Force a column's type instead of inferring it (repeatable). CSV columns are numeric when
    /// every non-missing cell is a number, categorical otherwise; Avro fields by their type.
    #[arg(long = "column", value_name = "NAME=numeric|categorical")]
    pub columns: Vec<String>,
    /// A column that is not a model input (an id, a timestamp, the true outcome): left out
    /// (repeatable).
    #[arg(long = "skip-column", value_name = "NAME")]
    pub skip_columns: Vec<String>,
    /// The column holding the model's score (probability of the positive class), profiled as
    /// the predictions' score instead of as a feature.
    #[arg(long, value_name = "NAME")]
    pub score_column: Option<String>,
    /// The column holding the model's predicted label, profiled as the predicted labels instead
    /// of as a feature.
    #[arg(long, value_name = "NAME")]
    pub label_column: Option<String>,
    /// Skip up to this many bad rows (each counted, the first few reported) instead of stopping
    /// at the first one.
    #[arg(long, default_value_t = 0)]
    pub max_bad_rows: u64,
}

/// What a column of the file became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Numeric,
    Categorical,
    Score,
    Label,
    /// Left out with `--skip-column`.
    Skipped,
    /// No value in any row: left out.
    Empty,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Numeric => "numeric",
            Role::Categorical => "categorical",
            Role::Score => "score",
            Role::Label => "label",
            Role::Skipped => "skipped",
            Role::Empty => "empty",
        }
    }
}

/// What reading a file found.
#[derive(Debug, Clone)]
pub struct ReadReport {
    pub path: PathBuf,
    pub format: Format,
    /// Whether the records were vigil `PredictionEvent`s (Avro only).
    pub prediction_events: bool,
    /// Rows handed to the caller.
    pub rows: u64,
    /// Rows skipped as bad (at most `--max-bad-rows`).
    pub bad_rows: u64,
    /// The reasons of the first [`BAD_ROW_EXAMPLES`] bad rows.
    pub bad_examples: Vec<String>,
    /// Every column (CSV) or field (flat Avro records) and what it became, in file order.
    pub columns: Vec<(String, Role)>,
    /// Events per (model, version) in a file of prediction events.
    pub event_versions: BTreeMap<(String, String), u64>,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl ReadReport {
    fn new(path: &Path, format: Format) -> Self {
        ReadReport {
            path: path.into(),
            format,
            prediction_events: false,
            rows: 0,
            bad_rows: 0,
            bad_examples: Vec::new(),
            columns: Vec::new(),
            event_versions: BTreeMap::new(),
            bytes: 0,
            elapsed: Duration::ZERO,
        }
    }

    pub fn count(&self, role: Role) -> usize {
        self.columns.iter().filter(|(_, r)| *r == role).count()
    }
}

/// Reads `path` and calls `on_row` once per good row, reporting progress as it goes.
pub fn read_reference(
    path: &Path,
    options: &ReadOptions,
    progress: &mut Progress,
    on_row: &mut dyn FnMut(&PredictionView<'_>),
) -> Result<ReadReport, OfflineError> {
    let started = Instant::now();
    let format = Format::of(path, options.format)?;
    let mut reading = Reading {
        path,
        flags: ColumnFlags::parse(options)?,
        bad: BadRows::new(options.max_bad_rows),
        progress,
        on_row,
        report: ReadReport::new(path, format),
    };
    match format {
        Format::Csv => from_csv::read(&mut reading)?,
        Format::Avro => from_avro::read(&mut reading)?,
        Format::Parquet => from_columns::read(&mut reading, crate::engine::InputFormat::Parquet)?,
        Format::Arrow => from_columns::read(&mut reading, crate::engine::InputFormat::Arrow)?,
    }
    let Reading { mut report, bad, .. } = reading;
    (report.bad_rows, report.bad_examples) = (bad.count, bad.examples);
    report.elapsed = started.elapsed();
    if report.rows == 0 {
        let detail = match report.bad_rows {
            0 => String::new(),
            n => format!(" ({n} bad rows skipped)"),
        };
        return Err(OfflineError::NoRows { path: path.into(), detail });
    }
    Ok(report)
}

/// One read under way: the file, what the flags say, where rows and counts go.
pub(crate) struct Reading<'r> {
    path: &'r Path,
    flags: ColumnFlags,
    bad: BadRows,
    progress: &'r mut Progress,
    on_row: &'r mut dyn FnMut(&PredictionView<'_>),
    report: ReadReport,
}

/// The column flags, checked: each names a role for a column.
pub(crate) struct ColumnFlags {
    roles: BTreeMap<String, Role>,
}

impl ColumnFlags {
    fn parse(options: &ReadOptions) -> Result<Self, OfflineError> {
        let mut problems = Vec::new();
        let mut wanted: Vec<(&str, Role, &str)> = Vec::new();
        for item in &options.columns {
            match item.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                Some((name, "numeric")) if !name.is_empty() => wanted.push((name, Role::Numeric, "--column")),
                Some((name, "categorical")) if !name.is_empty() => {
                    wanted.push((name, Role::Categorical, "--column"))
                }
                _ => problems.push(format!("--column {item:?}: expected NAME=numeric or NAME=categorical")),
            }
        }
        wanted
            .extend(options.skip_columns.iter().map(|name| (name.as_str(), Role::Skipped, "--skip-column")));
        wanted.extend(options.score_column.iter().map(|name| (name.as_str(), Role::Score, "--score-column")));
        wanted.extend(options.label_column.iter().map(|name| (name.as_str(), Role::Label, "--label-column")));
        let mut roles = BTreeMap::new();
        for (name, role, flag) in wanted {
            match roles.insert(name.to_owned(), role) {
                Some(before) if before != role => problems
                    .push(format!("column {name:?} is given two roles ({} and {flag})", before.name())),
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(ColumnFlags { roles })
        } else {
            Err(OfflineError::BadArgument { flag: "columns", message: problems.join("; ") })
        }
    }

    /// The role the flags give `name`, if any.
    fn role(&self, name: &str) -> Option<Role> {
        self.roles.get(name).copied()
    }

    fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    /// Every flagged column must be in the file: a typo would otherwise turn a score or an id
    /// into a feature without a word.
    fn check_present<'a>(
        &self,
        path: &Path,
        names: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), OfflineError> {
        let missing: Vec<&str> = self
            .roles
            .keys()
            .map(String::as_str)
            .filter(|k| !names.clone().into_iter().any(|n| n == *k))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let have: Vec<&str> = names.into_iter().collect();
        Err(OfflineError::BadArgument {
            flag: "columns",
            message: format!(
                "{}: no column named {} (columns: {})",
                path.display(),
                quoted(&missing),
                have.join(", ")
            ),
        })
    }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// Bad rows seen so far, against the `--max-bad-rows` limit.
pub(crate) struct BadRows {
    limit: u64,
    count: u64,
    examples: Vec<String>,
    first: Option<OfflineError>,
}

impl BadRows {
    fn new(limit: u64) -> Self {
        BadRows { limit, count: 0, examples: Vec::new(), first: None }
    }

    /// Counts a bad row; past the limit, the read stops with the first bad row's error.
    fn skip(&mut self, error: OfflineError) -> Result<(), OfflineError> {
        self.count += 1;
        if self.count > self.limit {
            let first = self.first.take().unwrap_or(error);
            return Err(OfflineError::TooManyBadRows {
                first: Box::new(first),
                count: self.count,
                limit: self.limit,
            });
        }
        if self.examples.len() < BAD_ROW_EXAMPLES {
            self.examples.push(error.to_string());
        }
        self.first.get_or_insert(error);
        Ok(())
    }

    /// Forgets the count (a second pass over the same file meets the same rows again).
    fn restart(&mut self) {
        *self = BadRows::new(self.limit);
    }
}

/// A row of reference data as the prediction the monitor would have decoded.
pub(crate) fn row_view<'a>(
    numeric_features: Vec<(&'a str, f64)>,
    categorical_features: Vec<(&'a str, &'a str)>,
    score: Option<f64>,
    label: Option<&'a str>,
) -> PredictionView<'a> {
    PredictionView {
        event_id: "",
        prediction_id: "",
        model_id: "",
        model_version: "",
        event_time_ms: 0,
        segment: Vec::new(),
        numeric_features,
        categorical_features,
        label,
        probabilities: None,
        score,
        value: None,
        serving_latency_ms: None,
    }
}

/// A score must be a finite number, as in a live prediction.
fn check_score(score: f64) -> Result<f64, String> {
    if score.is_finite() {
        Ok(score)
    } else {
        Err(format!("the score {score} is not a finite number"))
    }
}

#[cfg(test)]
mod tests;
