//! `vigil drift`: the vigil-stats drift engine run offline on two files.
//!
//! Reads a reference and a current file (CSV with a header row, Parquet or Arrow IPC) into
//! columns with the [`engine`] (in parallel), infers each column's type from the reference
//! (overridable), picks each column's test with [`vigil_stats::DriftPolicy`] (overridable), runs
//! the tests on all cores and renders the report as text, JSON, Markdown or a self-contained
//! HTML page.
//!
//! [`reference`] reads reference files (CSV, Avro, Parquet, Arrow IPC) for `vigil reference upload`.

pub mod engine;
mod error;
mod html;
pub mod reference;
mod report;
mod sort;
mod table;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;
use vigil_stats::select::{run_categorical, run_numeric, NumericData};
use vigil_stats::{CategoricalSketch, DriftPolicy, DriftTest, FeatureKind, NumericSketch, TestChoice};

use engine::{read_table, Column, InputFormat, Limits, Table, Want};
pub use error::{OfflineError, Place};
pub use report::{Chart, ColumnReport, DriftReport, Status};
pub use table::{is_missing, parse_number, CsvRows, KindGuess};

/// Exit code of `vigil drift --fail-on-drift` when a column drifted (0: no drift, 1: an error,
/// 2: a malformed command line).
pub const EXIT_DRIFT: u8 = 3;

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned table and a summary line.
    #[default]
    Text,
    Json,
    /// A Markdown table (for CI comments).
    Markdown,
    /// One self-contained HTML page with a chart per column (no network needed to view it).
    Html,
}

/// Arguments of `vigil drift`.
#[derive(Debug, Clone, clap::Args)]
pub struct DriftArgs {
    /// Reference file: CSV with a header row, Parquet or Arrow IPC (by extension).
    pub reference: PathBuf,
    /// Current file, with the same columns.
    pub current: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Same as `--format json`.
    #[arg(long, hide = true)]
    pub json: bool,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Read both files as this format instead of going by their extensions.
    #[arg(long, value_enum)]
    pub input_format: Option<InputFormat>,
    /// Force a column's type instead of inferring it (repeatable).
    #[arg(long = "column", value_name = "NAME=numeric|categorical|binary")]
    pub columns: Vec<String>,
    /// Force a column's test (repeatable): psi, ks, wasserstein, wasserstein_normed,
    /// jensen_shannon, hellinger, chi_square, cramer_von_mises, z_test.
    #[arg(long = "test", value_name = "NAME=TEST")]
    pub tests: Vec<String>,
    /// Override a column's threshold (repeatable).
    #[arg(long = "threshold", value_name = "NAME=VALUE")]
    pub thresholds: Vec<String>,
    /// Histogram bins (reference quantiles) for binned tests on numeric columns.
    #[arg(long, default_value_t = 100)]
    pub bins: usize,
    /// Categories kept per column (the most frequent in the reference); the rest count as "other".
    #[arg(long, default_value_t = 1000)]
    pub max_categories: usize,
    /// Current sizes up to this use statistical tests (KS, chi-square), larger ones distances.
    #[arg(long, default_value_t = 1000)]
    pub small_window: u64,
    /// A column with fewer non-missing values than this on either side is reported as
    /// "insufficient data" (never as drifted).
    #[arg(long, default_value_t = 30)]
    pub min_rows: u64,
    /// Exit with code 3 when any column drifted (for CI); without it, drift exits 0.
    #[arg(long)]
    pub fail_on_drift: bool,
    #[command(flatten)]
    pub limits: Limits,
}

impl DriftArgs {
    /// The arguments `vigil drift REFERENCE CURRENT` gets with no flags.
    pub fn new(reference: impl Into<PathBuf>, current: impl Into<PathBuf>) -> Self {
        DriftArgs {
            reference: reference.into(),
            current: current.into(),
            format: OutputFormat::Text,
            json: false,
            out: None,
            input_format: None,
            columns: vec![],
            tests: vec![],
            thresholds: vec![],
            bins: 100,
            max_categories: 1000,
            small_window: 1000,
            min_rows: 30,
            fail_on_drift: false,
            limits: Limits::default(),
        }
    }

