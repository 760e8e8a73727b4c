//! Progress of reading a large file, on stderr: rows read, share of the file, rows per second.

use std::io::Write;
use std::time::{Duration, Instant};

/// The clock is read once per this many rows, so reporting costs nothing per row.
const CHECK_EVERY_ROWS: u64 = 1000;

/// Writes a progress line at most every `every` while a file is read, and a summary line when
/// it is done. On a terminal the line is rewritten in place; elsewhere (logs, CI) each update is
/// a line of its own.
pub struct Progress {
    out: Option<Box<dyn Write>>,
    interactive: bool,
    every: Duration,
    label: String,
    total_bytes: Option<u64>,
    started: Instant,
    last: Instant,
    /// Rows left before the clock is read again.
    countdown: u64,
}

impl Progress {
    pub fn new(out: Box<dyn Write>, interactive: bool, every: Duration) -> Self {
        let now = Instant::now();
        Progress {
            out: Some(out),
            interactive,
            every,
            label: String::new(),
            total_bytes: None,
            started: now,
            last: now,
            countdown: CHECK_EVERY_ROWS,
        }
    }

    /// Reports nothing.
    pub fn hidden() -> Self {
        let mut progress = Progress::new(Box::new(std::io::sink()), false, Duration::MAX);
        progress.out = None;
        progress
    }

    /// Starts reporting a new pass over a file of `total_bytes` (if known).
    pub fn start(&mut self, label: impl Into<String>, total_bytes: Option<u64>) {
        self.label = label.into();
        self.total_bytes = total_bytes;
        self.started = Instant::now();
        self.last = self.started;
        self.countdown = CHECK_EVERY_ROWS;
    }

    /// Called for every row; writes a line when `every` has passed since the last one.
    pub fn update(&mut self, rows: u64, bytes: u64) {
        self.countdown -= 1;
        if self.countdown > 0 || self.out.is_none() {
            return;
        }
        self.countdown = CHECK_EVERY_ROWS;
        let now = Instant::now();
        if now.duration_since(self.last) < self.every {
            return;
        }
        self.last = now;
        let share = match self.total_bytes {
            Some(total) if total > 0 => {
                format!(", {:.0}% of {}", 100.0 * bytes as f64 / total as f64, megabytes(total))
            }
            _ => String::new(),
        };
        let line = format!(
            "{}: {} rows{share}, {} rows/s",
            self.label,
            grouped(rows),
            grouped(per_second(rows, now - self.started))
        );
        self.write(&line, false);
    }

    /// Ends the pass with its totals.
    pub fn done(&mut self, rows: u64) {
        let elapsed = self.started.elapsed();
        let line = format!(
            "{}: {} rows in {:.1} s ({} rows/s)",
            self.label,
            grouped(rows),
            elapsed.as_secs_f64(),
            grouped(per_second(rows, elapsed))
        );
        self.write(&line, true);
    }

    fn write(&mut self, line: &str, last: bool) {
        let interactive = self.interactive;
        if let Some(out) = &mut self.out {
            // Progress is best effort: a closed stderr must not fail the upload.
            let _ = if interactive {
                write!(out, "\r\x1b[2K{line}{}", if last { "\n" } else { "" })
            } else {
                writeln!(out, "{line}")
            };
            let _ = out.flush();
        }
    }
}

fn per_second(rows: u64, elapsed: Duration) -> u64 {
    (rows as f64 / elapsed.as_secs_f64().max(1e-3)).round() as u64
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        n => n,
    };
    let mut out = digits[..head].to_owned();
    for group in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).expect("ascii digits"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::tests::Shared;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn lines_come_per_interval_and_a_summary_at_the_end() {
        let out = Shared::default();
        let mut progress = Progress::new(Box::new(out.clone()), false, Duration::ZERO);
        progress.start("reading f.csv", Some(10_000));
        for row in 1..=3500 {
            progress.update(row, row * 2);
        }
        progress.done(3500);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("reading f.csv: 1,000 rows, 20% of 0.0 MB, "), "{text}");
        assert!(lines[3].starts_with("reading f.csv: 3,500 rows in "), "{text}");

        let quiet = Shared::default();
        let mut progress = Progress::new(Box::new(quiet.clone()), false, Duration::from_secs(3600));
        progress.start("reading f.csv", None);
        for row in 1..=3500 {
            progress.update(row, row);
        }
        assert!(quiet.0.lock().unwrap().is_empty(), "nothing before the interval passed");
    }
}
