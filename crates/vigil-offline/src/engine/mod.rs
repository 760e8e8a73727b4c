//! The columnar reading engine of `vigil drift` and `vigil reference upload`: a CSV, Parquet or
//! Arrow IPC file read into typed columns (numbers, or dictionary-coded text) on all cores.
//!
//! - CSV ([`csv`]): the file is cut into blocks of whole records (about 8 MiB, cut at a line end
//!   outside quotes) read one after the other, and the blocks are parsed in parallel by
//!   csv-core's state machine into per-block columns, then concatenated. Column types are
//!   inferred from the values (a column is numeric when every non-missing cell is a number), or
//!   imposed by the caller. The text is never held whole: memory is the columns plus a few blocks.
//! - Parquet ([`arrow_files`]): one Arrow reader per column, in parallel.
//! - Arrow IPC ([`arrow_files`]): the file or stream format, batches converted column by column.
//!
//! Bounds ([`Limits`]): the number of columns and the length of a line (a record) are capped, and
//! a number that does not fit a 64-bit float is refused, each with the file, line and column.

mod arrow_files;
mod csv;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::OfflineError;

/// A missing cell of a text column.
pub const MISSING: u32 = u32::MAX;

/// The input formats the engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Csv,
    Parquet,
    /// Arrow IPC, file (Feather v2) or stream format.
    Arrow,
}

impl InputFormat {
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Csv => "CSV",
            InputFormat::Parquet => "Parquet",
            InputFormat::Arrow => "Arrow IPC",
        }
    }

    /// The format `--input-format` names, else the one the extension names (`.csv`, `.tsv` is
    /// not supported; `.parquet`/`.pq`; `.arrow`/`.feather`/`.ipc`/`.arrows`), else the one the
    /// file's first bytes show (CSV when none matches).
    pub fn of(path: &Path, given: Option<InputFormat>) -> Result<InputFormat, OfflineError> {
        if let Some(format) = given {
            return Ok(format);
        }
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        Ok(match extension.as_deref() {
            Some("csv") => InputFormat::Csv,
            Some("parquet" | "pq") => InputFormat::Parquet,
            Some("arrow" | "feather" | "ipc" | "arrows") => InputFormat::Arrow,
            _ => sniff(path)?.unwrap_or(InputFormat::Csv),
        })
    }
}

/// The format a file's first bytes show, if any: Parquet (`PAR1`), Arrow IPC file (`ARROW1`) or
/// stream (continuation marker), Avro (`Obj\x01`, not readable by `vigil drift`).
pub(crate) fn sniff(path: &Path) -> Result<Option<InputFormat>, OfflineError> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut file =
        std::fs::File::open(path).map_err(|source| OfflineError::Io { path: path.into(), source })?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(source) => return Err(OfflineError::Io { path: path.into(), source }),
        }
    }
    let head = &head[..n];
    Ok(if head.starts_with(b"PAR1") {
        Some(InputFormat::Parquet)
    } else if head.starts_with(b"ARROW1") || head.starts_with(&[0xff, 0xff, 0xff, 0xff]) {
        Some(InputFormat::Arrow)
    } else {
        None
    })
}

/// What a file's first bytes say it is, for "expected X" errors.
pub(crate) fn looks_like(path: &Path) -> Option<&'static str> {
    let mut head = [0u8; 6];
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let n = file.read(&mut head).ok()?;
    let head = &head[..n];
    if head.starts_with(b"PAR1") {
        Some("a Parquet file")
    } else if head.starts_with(b"ARROW1") || head.starts_with(&[0xff, 0xff, 0xff, 0xff]) {
        Some("an Arrow IPC file")
    } else if head.starts_with(b"Obj\x01") {
        Some("an Avro file")
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some("a gzip file")
    } else if head.starts_with(b"PK\x03\x04") {
        Some("a zip file")
    } else {
        None
    }
}