    fn output_format(&self) -> OutputFormat {
        if self.json {
            OutputFormat::Json
        } else {
            self.format
        }
    }
}

/// Runs the report and writes it to `--out`, or to `out` without it; returns the report (its
/// `drifted_columns` decide the exit code with `--fail-on-drift`).
pub fn run_drift(args: &DriftArgs, out: &mut impl std::io::Write) -> Result<DriftReport, OfflineError> {
    let report = drift_report(args)?;
    match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|source| OfflineError::Io { path: path.clone(), source })?;
            let mut file = std::io::BufWriter::new(file);
            write_report(&report, args.output_format(), &mut file)
                .and_then(|()| file.flush())
                .map_err(|source| OfflineError::Io { path: path.clone(), source })?;
        }
        None => write_report(&report, args.output_format(), out)?,
    }
    Ok(report)
}

fn write_report(
    report: &DriftReport,
    format: OutputFormat,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Text => report.write_table(out),
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, report).map_err(std::io::Error::from)?;
            writeln!(out)
        }
        OutputFormat::Markdown => report.write_markdown(out),
        OutputFormat::Html => html::write(report, out),
    }
}

/// Per-column overrides parsed from the flags.
struct Overrides {
    kinds: BTreeMap<String, FeatureKind>,
    tests: BTreeMap<String, DriftTest>,
    thresholds: BTreeMap<String, f64>,
}

fn parse_overrides(args: &DriftArgs) -> Result<Overrides, OfflineError> {
    let mut problems = Vec::new();
    let mut pairs = |flag: &'static str, items: &[String]| -> Vec<(String, String)> {
        let mut out = Vec::new();
        for item in items {
            match item.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => out.push((k.trim().to_owned(), v.trim().to_owned())),
                _ => problems.push(format!("--{flag} {item:?}: expected NAME=VALUE")),
            }
        }
        out
    };
    let (kinds, tests, thresholds) =
        (pairs("column", &args.columns), pairs("test", &args.tests), pairs("threshold", &args.thresholds));
    let mut o = Overrides { kinds: BTreeMap::new(), tests: BTreeMap::new(), thresholds: BTreeMap::new() };
    for (k, v) in kinds {
        match v.as_str() {
            "numeric" => o.kinds.insert(k, FeatureKind::Numeric),
            "categorical" => o.kinds.insert(k, FeatureKind::Categorical),
            "binary" => o.kinds.insert(k, FeatureKind::Binary),
            _ => {
                problems.push(format!("--column {k}={v}: type must be numeric, categorical or binary"));
                None
            }
        };
    }
    for (k, v) in tests {
        match v.parse::<DriftTest>() {
            Ok(t) => drop(o.tests.insert(k, t)),
            Err(_) => problems.push(format!("--test {k}={v}: unknown test")),
        }
    }
    for (k, v) in thresholds {
        match v.parse::<f64>() {
            Ok(t) if t.is_finite() => drop(o.thresholds.insert(k, t)),
            _ => problems.push(format!("--threshold {k}={v}: not a number")),
        }
    }
    if args.bins == 0 {
        problems.push("--bins must be at least 1".into());
    }
    if args.max_categories == 0 {
        problems.push("--max-categories must be at least 1".into());
    }
    if problems.is_empty() {
        Ok(o)
    } else {
        Err(OfflineError::BadArgument { flag: "arguments", message: problems.join("; ") })
    }
}

