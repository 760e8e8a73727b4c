//! CSV into columns, in parallel: the file is read in blocks of whole records, each block parsed
//! by a worker (csv-core's state machine, cells trimmed, columns typed), and the blocks' columns
//! concatenated in file order. Errors name the file line; of several, the first in the file wins.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;

use csv_core::{ReadRecordResult, Reader};
use rayon::prelude::*;

use super::{
    is_missing_bytes, looks_like, parse_cell, Column, InputFormat, Interner, Limits, NumericColumn, Table,
    TextColumn, Want, MISSING,
};
use crate::error::{OfflineError, Place};

/// Bytes read per block before cutting at the last record end.
const BLOCK: usize = 8 << 20;

pub(super) fn read(path: &Path, want: &dyn Fn(&str) -> Want, limits: &Limits) -> Result<Table, OfflineError> {
    let mut forced_text: Vec<bool> = Vec::new();
    loop {
        match read_once(path, want, &forced_text, limits)? {
            Ok(table) => return Ok(table),
            // Some column was all numbers in some blocks and not in others: read again with
            // those columns as text (their numeric blocks kept no spelling to go back to).
            Err(mixed) => {
                if forced_text.is_empty() {
                    forced_text = vec![false; mixed.len()];
                }
                for (f, m) in forced_text.iter_mut().zip(mixed) {
                    *f |= m;
                }
            }
        }
    }
}

/// A block of whole records and the file line it starts on.
struct Block {
    index: usize,
    bytes: Vec<u8>,
    first_line: u64,
}

/// One block's columns.
enum Chunk {
    Numeric(NumericColumn),
    Text(TextColumn),
}

struct Parsed {
    index: usize,
    rows: usize,
    chunks: Vec<Chunk>,
}

/// The table, or which columns must be read again as text.
type Once = Result<Table, Vec<bool>>;

