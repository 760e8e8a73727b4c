//! The drift report and its two renderings (table, JSON).

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use vigil_stats::{DriftResult, DriftTest, FeatureKind, TestChoice};

#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub reference: String,
    pub current: String,
    pub reference_rows: usize,
    pub current_rows: usize,
    pub drifted_columns: usize,
    pub columns: Vec<ColumnReport>,
}

/// One column's verdict. `error` is set (and `statistic` absent) when the test could not run,
/// e.g. a column with no values on one side.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnReport {
    pub column: String,
    pub kind: FeatureKind,
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
}

impl ColumnReport {
    pub(crate) fn new(
        column: &str,
        kind: FeatureKind,
        choice: TestChoice,
        result: vigil_stats::Result<DriftResult>,
        counts: [u64; 2],
        missing: [u64; 2],
    ) -> Self {
        let (stat, p, bound, drifted, error) = match result {
            Ok(r) => (Some(r.statistic), r.p_value, r.error_bound, r.drifted, None),
            Err(e) => (None, None, None, false, Some(e.to_string())),
        };
        ColumnReport {
            column: column.to_owned(),
            kind,
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
            columns,
        }
    }

    /// Aligned text table, one row per column, then a summary line.
    pub fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        let header = ["column", "type", "test", "statistic", "p-value", "threshold", "drifted"];
        let rows: Vec<[String; 7]> = self
            .columns
            .iter()
            .map(|c| {
                let kind = match c.kind {
                    FeatureKind::Numeric => "numeric",
                    FeatureKind::Categorical => "categorical",
                    FeatureKind::Binary => "binary",
                };
                [
                    c.column.clone(),
                    kind.to_owned(),
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
            .collect();
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
        writeln!(
            out,
            "\n{} of {} columns drifted ({} reference rows, {} current rows)",
            self.drifted_columns,
            self.columns.len(),
            self.reference_rows,
            self.current_rows
        )
    }
}

fn number(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-4 {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}