/// Reads both files and computes the report, without printing it.
pub fn drift_report(args: &DriftArgs) -> Result<DriftReport, OfflineError> {
    let started = Instant::now();
    let overrides = parse_overrides(args)?;
    let reference_format = InputFormat::of(&args.reference, args.input_format)?;
    let current_format = InputFormat::of(&args.current, args.input_format)?;
    let forced = |name: &str| match overrides.kinds.get(name) {
        Some(FeatureKind::Numeric) => Want::Numeric,
        Some(_) => Want::Text,
        None => Want::Infer,
    };
    let reference = read_table(&args.reference, reference_format, &forced, &args.limits)?;
    if reference.rows == 0 {
        return Err(OfflineError::HeaderOnly { path: args.reference.clone() });
    }
    for name in overrides.kinds.keys().chain(overrides.tests.keys()).chain(overrides.thresholds.keys()) {
        if reference.position(name).is_none() {
            return Err(OfflineError::BadArgument {
                flag: "column",
                message: format!("no column named {name:?}"),
            });
        }
    }
    let kinds: Vec<FeatureKind> = reference
        .header
        .iter()
        .zip(&reference.columns)
        .map(|(name, column)| overrides.kinds.get(name).copied().unwrap_or_else(|| infer_kind(column)))
        .collect();
    let want_current = |name: &str| match reference.position(name).map(|i| kinds[i]) {
        Some(FeatureKind::Numeric) => Want::Numeric,
        _ => Want::Text,
    };
    let current = read_table(&args.current, current_format, &want_current, &args.limits)?;
    if current.rows == 0 {
        return Err(OfflineError::HeaderOnly { path: args.current.clone() });
    }
    for (have, lack) in [(&reference, &current), (&current, &reference)] {
        if let Some(col) = have.header.iter().find(|h| lack.position(h).is_none()) {
            return Err(OfflineError::MissingColumn {
                column: col.clone(),
                present: have.path.clone(),
                missing: lack.path.clone(),
            });
        }
    }
    let read_seconds = started.elapsed().as_secs_f64();
    let policy = DriftPolicy { small_window: args.small_window, ..DriftPolicy::default() };
    let (reference_rows, current_rows) = (reference.rows, current.rows);
    let Table { header, columns: reference_columns, .. } = reference;
    let Table { header: current_header, columns: current_columns, .. } = current;
    let mut current_columns: Vec<Option<Column>> = current_columns.into_iter().map(Some).collect();
    let pairs: Vec<(String, FeatureKind, Column, Column)> = header
        .into_iter()
        .zip(reference_columns)
        .zip(kinds)
        .map(|((name, r), kind)| {
            let i = current_header.iter().position(|h| *h == name).expect("checked");
            let c = current_columns[i].take().expect("each column once");
            (name, kind, r, c)
        })
        .collect();
    let columns: Vec<ColumnReport> = pairs
        .into_par_iter()
        .map(|(name, kind, r, c)| compare_column(&name, kind, r, c, &policy, &overrides, args))
        .collect();
    let mut report = DriftReport::new(&args.reference, &args.current, reference_rows, current_rows, columns);
    report.min_rows = args.min_rows;
    report.formats = [reference_format, current_format];
    report.seconds = [read_seconds, started.elapsed().as_secs_f64() - read_seconds];
    Ok(report)
}

/// Binary if at most two distinct non-missing values; numeric if every non-missing value is a
/// number; categorical otherwise (also for a column with no values).
fn infer_kind(column: &Column) -> FeatureKind {
    match column {
        Column::Numeric(n) if n.values.len() > n.missing.len() => {
            if n.spellings.len() <= 2 {
                FeatureKind::Binary
            } else {
                FeatureKind::Numeric
            }
        }
        Column::Numeric(_) => FeatureKind::Categorical,
        Column::Text(t) => match t.distinct_present() {
            1 | 2 => FeatureKind::Binary,
            _ => FeatureKind::Categorical,
        },
    }
}