fn read_once(
    path: &Path,
    want: &dyn Fn(&str) -> Want,
    forced_text: &[bool],
    limits: &Limits,
) -> Result<Once, OfflineError> {
    let io = |source| OfflineError::Io { path: path.into(), source };
    let mut file = File::open(path).map_err(io)?;
    let mut splitter = Splitter { carry: Vec::new(), eof: false, next_line: 1 };
    let pool: Pool = Mutex::new(Vec::new());
    let Some(first) = splitter.next(&mut file, path, limits, &pool)? else {
        return Err(OfflineError::Empty { path: path.into() });
    };
    let (header, header_end, header_lines) = read_header(path, &first.bytes, limits)?;
    if header.len() > limits.max_columns {
        return Err(OfflineError::TooWide {
            path: path.into(),
            columns: header.len(),
            limit: limits.max_columns,
        });
    }
    super::check_header(path, &header, limits)?;
    let wants: Vec<Want> = header
        .iter()
        .enumerate()
        .map(|(i, h)| if forced_text.get(i) == Some(&true) { Want::Text } else { want(h) })
        .collect();
    let first = Block { index: 0, bytes: first.bytes[header_end..].to_vec(), first_line: 1 + header_lines };

    let workers = rayon::current_num_threads().max(1);
    let results: Mutex<Vec<Result<Parsed, (usize, OfflineError)>>> = Mutex::new(Vec::new());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let mut read_error = None;
    let mut bytes_total = 0u64;
    let (tx, rx) = sync_channel::<Block>(workers);
    let rx = Mutex::new(rx);
    std::thread::scope(|scope| {
        let rx = &rx;
        let (results, failed, header, wants, pool) = (&results, &failed, &header, &wants, &pool);
        for _ in 0..workers {
            scope.spawn(move || {
                while let Some(block) = take(rx) {
                    let index = block.index;
                    let parsed = parse_block(path, &block, header, wants, limits).map_err(|e| (index, e));
                    if parsed.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    results.lock().expect("no worker panics").push(parsed);
                    if let Ok(mut pool) = pool.lock() {
                        pool.push(block.bytes);
                    }
                }
            });
        }
        bytes_total += first.bytes.len() as u64;
        if tx.send(first).is_err() {
            return;
        }
        let mut index = 1;
        while !failed.load(std::sync::atomic::Ordering::Relaxed) {
            match splitter.next(&mut file, path, limits, pool) {
                Ok(Some(mut block)) => {
                    block.index = index;
                    index += 1;
                    bytes_total += block.bytes.len() as u64;
                    if tx.send(block).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
    });
    let mut results = results.into_inner().expect("no worker panics");
    results.sort_by_key(|r| match r {
        Ok(p) => p.index,
        Err((i, _)) => *i,
    });
    let mut blocks = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(p) => blocks.push(p),
            Err((_, e)) => return Err(e),
        }
    }
    if let Some(e) = read_error {
        return Err(e);
    }
    let rows: usize = blocks.iter().map(|b| b.rows).sum();
    let bases: Vec<usize> = blocks
        .iter()
        .scan(0usize, |acc, b| {
            let base = *acc;
            *acc += b.rows;
            Some(base)
        })
        .collect();
    // Transpose blocks x columns into columns x blocks.
    let mut per_column: Vec<Vec<Chunk>> =
        (0..header.len()).map(|_| Vec::with_capacity(blocks.len())).collect();
    for block in blocks {
        for (col, chunk) in per_column.iter_mut().zip(block.chunks) {
            col.push(chunk);
        }
    }
    let merged: Vec<Option<Column>> =
        per_column.into_par_iter().map(|chunks| merge(chunks, &bases, rows)).collect();
    if merged.iter().any(Option::is_none) {
        return Ok(Err(merged.iter().map(Option::is_none).collect()));
    }
    Ok(Ok(Table {
        path: path.into(),
        format: InputFormat::Csv,
        header,
        columns: merged.into_iter().map(|c| c.expect("checked")).collect(),
        rows,
        bytes: bytes_total,
    }))
}

fn take(rx: &Mutex<Receiver<Block>>) -> Option<Block> {
    rx.lock().ok()?.recv().ok()
}

/// Concatenates one column's blocks; `None` when some blocks are numbers and others text.
fn merge(chunks: Vec<Chunk>, bases: &[usize], rows: usize) -> Option<Column> {
    if chunks.iter().all(|c| matches!(c, Chunk::Numeric(_))) {
        let mut out = NumericColumn { values: Vec::with_capacity(rows), ..Default::default() };
        for (chunk, &base) in chunks.into_iter().zip(bases) {
            let Chunk::Numeric(c) = chunk else { unreachable!() };
            out.values.extend_from_slice(&c.values);
            out.missing.extend(c.missing.iter().map(|&m| m + base as u32));
            for s in &c.spellings {
                out.observe_spelling(s);
            }
        }
        return Some(Column::Numeric(out));
    }
    if chunks.iter().all(|c| matches!(c, Chunk::Text(_))) {
        let mut interner = Interner::default();
        let mut codes = Vec::with_capacity(rows);
        for chunk in chunks {
            let Chunk::Text(c) = chunk else { unreachable!() };
            let remap: Vec<u32> = c.dictionary.iter().map(|v| interner.code(v)).collect();
            codes.extend(c.codes.iter().map(|&x| if x == MISSING { MISSING } else { remap[x as usize] }));
        }
        return Some(Column::Text(TextColumn { codes, dictionary: interner.dictionary }));
    }
    None
}

/// Buffers of parsed blocks, for the next ones.
type Pool = Mutex<Vec<Vec<u8>>>;

/// Cuts the file into blocks that end at a record end (a line end outside quotes).
struct Splitter {
    carry: Vec<u8>,
    eof: bool,
    next_line: u64,
}

impl Splitter {
    /// The next block, in a buffer from `pool` (parsed blocks' buffers come back to it, so
    /// their pages are not zeroed by the kernel again for every block).
    fn next(
        &mut self,
        file: &mut File,
        path: &Path,
        limits: &Limits,
        pool: &Pool,
    ) -> Result<Option<Block>, OfflineError> {
        let mut buf = pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default();
        buf.clear();
        let mut want = BLOCK.max(self.carry.len() + BLOCK / 2);
        buf.reserve(want);
        buf.extend_from_slice(&self.carry);
        self.carry.clear();
        loop {
            if !self.eof && buf.len() < want {
                buf.reserve(want - buf.len());
                let before = buf.len();
                (&mut *file)
                    .take((want - before) as u64)
                    .read_to_end(&mut buf)
                    .map_err(|source| OfflineError::Io { path: path.into(), source })?;
                if buf.len() == before {
                    self.eof = true;
                }
                if buf.len() < want && !self.eof {
                    continue;
                }
            }
            if buf.is_empty() {
                return Ok(None);
            }
            let cut = if self.eof { Some(buf.len()) } else { last_record_end(&buf) };
            match cut {
                Some(cut) => {
                    self.carry.extend_from_slice(&buf[cut..]);
                    buf.truncate(cut);
                    let first_line = self.next_line;
                    self.next_line += memchr::memchr_iter(b'\n', &buf).count() as u64;
                    return Ok(Some(Block { index: 0, bytes: buf, first_line }));
                }
                None if buf.len() > limits.max_line_bytes => {
                    return Err(OfflineError::LineTooLong {
                        path: path.into(),
                        line: self.next_line,
                        limit: limits.max_line_bytes,
                    });
                }
                None => want = buf.len() * 2,
            }
        }
    }
}

/// The end of the last whole record in `buf` (which starts at a record start), if any.
fn last_record_end(buf: &[u8]) -> Option<usize> {
    if memchr::memchr(b'"', buf).is_none() {
        return memchr::memrchr(b'\n', buf).map(|i| i + 1);
    }
    let mut quoted = false;
    let mut last = None;
    for i in memchr::memchr2_iter(b'"', b'\n', buf) {
        if buf[i] == b'"' {
            quoted = !quoted;
        } else if !quoted {
            last = Some(i + 1);
        }
    }
    last
}

fn trim(cell: &[u8]) -> &[u8] {
    cell.trim_ascii()
}

/// The header row: names (trimmed), the byte where the data starts and the lines it spans.
fn read_header(
    path: &Path,
    bytes: &[u8],
    limits: &Limits,
) -> Result<(Vec<String>, usize, u64), OfflineError> {
    let mut records = Records::new(bytes, 1);
    let Some(record) = records.next(limits, path)? else {
        return Err(OfflineError::Empty { path: path.into() });
    };
    let mut header = Vec::with_capacity(record.fields);
    for f in records.fields().iter() {
        match std::str::from_utf8(trim(f)) {
            Ok(name) => header.push(name.to_owned()),
            Err(_) => {
                return Err(OfflineError::WrongFormat {
                    path: path.into(),
                    expected: InputFormat::Csv.name(),
                    detail: match looks_like(path) {
                        Some(what) => format!("it looks like {what}; pass --input-format to read it as one"),
                        None => "the header row is not UTF-8 text".to_owned(),
                    },
                })
            }
        }
    }
    if header.len() == 1 && header[0].is_empty() {
        return Err(OfflineError::Empty { path: path.into() });
    }
    Ok((header, records.pos, records.line - 1))
}

/// A record's place and width.
struct RecordInfo {
    line: u64,
    fields: usize,
}

/// Records of a block, one at a time, unescaped into reusable buffers.
struct Records<'b> {
    input: &'b [u8],
    pos: usize,
    line: u64,
    reader: Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    /// Bytes of `out` and entries of `ends` the current record uses.
    used: (usize, usize),
}

