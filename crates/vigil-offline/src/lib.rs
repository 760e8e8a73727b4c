//! `vigil drift`: the vigil-stats drift engine run offline on two CSV files.
//!
//! Reads a reference and a current CSV file (header row), infers each column's type from the
//! reference (overridable), picks each column's test with [`vigil_stats::DriftPolicy`]
//! (overridable), and prints a per-column table or JSON.
//!
//! [`reference`] reads reference files (CSV, Avro) row by row for `vigil reference upload`.

mod error;
pub mod reference;
mod report;
mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;

use vigil_stats::select::{run_categorical, run_numeric, NumericData};
use vigil_stats::{CategoricalSketch, DriftPolicy, DriftTest, FeatureKind, NumericSketch, TestChoice};

pub use error::{OfflineError, Place};
pub use report::{ColumnReport, DriftReport};
use table::Table;
pub use table::{is_missing, parse_number, CsvRows, KindGuess};

/// Arguments of `vigil drift`.
#[derive(Debug, Clone, clap::Args)]
pub struct DriftArgs {
    /// Reference CSV file, with a header row.
    pub reference: PathBuf,
    /// Current CSV file, with the same columns.
    pub current: PathBuf,
    /// Print the report as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
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
}

/// Runs the report and writes it to `out` (a table, or JSON with `--json`).
pub fn run_drift(args: &DriftArgs, out: &mut impl std::io::Write) -> Result<(), OfflineError> {
    let report = drift_report(args)?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        report.write_table(out)?;
    }
    Ok(())
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
    let overrides = parse_overrides(args)?;
    let reference = Table::read(&args.reference)?;
    let current = Table::read(&args.current)?;
    for (have, lack) in [(&reference, &current), (&current, &reference)] {
        if let Some(col) = have.header.iter().find(|h| lack.column(h).is_none()) {
            return Err(OfflineError::MissingColumn {
                column: col.clone(),
                present: have.path.clone(),
                missing: lack.path.clone(),
            });
        }
    }
    for name in overrides.kinds.keys().chain(overrides.tests.keys()).chain(overrides.thresholds.keys()) {
        if reference.column(name).is_none() {
            return Err(OfflineError::BadArgument {
                flag: "column",
                message: format!("no column named {name:?}"),
            });
        }
    }
    let policy = DriftPolicy { small_window: args.small_window, ..DriftPolicy::default() };
    let mut columns = Vec::with_capacity(reference.header.len());
    for name in &reference.header {
        let ref_cells = reference.column(name).expect("header");
        let cur_cells = current.column(name).expect("checked");
        let kind = overrides.kinds.get(name).copied().unwrap_or_else(|| infer_kind(ref_cells));
        let missing = |cells: &[String]| cells.iter().filter(|c| is_missing(c)).count() as u64;
        let n_cur = cur_cells.len() as u64 - missing(cur_cells);
        let mut choice = policy.choose(kind, n_cur);
        if let Some(&t) = overrides.tests.get(name) {
            choice = TestChoice::of(t);
        }
        if let Some(&t) = overrides.thresholds.get(name) {
            choice.threshold = t;
        }
        let result = match kind {
            FeatureKind::Numeric => {
                let r = numbers(&reference, name, ref_cells)?;
                let c = numbers(&current, name, cur_cells)?;
                numeric_drift(choice, &r, &c, args.bins)
            }
            FeatureKind::Categorical | FeatureKind::Binary => {
                categorical_drift(choice, ref_cells, cur_cells, args.max_categories)
            }
        };
        columns.push(ColumnReport::new(
            name,
            kind,
            choice,
            result,
            [ref_cells.len() as u64 - missing(ref_cells), n_cur],
            [missing(ref_cells), missing(cur_cells)],
        ));
    }
    Ok(DriftReport::new(&args.reference, &args.current, reference.rows(), current.rows(), columns))
}

/// Numeric if every non-missing reference cell is a number; binary if at most two distinct
/// non-missing values; categorical otherwise.
fn infer_kind(cells: &[String]) -> FeatureKind {
    let mut guess = KindGuess::default();
    cells.iter().for_each(|c| guess.observe(c));
    guess.kind()
}

/// The non-missing cells of a numeric column as numbers; the first non-number is an error naming
/// its file, line and column.
fn numbers(table: &Table, column: &str, cells: &[String]) -> Result<Vec<f64>, OfflineError> {
    let mut out = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        if is_missing(cell) {
            continue;
        }
        match parse_number(cell) {
            Some(x) => out.push(x),
            None => {
                return Err(OfflineError::NotNumeric {
                    path: table.path.clone(),
                    line: table.lines[i],
                    column: column.to_owned(),
                    value: cell.clone(),
                })
            }
        }
    }
    Ok(out)
}

fn numeric_drift(
    choice: TestChoice,
    reference: &[f64],
    current: &[f64],
    bins: usize,
) -> vigil_stats::Result<vigil_stats::DriftResult> {
    let r = NumericSketch::reference(reference, bins)?;
    let mut c = r.empty_like();
    c.extend(current);
    // Offline, both files are in memory: tests that can run exactly do.
    run_numeric(
        choice,
        NumericData { sketch: &r, exact: Some(reference) },
        NumericData { sketch: &c, exact: Some(current) },
    )
}

fn categorical_drift(
    choice: TestChoice,
    reference: &[String],
    current: &[String],
    cap: usize,
) -> vigil_stats::Result<vigil_stats::DriftResult> {
    let present =
        |cells: &[String]| -> Vec<String> { cells.iter().filter(|c| !is_missing(c)).cloned().collect() };
    let r = CategoricalSketch::reference(&present(reference), cap)?;
    let mut c = r.empty_like();
    present(current).iter().for_each(|v| c.update(v));
    run_categorical(choice, &r, &c)
}
