//! `vigil drift` on small CSV files: the report, the JSON, and the errors bad files produce.

use std::path::PathBuf;

use vigil_offline::{drift_report, run_drift, DriftArgs, OfflineError, Status};
use vigil_stats::{DriftTest, FeatureKind};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

fn args(reference: &str, current: &str) -> DriftArgs {
    DriftArgs::new(data(reference), data(current))
}

#[test]
fn report_infers_types_and_flags_the_shifted_columns() {
    let report = drift_report(&args("reference.csv", "current.csv")).unwrap();
    let col = |name: &str| report.columns.iter().find(|c| c.column == name).unwrap();
    assert_eq!(col("age").kind, FeatureKind::Numeric);
    assert_eq!(col("age").test, DriftTest::Ks);
    assert!(col("age").drifted, "age moved from 18-80 to 30-90");
    assert!(!col("income").drifted);
    assert_eq!(col("income").current_missing, 1);
    assert_eq!(col("city").kind, FeatureKind::Categorical);
    assert_eq!(col("city").test, DriftTest::ChiSquare);
    assert!(col("city").drifted, "a new city (quoted, with a comma) appeared");
    assert_eq!(col("churned").kind, FeatureKind::Binary);
    assert_eq!(col("churned").test, DriftTest::ZTest);
    assert!(col("churned").drifted);
    assert!(!col("note").drifted);
    assert_eq!((report.reference_rows, report.current_rows), (300, 250));
}

#[test]
fn table_and_json_output() {
    let mut a = args("reference.csv", "current.csv");
    let mut out = Vec::new();
    run_drift(&a, &mut out).unwrap();
    let table = String::from_utf8(out).unwrap();
    assert!(table.starts_with("column"), "{table}");
    assert!(table.contains("age") && table.contains("ks") && table.contains("yes"));
    assert!(table.contains("columns drifted"));
    a.json = true;
    let mut out = Vec::new();
    run_drift(&a, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["columns"][0]["column"], "age");
    assert_eq!(v["columns"][0]["test"], "ks");
    assert!(v["columns"][0]["p_value"].as_f64().unwrap() < 0.05);
}

#[test]
fn overrides_change_type_test_and_threshold() {
    let mut a = args("reference.csv", "current.csv");
    a.columns = vec!["age=categorical".into()];
    a.tests = vec!["income=psi".into()];
    a.thresholds = vec!["income=0.5".into()];
    let report = drift_report(&a).unwrap();
    let col = |name: &str| report.columns.iter().find(|c| c.column == name).unwrap();
    assert_eq!(col("age").kind, FeatureKind::Categorical);
    assert_eq!(col("income").test, DriftTest::Psi);
    assert_eq!(col("income").threshold, 0.5);
    a.columns = vec!["age=float".into(), "nope".into()];
    let err = drift_report(&a).unwrap_err().to_string();
    assert!(err.contains("age=float") && err.contains("\"nope\""), "{err}");
}

#[test]
fn bad_files_name_file_line_and_column() {
    let err = drift_report(&args("reference.csv", "ragged.csv")).unwrap_err();
    assert!(matches!(err, OfflineError::Ragged { line: 7, expected: 5, found: 4, .. }), "{err}");
    assert!(err.to_string().contains("ragged.csv: line 7"), "{err}");

    let err = drift_report(&args("reference.csv", "missing_column.csv")).unwrap_err().to_string();
    assert!(
        err.contains("\"note\"") && err.contains("missing from") && err.contains("missing_column.csv"),
        "{err}"
    );

    let err = drift_report(&args("reference.csv", "non_numeric.csv")).unwrap_err().to_string();
    assert!(err.contains("non_numeric.csv: line 8, column \"income\": \"fifty\""), "{err}");

    let err = drift_report(&args("reference.csv", "does_not_exist.csv")).unwrap_err().to_string();
    assert!(err.contains("does_not_exist.csv"), "{err}");
}

#[test]
fn constant_and_empty_columns_give_verdicts_or_typed_errors_never_nan() {
    let mut a = args("edge_reference.csv", "edge_current.csv");
    a.min_rows = 1;
    let report = drift_report(&a).unwrap();
    let col = |name: &str| report.columns.iter().find(|c| c.column == name).unwrap();
    // Numeric with NaN/inf: they are counted apart, the test runs on the finite values.
    assert_eq!(col("x").kind, FeatureKind::Numeric);
    assert_eq!((col("x").reference_count, col("x").current_count), (4, 3));
    assert!(col("x").statistic.unwrap().is_finite());
    // A constant column: nothing moved.
    assert_eq!(col("constant").kind, FeatureKind::Binary);
    assert_eq!(col("constant").p_value, Some(1.0));
    assert!(!col("constant").drifted);
    // An all-missing column: "insufficient data", reported per column, not drifted.
    let empty = col("empty");
    assert_eq!(empty.statistic, None);
    assert_eq!(empty.status, Status::InsufficientData);
    assert!(!empty.drifted);
    assert!(empty.error.as_deref().unwrap().starts_with("insufficient data: 0 "), "{:?}", empty.error);
    a.json = true;
    let mut out = Vec::new();
    run_drift(&a, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("NaN") && text.contains("insufficient data"), "{text}");
}