/// Field slices of the current record.
struct Fields<'r> {
    out: &'r [u8],
    ends: &'r [usize],
}

impl<'r> Fields<'r> {
    fn iter(&self) -> impl Iterator<Item = &'r [u8]> + 'r {
        let (out, ends) = (self.out, self.ends);
        ends.iter().enumerate().map(move |(i, &end)| {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            &out[start..end]
        })
    }
}

impl<'b> Records<'b> {
    fn new(input: &'b [u8], first_line: u64) -> Self {
        Records {
            input,
            pos: 0,
            line: first_line,
            reader: Reader::new(),
            out: vec![0; 1024],
            ends: vec![0; 64],
            used: (0, 0),
        }
    }

    /// The fields of the record [`Records::next`] returned.
    fn fields(&self) -> Fields<'_> {
        Fields { out: &self.out[..self.used.0], ends: &self.ends[..self.used.1] }
    }

    /// The next record (its fields from [`Records::fields`]); `None` at the end of the block.
    fn next(&mut self, limits: &Limits, path: &Path) -> Result<Option<RecordInfo>, OfflineError> {
        // Blank lines are not records.
        while let Some(&b) = self.input.get(self.pos) {
            match b {
                b'\n' => self.line += 1,
                b'\r' => {}
                _ => break,
            }
            self.pos += 1;
        }
        if self.pos >= self.input.len() {
            return Ok(None);
        }
        let (start, line) = (self.pos, self.line);
        let (mut o, mut e) = (0, 0);
        let mut at_end = false;
        loop {
            let input = if at_end { &[][..] } else { &self.input[self.pos..] };
            let (result, nin, nout, nend) =
                self.reader.read_record(input, &mut self.out[o..], &mut self.ends[e..]);
            self.pos += nin;
            o += nout;
            e += nend;
            match result {
                ReadRecordResult::InputEmpty => at_end = true,
                ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0)
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() > limits.max_columns {
                        return Err(OfflineError::TooWide {
                            path: path.into(),
                            columns: self.ends.len(),
                            limit: limits.max_columns,
                        });
                    }
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0)
                }
                ReadRecordResult::Record | ReadRecordResult::End => break,
            }
            if self.pos - start > limits.max_line_bytes {
                return Err(OfflineError::LineTooLong {
                    path: path.into(),
                    line,
                    limit: limits.max_line_bytes,
                });
            }
        }
        if at_end {
            // The reader saw the end of input: a fresh one for whatever follows (nothing does).
            self.reader.reset();
        }
        self.line += memchr::memchr_iter(b'\n', &self.input[start..self.pos]).count() as u64;
        if self.pos - start > limits.max_line_bytes {
            return Err(OfflineError::LineTooLong { path: path.into(), line, limit: limits.max_line_bytes });
        }
        self.used = (o, e);
        Ok(Some(RecordInfo { line, fields: e }))
    }
}