/// Bounds on what a file may hold, so an absurd file is refused instead of exhausting memory.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Limits {
    /// Refuse files with more columns than this.
    #[arg(long, default_value_t = 10_000)]
    pub max_columns: usize,
    /// Refuse CSV lines (records) longer than this many bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_columns: 10_000, max_line_bytes: 1 << 20 }
    }
}

/// How the caller wants a column read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Numbers when every non-missing cell is one, text otherwise.
    Infer,
    /// Numbers; a cell that is not one is an error.
    Numeric,
    /// Text, whatever the cells hold.
    Text,
}

/// A column of numbers, one per row; a missing cell is NaN and its row is listed in `missing`.
#[derive(Debug, Clone, Default)]
pub struct NumericColumn {
    pub values: Vec<f64>,
    /// Rows (0-based) whose cell was missing, in order.
    pub missing: Vec<u32>,
    /// The distinct spellings of the non-missing values while there are at most two (three
    /// means "more than two"): a two-valued column is binary, and its categories are these.
    pub spellings: Vec<String>,
}

impl NumericColumn {
    /// The values of the non-missing cells (NaN and infinities written as such included).
    pub fn present(&self) -> Vec<f64> {
        if self.missing.is_empty() {
            return self.values.clone();
        }
        let mut out = Vec::with_capacity(self.values.len() - self.missing.len());
        let mut skip = self.missing.iter().peekable();
        for (i, &x) in self.values.iter().enumerate() {
            if skip.peek() == Some(&&(i as u32)) {
                skip.next();
            } else {
                out.push(x);
            }
        }
        out
    }

    /// [`Self::present`], consuming the column (no copy when nothing is missing).
    pub fn into_present(self) -> Vec<f64> {
        if self.missing.is_empty() {
            self.values
        } else {
            self.present()
        }
    }

    pub(crate) fn observe_spelling(&mut self, cell: &str) {
        if self.spellings.len() < 3 && !self.spellings.iter().any(|s| s == cell) {
            self.spellings.push(cell.to_owned());
        }
    }
}

/// A column of text, one dictionary code per row ([`MISSING`] for a missing cell).
#[derive(Debug, Clone, Default)]
pub struct TextColumn {
    pub codes: Vec<u32>,
    pub dictionary: Vec<String>,
}

impl TextColumn {
    /// Occurrences of each dictionary entry, and the number of missing cells.
    pub fn counts(&self) -> (Vec<u64>, u64) {
        let mut counts = vec![0u64; self.dictionary.len()];
        let mut missing = 0;
        for &c in &self.codes {
            match counts.get_mut(c as usize) {
                Some(n) => *n += 1,
                None => missing += 1,
            }
        }
        (counts, missing)
    }

    /// Number of distinct values present.
    pub fn distinct_present(&self) -> usize {
        let (counts, _) = self.counts();
        counts.iter().filter(|&&n| n > 0).count()
    }
}

/// Interns cell values into dictionary codes, by their bytes (text is made once per distinct value),
/// with foldhash as the monitor's maps: several times faster than SipHash on short values, and a
/// local file read once needs no flood resistance.
#[derive(Default)]
pub(crate) struct Interner {
    index: HashMap<Box<[u8]>, u32, foldhash::fast::FixedState>,
    pub(crate) dictionary: Vec<String>,
}

impl Interner {
    pub(crate) fn code(&mut self, value: &str) -> u32 {
        self.code_bytes(value.as_bytes())
    }

    pub(crate) fn code_bytes(&mut self, value: &[u8]) -> u32 {
        if let Some(&c) = self.index.get(value) {
            return c;
        }
        let c = self.dictionary.len() as u32;
        self.index.insert(value.into(), c);
        self.dictionary.push(String::from_utf8_lossy(value).into_owned());
        c
    }
}

#[derive(Debug, Clone)]
pub enum Column {
    Numeric(NumericColumn),
    Text(TextColumn),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Numeric(c) => c.values.len(),
            Column::Text(c) => c.codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Missing cells.
    pub fn missing(&self) -> u64 {
        match self {
            Column::Numeric(c) => c.missing.len() as u64,
            Column::Text(c) => c.codes.iter().filter(|&&x| x == MISSING).count() as u64,
        }
    }

