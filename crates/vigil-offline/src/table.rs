//! Reading a CSV file row by row ([`CsvRows`], for files of any size), with file lines for error
//! messages, and the cell rules `vigil drift`'s columnar engine shares.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::OfflineError;

/// A CSV file read one row at a time: a header row, then rows with as many fields as the
/// header. Cells and header names are trimmed; blank lines are not rows.
pub struct CsvRows {
    path: PathBuf,
    reader: csv::Reader<File>,
    header: Vec<String>,
    record: csv::StringRecord,
}

impl CsvRows {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<CsvRows, OfflineError> {
        let file = File::open(path).map_err(|source| OfflineError::Io { path: path.into(), source })?;
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(file);
        let mut rows =
            CsvRows { path: path.into(), reader, header: Vec::new(), record: csv::StringRecord::new() };
        if !rows.read_record()? {
            return Err(OfflineError::Empty { path: path.into() });
        }
        let header: Vec<String> = rows.record.iter().map(str::to_owned).collect();
        for (i, h) in header.iter().enumerate() {
            if header[..i].contains(h) {
                return Err(OfflineError::DuplicateColumn { path: path.into(), column: h.clone() });
            }
        }
        rows.header = header;
        Ok(rows)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Bytes of the file read so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    /// Reads the next row and returns its file line, or `None` at the end. A row that is not
    /// valid CSV or has the wrong number of fields is an error; reading may go on after it
    /// (only I/O errors end the file).
    pub fn next_row(&mut self) -> Result<Option<u64>, OfflineError> {
        loop {
            if !self.read_record()? {
                return Ok(None);
            }
            let line = self.record.position().map_or(0, |p| p.line());
            let fields = self.record.len();
            // A blank line is not a row.
            if fields == 1 && self.record[0].is_empty() && self.header.len() > 1 {
                continue;
            }
            if fields != self.header.len() {
                return Err(OfflineError::Ragged {
                    path: self.path.clone(),
                    line,
                    expected: self.header.len(),
                    found: fields,
                });
            }
            return Ok(Some(line));
        }
    }

    /// The cells of the row [`CsvRows::next_row`] returned, in header order.
    pub fn record(&self) -> &csv::StringRecord {
        &self.record
    }

    fn read_record(&mut self) -> Result<bool, OfflineError> {
        self.reader.read_record(&mut self.record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            match e.into_kind() {
                csv::ErrorKind::Io(source) => OfflineError::Io { path: self.path.clone(), source },
                kind => OfflineError::Csv { path: self.path.clone(), line, message: format!("{kind:?}") },
            }
        })
    }
}

/// Whether a cell is a missing value (empty, or a usual spelling of "no value").
pub fn is_missing(cell: &str) -> bool {
    matches!(cell, "" | "NA" | "N/A" | "null" | "NULL" | "None")
}

/// Parses a numeric cell (`NaN` and `inf` parse, and are counted apart by the sketches).
pub fn parse_number(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok()
}

/// The type a column's cells suggest, learned one cell at a time (so a file of any size can be
/// typed in one pass): the rule `vigil drift` applies to whole columns.
#[derive(Debug, Clone, Default)]
pub struct KindGuess {
    present: u64,
    all_numbers: bool,
    /// Up to three distinct present values: enough to tell binary from the rest.
    distinct: Vec<String>,
}

impl KindGuess {
    pub fn observe(&mut self, cell: &str) {
        if is_missing(cell) {
            return;
        }
        if self.present == 0 || self.all_numbers {
            self.all_numbers = parse_number(cell).is_some();
        }
        self.present += 1;
        if self.distinct.len() <= 2 && !self.distinct.iter().any(|d| d == cell) {
            self.distinct.push(cell.to_owned());
        }
    }

    /// Non-missing cells seen.
    pub fn present(&self) -> u64 {
        self.present
    }

    /// Whether every non-missing cell (at least one) is a number.
    pub fn all_numbers(&self) -> bool {
        self.present > 0 && self.all_numbers
    }

    /// Binary if at most two distinct non-missing values; numeric if every non-missing cell is
    /// a number; categorical otherwise (also for a column with no values).
    pub fn kind(&self) -> vigil_stats::FeatureKind {
        use vigil_stats::FeatureKind;
        if self.present > 0 && self.distinct.len() <= 2 {
            FeatureKind::Binary
        } else if self.all_numbers() {
            FeatureKind::Numeric
        } else {
            FeatureKind::Categorical
        }
    }
}