/// A value shown in an error: at most 40 characters, and how long it was.
pub(crate) fn preview(cell: &[u8]) -> String {
    let text = String::from_utf8_lossy(cell);
    if text.chars().count() <= 40 {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(40).collect();
        format!("{head:?}... ({} characters)", text.chars().count())
    }
}

/// What a cell did to its column.
enum Cell {
    Ok,
    /// A column read as numbers met a cell that is not one: read the block again with it as text.
    Restart,
}

/// Adds one cell to its column's chunk.
#[allow(clippy::too_many_arguments)]
#[inline]
fn push_cell(
    path: &Path,
    header: &[String],
    chunk: &mut Chunk,
    interner: &mut Option<Interner>,
    want: Want,
    i: usize,
    raw: &[u8],
    row: u32,
    line: u64,
) -> Result<Cell, OfflineError> {
    let cell = trim(raw);
    match (chunk, interner) {
        (Chunk::Text(t), Some(interner)) => {
            if is_missing_bytes(cell) {
                t.codes.push(MISSING);
            } else {
                t.codes.push(interner.code_bytes(cell));
            }
        }
        (Chunk::Numeric(n), _) => {
            if is_missing_bytes(cell) {
                n.missing.push(row);
                n.values.push(f64::NAN);
                return Ok(Cell::Ok);
            }
            match parse_cell(cell) {
                Some(Ok(x)) => {
                    n.values.push(x);
                    if n.spellings.len() < 3 {
                        n.observe_spelling(&String::from_utf8_lossy(cell));
                    }
                }
                Some(Err(())) => {
                    return Err(OfflineError::BadValue {
                        path: path.into(),
                        place: Place::Line(line),
                        column: header[i].clone(),
                        message: format!("{} does not fit a 64-bit float", preview(cell)),
                    })
                }
                None if want == Want::Infer => return Ok(Cell::Restart),
                None => {
                    return Err(OfflineError::NotNumeric {
                        path: path.into(),
                        line,
                        column: header[i].clone(),
                        value: String::from_utf8_lossy(cell).into_owned(),
                    })
                }
            }
        }
        (Chunk::Text(_), None) => unreachable!("text chunks have an interner"),
    }
    Ok(Cell::Ok)
}

/// One block's columns as they fill.
struct Filling<'a> {
    path: &'a Path,
    header: &'a [String],
    block_bytes: usize,
    wants: Vec<Want>,
    chunks: Vec<Chunk>,
    interners: Vec<Option<Interner>>,
    rows: u32,
}