    /// The column as text: numbers keep the spelling they had when the column had at most two
    /// (so a 0/1 column keeps "0" and "1"), else are written back with Rust's shortest form.
    pub fn into_text(self) -> TextColumn {
        match self {
            Column::Text(t) => t,
            Column::Numeric(n) => {
                let spelled: Vec<(f64, &str)> = if n.spellings.len() <= 2 {
                    n.spellings.iter().filter_map(|s| Some((s.parse::<f64>().ok()?, s.as_str()))).collect()
                } else {
                    Vec::new()
                };
                let mut interner = Interner::default();
                let mut missing = n.missing.iter().peekable();
                let codes = n
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        if missing.peek() == Some(&&(i as u32)) {
                            missing.next();
                            return MISSING;
                        }
                        match spelled.iter().find(|(v, _)| v.to_bits() == x.to_bits()) {
                            Some((_, s)) => interner.code(s),
                            None => interner.code(&format_number(x)),
                        }
                    })
                    .collect();
                TextColumn { codes, dictionary: interner.dictionary }
            }
        }
    }
}

/// A number as text: integers without a fraction, others in Rust's shortest round-trip form.
pub fn format_number(x: f64) -> String {
    format!("{x}")
}

/// A file read into columns.
#[derive(Debug, Clone)]
pub struct Table {
    pub path: PathBuf,
    pub format: InputFormat,
    pub header: Vec<String>,
    pub columns: Vec<Column>,
    pub rows: usize,
    /// Bytes of the file read.
    pub bytes: u64,
}

impl Table {
    pub fn position(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }
}

/// Reads `path` in `format`; `want(name)` says how to read each column.
pub fn read_table(
    path: &Path,
    format: InputFormat,
    want: &dyn Fn(&str) -> Want,
    limits: &Limits,
) -> Result<Table, OfflineError> {
    // Zero bytes is an empty file whatever the extension says, not a malformed Parquet or Arrow one.
    if format != InputFormat::Csv && std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        return Err(OfflineError::Empty { path: path.into() });
    }
    let table = match format {
        InputFormat::Csv => csv::read(path, want, limits)?,
        InputFormat::Parquet => arrow_files::read_parquet(path, want, limits)?,
        InputFormat::Arrow => arrow_files::read_ipc(path, want, limits)?,
    };
    check_header(path, &table.header, limits)?;
    Ok(table)
}

/// Column names must be unique, and no more than the limit.
pub(crate) fn check_header(path: &Path, header: &[String], limits: &Limits) -> Result<(), OfflineError> {
    if header.len() > limits.max_columns {
        return Err(OfflineError::TooWide {
            path: path.into(),
            columns: header.len(),
            limit: limits.max_columns,
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(header.len());
    for h in header {
        if !seen.insert(h.as_str()) {
            return Err(OfflineError::DuplicateColumn { path: path.into(), column: h.clone() });
        }
    }
    Ok(())
}

/// Whether a cell is a missing value (empty, or a usual spelling of "no value").
#[inline]
pub fn is_missing_bytes(cell: &[u8]) -> bool {
    matches!(cell, b"" | b"NA" | b"N/A" | b"null" | b"NULL" | b"None")
}

/// A cell as a number: `None` when it is not one, `Err` when it is one too large for a 64-bit
/// float (a finite spelling that parses to infinity). `inf`, `-inf`, `NaN` are numbers.
#[inline]
pub fn parse_cell(cell: &[u8]) -> Option<Result<f64, ()>> {
    let first = *cell.first()?;
    // Fast rejection of words: a number starts with a digit, a sign, a dot, or i/I/n/N.
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.' | b'i' | b'I' | b'n' | b'N')) {
        return None;
    }
    let x: f64 = fast_float2::parse(cell).ok()?;
    if x.is_infinite() && !cell.iter().all(|b| b.is_ascii_alphabetic() || matches!(b, b'+' | b'-')) {
        return Some(Err(()));
    }
    Some(Ok(x))
}
