//! Bad input as a new user meets it: each gets a clear answer naming the file (and the line
//! and column where there is one), and none runs away with time or memory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vigil_offline::engine::InputFormat;
use vigil_offline::{drift_report, DriftArgs, OfflineError, Status};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-bad-input-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn too_few_rows_is_insufficient_data_not_drift() {
    let dir = scratch("few");
    let one = write(&dir, "one.csv", "age,income,city,churned,note\n90,1000000,paris,1,z\n");
    let report = drift_report(&DriftArgs::new(data("reference.csv"), &one)).unwrap();
    assert_eq!(report.drifted_columns, 0);
    assert_eq!(report.insufficient_columns, 5);
    for c in &report.columns {
        assert_eq!(c.status, Status::InsufficientData, "{}", c.column);
        assert!(!c.drifted);
        let why = c.error.as_deref().unwrap();
        assert!(why.contains("1 non-missing current values") && why.contains("at least 30"), "{why}");
    }
    // The minimum is a flag.
    let mut args = DriftArgs::new(data("reference.csv"), &one);
    args.min_rows = 1;
    assert_eq!(drift_report(&args).unwrap().insufficient_columns, 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn empty_and_header_only_files_are_errors_naming_the_file() {
    let dir = scratch("empty");
    let header_only = write(&dir, "header_only.csv", "a,b,c\n");
    let empty = write(&dir, "empty.csv", "");
    let err = drift_report(&DriftArgs::new(&header_only, data("current.csv"))).unwrap_err();
    assert!(matches!(err, OfflineError::HeaderOnly { .. }), "{err}");
    assert!(
        err.to_string().contains("header_only.csv: the file names its columns but has no data rows"),
        "{err}"
    );
    let err = drift_report(&DriftArgs::new(data("reference.csv"), &empty)).unwrap_err();
    assert!(matches!(err, OfflineError::Empty { .. }), "{err}");
    assert!(err.to_string().contains("empty.csv: the file is empty"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn parquet_and_arrow_files_without_rows_are_errors_naming_the_file() {
    use arrow_schema::{DataType, Field, Schema};

    let dir = scratch("columnar-empty");
    // An Arrow IPC stream with a schema and no batches: the columnar header-only file.
    let no_rows = dir.join("no_rows.arrows");
    let schema = Schema::new(vec![Field::new("age", DataType::Float64, true)]);
    let mut writer =
        arrow_ipc::writer::StreamWriter::try_new(std::fs::File::create(&no_rows).unwrap(), &schema).unwrap();
    writer.finish().unwrap();
    let err = drift_report(&DriftArgs::new(&no_rows, data("current.csv"))).unwrap_err();
    assert!(matches!(err, OfflineError::HeaderOnly { .. }), "{err}");
    assert!(
        err.to_string().contains("no_rows.arrows: the file names its columns but has no data rows"),
        "{err}"
    );
    // Zero bytes under a Parquet or Arrow name is an empty file, not a malformed one.
    for name in ["empty.parquet", "empty.arrow"] {
        let empty = write(&dir, name, "");
        let err = drift_report(&DriftArgs::new(data("reference.csv"), &empty)).unwrap_err();
        assert!(matches!(err, OfflineError::Empty { .. }), "{err}");
        assert!(err.to_string().contains(&format!("{name}: the file is empty")), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_wrong_format_names_the_format_expected() {
    let dir = scratch("format");
    let parquet_as_csv = dir.join("reference.csv");
    std::fs::copy(data("reference.parquet"), &parquet_as_csv).unwrap();
    let err = drift_report(&DriftArgs::new(&parquet_as_csv, data("current.csv"))).unwrap_err().to_string();
    assert!(
        err.contains("reference.csv: expected a CSV file: it looks like a Parquet file; pass --input-format"),
        "{err}"
    );
    let csv_as_parquet = dir.join("current.parquet");
    std::fs::copy(data("current.csv"), &csv_as_parquet).unwrap();
    let err =
        drift_report(&DriftArgs::new(data("reference.parquet"), &csv_as_parquet)).unwrap_err().to_string();
    assert!(err.contains("current.parquet: expected a Parquet file: not a Parquet file"), "{err}");
    let mut args = DriftArgs::new(data("reference.csv"), data("current.csv"));
    args.input_format = Some(InputFormat::Arrow);
    let err = drift_report(&args).unwrap_err().to_string();
    assert!(
        err.contains("reference.csv: expected an Arrow IPC file: not an Arrow IPC file or stream"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn absurd_widths_are_refused_quickly_with_the_limit() {
    let dir = scratch("wide");
    // 2 million columns, 16 MB on one line: refused at line 1 (longer than --max-line-bytes).
    let mut header: String = (0..2_000_000).map(|i| format!("c{i},")).collect();
    header.pop();
    let wide = write(&dir, "wide.csv", &format!("{header}\n{header}\n"));
    let started = Instant::now();
    let err = drift_report(&DriftArgs::new(&wide, &wide)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(matches!(err, OfflineError::LineTooLong { line: 1, .. }), "{err}");
    assert!(
        err.to_string().contains("wide.csv: line 1: longer than 1048576 bytes (--max-line-bytes)"),
        "{err}"
    );
    // 20,001 short columns fit on a line but not under --max-columns.
    let header: Vec<String> = (0..20_001).map(|i| format!("c{i}")).collect();
    let many = write(&dir, "many.csv", &format!("{}\n", header.join(",")));
    let err = drift_report(&DriftArgs::new(&many, &many)).unwrap_err();
    assert!(
        err.to_string().contains("many.csv: more than 10000 columns, the limit (--max-columns)"),
        "{err}"
    );
    // Both limits are flags.
    let mut args = DriftArgs::new(data("reference.csv"), data("current.csv"));
    args.limits.max_columns = 4;
    assert!(matches!(drift_report(&args).unwrap_err(), OfflineError::TooWide { columns: 5, limit: 4, .. }));
    args.limits.max_columns = 10;
    args.limits.max_line_bytes = 10;
    let err = drift_report(&args).unwrap_err();
    assert!(matches!(err, OfflineError::LineTooLong { line: 1, limit: 10, .. }), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn numbers_beyond_a_float_are_refused_with_line_and_column() {
    let dir = scratch("huge");
    let mut text = String::from("x,y\n");
    for i in 0..40 {
        text += &format!("{i}.5,{}\n", i * 3);
    }
    let digits = "9".repeat(400);
    text += &format!("1.0,{digits}\n");
    let huge = write(&dir, "huge.csv", &text);
    let err = drift_report(&DriftArgs::new(&huge, &huge)).unwrap_err().to_string();
    assert!(
        err.contains("huge.csv: line 42, column \"y\": \"9999")
            && err.contains("(400 characters) does not fit a 64-bit float"),
        "{err}"
    );
    // A 50-million-digit number is longer than a line may be.
    let long = write(&dir, "long.csv", &format!("x\n1\n{}\n", "7".repeat(50_000_000)));
    let err = drift_report(&DriftArgs::new(&long, &long)).unwrap_err();
    assert!(matches!(err, OfflineError::LineTooLong { line: 3, .. }), "{err}");
    // Spelled infinities are numbers (counted apart by the tests), as NaN is.
    let inf = write(&dir, "inf.csv", &format!("x\n{}", "1\n2\n3\ninf\n-Infinity\nNaN\n".repeat(10)));
    assert!(drift_report(&DriftArgs::new(&inf, &inf)).is_ok());
    std::fs::remove_dir_all(&dir).ok();
}