impl<'a> Filling<'a> {
    fn new(path: &'a Path, header: &'a [String], block_bytes: usize, wants: Vec<Want>) -> Self {
        let chunks = wants
            .iter()
            .map(|w| match w {
                Want::Text => Chunk::Text(TextColumn::default()),
                _ => Chunk::Numeric(NumericColumn::default()),
            })
            .collect();
        let interners = wants.iter().map(|w| (*w == Want::Text).then(Interner::default)).collect();
        Filling { path, header, block_bytes, wants, chunks, interners, rows: 0 }
    }

    /// Adds a record of `count` fields; `Some(column)` when that column must be read again as
    /// text (the block starts over).
    fn add<'f>(
        &mut self,
        fields: impl Iterator<Item = &'f [u8]>,
        count: usize,
        line: u64,
        record_bytes: usize,
    ) -> Result<Option<usize>, OfflineError> {
        if count != self.header.len() {
            return Err(OfflineError::Ragged {
                path: self.path.into(),
                line,
                expected: self.header.len(),
                found: count,
            });
        }
        if self.rows == 0 {
            // Room for the block's rows, estimated from the first record's length, so the
            // columns grow without copies.
            let rows = self.block_bytes / record_bytes.max(1) * 5 / 4 + 16;
            for chunk in &mut self.chunks {
                match chunk {
                    Chunk::Numeric(n) => n.values.reserve(rows),
                    Chunk::Text(t) => t.codes.reserve(rows),
                }
            }
        }
        for (i, raw) in fields.enumerate() {
            let (chunk, interner) = (&mut self.chunks[i], &mut self.interners[i]);
            let cell =
                push_cell(self.path, self.header, chunk, interner, self.wants[i], i, raw, self.rows, line)?;
            if let Cell::Restart = cell {
                return Ok(Some(i));
            }
        }
        self.rows += 1;
        Ok(None)
    }

    fn finish(mut self, index: usize) -> Parsed {
        for (chunk, interner) in self.chunks.iter_mut().zip(self.interners) {
            if let (Chunk::Text(t), Some(i)) = (chunk, interner) {
                t.dictionary = i.dictionary;
            }
        }
        Parsed { index, rows: self.rows as usize, chunks: self.chunks }
    }
}

fn parse_block(
    path: &Path,
    block: &Block,
    header: &[String],
    wants: &[Want],
    limits: &Limits,
) -> Result<Parsed, OfflineError> {
    let mut wants = wants.to_vec();
    // Without quotes a record is a line and a field what lies between commas: split with
    // memchr, no state machine.
    let plain = memchr::memchr(b'"', &block.bytes).is_none();
    'restart: loop {
        let mut filling = Filling::new(path, header, block.bytes.len(), wants.clone());
        if plain {
            let bytes = &block.bytes;
            let (mut start, mut line) = (0, block.first_line);
            while start < bytes.len() {
                let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
                let record_line = line;
                let mut record = &bytes[start..end];
                start = end + 1;
                line += 1;
                if record.last() == Some(&b'\r') {
                    record = &record[..record.len() - 1];
                }
                if record.len() > limits.max_line_bytes {
                    return Err(OfflineError::LineTooLong {
                        path: path.into(),
                        line: record_line,
                        limit: limits.max_line_bytes,
                    });
                }
                if trim(record).is_empty() {
                    continue;
                }
                let count = memchr::memchr_iter(b',', record).count() + 1;
                let fields = record.split(|&b| b == b',');
                if let Some(i) = filling.add(fields, count, record_line, record.len() + 1)? {
                    wants[i] = Want::Text;
                    continue 'restart;
                }
            }
        } else {
            let mut records = Records::new(&block.bytes, block.first_line);
            loop {
                let before = records.pos;
                let Some(record) = records.next(limits, path)? else { break };
                let fields = records.fields();
                if record.fields == 1 && header.len() > 1 && fields.iter().all(|f| trim(f).is_empty()) {
                    continue;
                }
                if let Some(i) =
                    filling.add(fields.iter(), record.fields, record.line, records.pos - before)?
                {
                    wants[i] = Want::Text;
                    continue 'restart;
                }
            }
        }
        return Ok(filling.finish(block.index));
    }
}
