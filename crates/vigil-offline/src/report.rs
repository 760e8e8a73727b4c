//! The drift report and its renderings (table, Markdown, JSON; HTML in `html.rs`), and the
//! per-column chart data the HTML draws.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use vigil_stats::{DriftResult, DriftTest, FeatureKind, TestChoice};

use crate::engine::InputFormat;

#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub reference: String,
    pub current: String,
    pub reference_rows: usize,
    pub current_rows: usize,
    pub drifted_columns: usize,
    /// Columns with fewer non-missing values than `min_rows` on a side: not tested.
    pub insufficient_columns: usize,
    pub min_rows: u64,
    /// Formats of the reference and current files.
    pub formats: [InputFormat; 2],
    /// Seconds spent reading both files, then testing.
    pub seconds: [f64; 2],
    pub columns: Vec<ColumnReport>,
}

/// A column's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Drift,
    NoDrift,
    /// Too few values on a side to test (`--min-rows`): not drifted.
    InsufficientData,
    /// The test could not run (e.g. no finite value on a side): not drifted.
    Error,
}

/// One column's verdict. `error` is set (and `statistic` absent) when the test did not run:
/// too few values on a side, or a column the test cannot use.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnReport {
    pub column: String,
    pub kind: FeatureKind,
    pub status: Status,
    pub test: DriftTest,
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_bound: Option<f64>,
    pub reference_count: u64,
    pub current_count: u64,
    pub reference_missing: u64,
    pub current_missing: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The distributions, for the HTML report.
    #[serde(skip)]
    pub chart: Chart,
}

impl ColumnReport {
    pub(crate) fn new(
        column: &str,
        kind: FeatureKind,
        choice: TestChoice,
        result: Result<DriftResult, String>,
        counts: [u64; 2],
        missing: [u64; 2],
        chart: Chart,
    ) -> Self {
        let (stat, p, bound, drifted, error) = match result {
            Ok(r) => (Some(r.statistic), r.p_value, r.error_bound, r.drifted, None),
            Err(e) => (None, None, None, false, Some(e)),
        };
        let status = match &error {
            Some(e) if e.starts_with("insufficient data") => Status::InsufficientData,
            Some(_) => Status::Error,
            None if drifted => Status::Drift,
            None => Status::NoDrift,
        };
        ColumnReport {
            column: column.to_owned(),
            kind,
            status,
            test: choice.test,
            statistic: stat,
            p_value: p,
            threshold: choice.threshold,
            drifted,
            error_bound: bound,
            reference_count: counts[0],
            current_count: counts[1],
            reference_missing: missing[0],
            current_missing: missing[1],
            error,
            chart,
        }
    }
}

impl DriftReport {
    pub(crate) fn new(
        reference: &Path,
        current: &Path,
        rr: usize,
        cr: usize,
        columns: Vec<ColumnReport>,
    ) -> Self {
        DriftReport {
            reference: reference.display().to_string(),
            current: current.display().to_string(),
            reference_rows: rr,
            current_rows: cr,
            drifted_columns: columns.iter().filter(|c| c.drifted).count(),
            insufficient_columns: columns.iter().filter(|c| c.status == Status::InsufficientData).count(),
            min_rows: 0,
            formats: [InputFormat::Csv; 2],
            seconds: [0.0; 2],
            columns,
        }
    }

    const HEADER: [&'static str; 7] =
        ["column", "type", "test", "statistic", "p-value", "threshold", "drifted"];

    fn rows(&self) -> Vec<[String; 7]> {
        self.columns
            .iter()
            .map(|c| {
                [
                    c.column.clone(),
                    kind_name(c.kind).to_owned(),
                    c.test.name().to_owned(),
                    c.statistic.map_or_else(|| "-".to_owned(), number),
                    c.p_value.map_or_else(|| "-".to_owned(), number),
                    number(c.threshold),
                    match &c.error {
                        Some(e) => format!("n/a ({e})"),
                        None if c.drifted => "yes".to_owned(),
                        None => "no".to_owned(),
                    },
                ]
            })
            .collect()
    }

    /// The closing line of the text and Markdown reports.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} of {} columns drifted ({} reference rows, {} current rows)",
            self.drifted_columns,
            self.columns.len(),
            self.reference_rows,
            self.current_rows
        );
        if self.insufficient_columns > 0 {
            line += &format!(
                "; {} not tested for insufficient data (fewer than {} values)",
                self.insufficient_columns, self.min_rows
            );
        }
        line
    }

    /// A Markdown table, one row per column, then the summary.
    pub fn write_markdown(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "| {} |", Self::HEADER.join(" | "))?;
        writeln!(out, "|{}", "---|".repeat(Self::HEADER.len()))?;
        for row in self.rows() {
            let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            writeln!(out, "| {} |", cells.join(" | "))?;
        }
        writeln!(out, "\n{}", self.summary())
    }

    /// Aligned text table, one row per column, then a summary line.
    pub fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        let header = Self::HEADER;
        let rows = self.rows();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: &[&str]| -> String {
            let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            padded.join("  ").trim_end().to_owned()
        };
        writeln!(out, "{}", line(&header))?;
        for row in &rows {
            writeln!(out, "{}", line(&row.each_ref().map(String::as_str)))?;
        }
        writeln!(out, "\n{}", self.summary())
    }
}