/// One column's test, and its chart.
fn compare_column(
    name: &str,
    kind: FeatureKind,
    reference: Column,
    current: Column,
    policy: &DriftPolicy,
    overrides: &Overrides,
    args: &DriftArgs,
) -> ColumnReport {
    let missing = [reference.missing(), current.missing()];
    let choose = |n_current: u64| {
        let mut choice = policy.choose(kind, n_current);
        if let Some(&t) = overrides.tests.get(name) {
            choice = TestChoice::of(t);
        }
        if let Some(&t) = overrides.thresholds.get(name) {
            choice.threshold = t;
        }
        choice
    };
    let insufficient = |counts: [u64; 2]| -> Option<String> {
        let side = if counts[0] < args.min_rows { ("reference", counts[0]) } else { ("current", counts[1]) };
        (counts[0] < args.min_rows || counts[1] < args.min_rows).then(|| {
            format!(
                "insufficient data: {} non-missing {} values, at least {} needed (--min-rows)",
                side.1, side.0, args.min_rows
            )
        })
    };
    match kind {
        FeatureKind::Numeric => {
            let (Column::Numeric(r), Column::Numeric(c)) = (reference, current) else {
                unreachable!("numeric columns are read as numbers on both sides")
            };
            // Sorted once here: the tests sort their finite values again, which is linear on
            // sorted input.
            let (a, b) = (sort::sort_floats(r.into_present()), sort::sort_floats(c.into_present()));
            let counts = [a.len() as u64, b.len() as u64];
            let choice = choose(counts[1]);
            let chart = Chart::histogram(&a, &b);
            let result = match insufficient(counts) {
                Some(why) => Err(why),
                None => numeric_drift(choice, &a, &b, args.bins).map_err(|e| e.to_string()),
            };
            ColumnReport::new(name, kind, choice, result, counts, missing, chart)
        }
        FeatureKind::Categorical | FeatureKind::Binary => {
            let (r, c) = (reference.into_text(), current.into_text());
            let ((rc, _), (cc, _)) = (r.counts(), c.counts());
            let counts = [rc.iter().sum(), cc.iter().sum()];
            let choice = choose(counts[1]);
            let r_counts: Vec<(&str, u64)> =
                r.dictionary.iter().map(String::as_str).zip(rc.iter().copied()).collect();
            let c_counts: Vec<(&str, u64)> =
                c.dictionary.iter().map(String::as_str).zip(cc.iter().copied()).collect();
            let chart = Chart::bars(&r_counts, &c_counts);
            let result = match insufficient(counts) {
                Some(why) => Err(why),
                None => categorical_drift(choice, &r_counts, &c_counts, args.max_categories)
                    .map_err(|e| e.to_string()),
            };
            ColumnReport::new(name, kind, choice, result, counts, missing, chart)
        }
    }
}

fn numeric_drift(
    choice: TestChoice,
    reference: &[f64],
    current: &[f64],
    bins: usize,
) -> vigil_stats::Result<vigil_stats::DriftResult> {
    use DriftTest::*;
    // Offline, both files are in memory: tests that can run exactly do, and need no histogram.
    let exact = matches!(choice.test, Ks | Wasserstein | WassersteinNormed | CramerVonMises);
    let (r, c) = if exact {
        let point = NumericSketch::with_edges(vec![0.0])?;
        (point.clone(), point)
    } else {
        let r = NumericSketch::reference(reference, bins)?;
        let mut c = r.empty_like();
        c.extend(current);
        (r, c)
    };
    run_numeric(
        choice,
        NumericData { sketch: &r, exact: Some(reference) },
        NumericData { sketch: &c, exact: Some(current) },
    )
}

/// The test on category counts; the vocabulary is the `cap` most frequent reference categories
/// (ties by name), the rest count as "other", as [`CategoricalSketch::reference`] builds it.
fn categorical_drift(
    choice: TestChoice,
    reference: &[(&str, u64)],
    current: &[(&str, u64)],
    cap: usize,
) -> vigil_stats::Result<vigil_stats::DriftResult> {
    let mut by_freq: Vec<(&str, u64)> = reference.iter().copied().filter(|(_, n)| *n > 0).collect();
    by_freq.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    by_freq.truncate(cap);
    let mut vocabulary: Vec<String> = by_freq.into_iter().map(|(k, _)| k.to_owned()).collect();
    vocabulary.sort();
    let mut r = CategoricalSketch::with_vocabulary(vocabulary)?;
    let mut c = r.empty_like();
    reference.iter().for_each(|&(v, n)| r.add_count(v, n));
    current.iter().for_each(|&(v, n)| c.add_count(v, n));
    run_categorical(choice, &r, &c)
}
