//! Reading a CSV file into named columns of raw strings, with positions for error messages.

use std::path::{Path, PathBuf};

use crate::error::OfflineError;

/// A CSV file held as columns of raw cells, plus the file line of each row.
pub struct Table {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub columns: Vec<Vec<String>>,
    pub lines: Vec<u64>,
}

impl Table {
    /// Reads `path`: a header row, then rows with as many fields as the header.
    pub fn read(path: &Path) -> Result<Table, OfflineError> {
        let file = std::fs::File::open(path).map_err(|source| OfflineError::Io {
            path: path.into(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(file);
        let csv_error = |e: csv::Error| {
            let line = e.position().map_or(0, |p| p.line());
            match e.into_kind() {
                csv::ErrorKind::Io(source) => OfflineError::Io {
                    path: path.into(),
                    source,
                },
                kind => OfflineError::Csv {
                    path: path.into(),
                    line,
                    message: format!("{kind:?}"),
                },
            }
        };
        let mut records = reader.records();
        let header = match records.next() {
            None => return Err(OfflineError::Empty { path: path.into() }),
            Some(r) => r.map_err(csv_error)?,
        };
        let header: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
        for (i, h) in header.iter().enumerate() {
            if header[..i].contains(h) {
                return Err(OfflineError::DuplicateColumn {
                    path: path.into(),
                    column: h.clone(),
                });
            }
        }
        let mut columns: Vec<Vec<String>> = vec![Vec::new(); header.len()];
        let mut lines = Vec::new();
        for record in records {
            let record = record.map_err(csv_error)?;
            let line = record.position().map_or(0, |p| p.line());
            // A blank line is not a row.
            if record.len() == 1 && record[0].trim().is_empty() && header.len() > 1 {
                continue;
            }
            if record.len() != header.len() {
                return Err(OfflineError::Ragged {
                    path: path.into(),
                    line,
                    expected: header.len(),
                    found: record.len(),
                });
            }
            for (col, cell) in columns.iter_mut().zip(record.iter()) {
                col.push(cell.trim().to_owned());
            }
            lines.push(line);
        }
        Ok(Table {
            path: path.into(),
            header,
            columns,
            lines,
        })
    }

    pub fn column(&self, name: &str) -> Option<&[String]> {
        self.header
            .iter()
            .position(|h| h == name)
            .map(|i| self.columns[i].as_slice())
    }

    pub fn rows(&self) -> usize {
        self.lines.len()
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