pub(crate) fn kind_name(kind: FeatureKind) -> &'static str {
    match kind {
        FeatureKind::Numeric => "numeric",
        FeatureKind::Categorical => "categorical",
        FeatureKind::Binary => "binary",
    }
}

/// What the HTML report draws for a column: both sides' shares per bin or category.
#[derive(Debug, Clone, Default)]
pub enum Chart {
    #[default]
    None,
    /// Equal-width bins between `edges` over both sides' central 99% (values beyond go to the
    /// end bins); shares of each side's finite values.
    Histogram { edges: Vec<f64>, reference: Vec<f64>, current: Vec<f64> },
    /// The most frequent categories (both sides together), then "other"; shares of each side.
    Bars { categories: Vec<String>, reference: Vec<f64>, current: Vec<f64> },
}

/// Bins of a numeric chart.
const HISTOGRAM_BINS: usize = 40;
/// Categories drawn before the rest are summed as "other".
const BAR_CATEGORIES: usize = 15;

impl Chart {
    /// From both sides' values, sorted (non-finite values, at the ends, are left out).
    pub(crate) fn histogram(reference: &[f64], current: &[f64]) -> Chart {
        let finite = |xs: &[f64]| -> std::ops::Range<usize> {
            xs.partition_point(|x| (x.is_nan() && x.is_sign_negative()) || *x == f64::NEG_INFINITY)
                ..xs.partition_point(|x| !(x.is_nan() && x.is_sign_positive()) && *x != f64::INFINITY)
        };
        let (a, b) = (&reference[finite(reference)], &current[finite(current)]);
        let quantile = |xs: &[f64], q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for xs in [a, b] {
            if !xs.is_empty() {
                lo = lo.min(quantile(xs, 0.005));
                hi = hi.max(quantile(xs, 0.995));
            }
        }
        if lo.partial_cmp(&hi).is_none_or(|o| o == std::cmp::Ordering::Greater) {
            return Chart::None;
        }
        let bins = if hi > lo { HISTOGRAM_BINS } else { 1 };
        let width = (hi - lo) / bins as f64;
        let edges: Vec<f64> =
            (0..=bins).map(|i| if i == bins { hi } else { lo + width * i as f64 }).collect();
        let shares = |xs: &[f64]| -> Vec<f64> {
            let n = xs.len().max(1) as f64;
            let mut below = 0;
            (1..=bins)
                .map(|k| {
                    let upto = if k == bins { xs.len() } else { xs.partition_point(|x| *x < edges[k]) };
                    let share = (upto - below) as f64 / n;
                    below = upto;
                    share
                })
                .collect()
        };
        Chart::Histogram { reference: shares(a), current: shares(b), edges }
    }

    /// From both sides' category counts.
    pub(crate) fn bars(reference: &[(&str, u64)], current: &[(&str, u64)]) -> Chart {
        let mut total: std::collections::HashMap<&str, (u64, u64)> = std::collections::HashMap::new();
        for &(v, n) in reference {
            total.entry(v).or_default().0 += n;
        }
        for &(v, n) in current {
            total.entry(v).or_default().1 += n;
        }
        let (nr, nc) = (
            reference.iter().map(|x| x.1).sum::<u64>().max(1) as f64,
            current.iter().map(|x| x.1).sum::<u64>().max(1) as f64,
        );
        let mut by_count: Vec<(&str, (u64, u64))> =
            total.into_iter().filter(|(_, (a, b))| a + b > 0).collect();
        by_count.sort_by(|x, y| (y.1 .0 + y.1 .1).cmp(&(x.1 .0 + x.1 .1)).then(x.0.cmp(y.0)));
        let rest = by_count.split_off(by_count.len().min(BAR_CATEGORIES));
        let mut categories: Vec<String> = by_count.iter().map(|(v, _)| v.to_string()).collect();
        let mut r: Vec<f64> = by_count.iter().map(|(_, (a, _))| *a as f64 / nr).collect();
        let mut c: Vec<f64> = by_count.iter().map(|(_, (_, b))| *b as f64 / nc).collect();
        if !rest.is_empty() {
            categories.push(format!("other ({} categories)", rest.len()));
            r.push(rest.iter().map(|(_, (a, _))| *a).sum::<u64>() as f64 / nr);
            c.push(rest.iter().map(|(_, (_, b))| *b).sum::<u64>() as f64 / nc);
        }
        Chart::Bars { categories, reference: r, current: c }
    }
}

pub(crate) fn number(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-4 {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}
