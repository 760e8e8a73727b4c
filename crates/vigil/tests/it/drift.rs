//! `vigil drift` end to end through the binary: no Kafka or ClickHouse involved.

use std::process::Command;

fn testdata(file: &str) -> String {
    format!("{}/../vigil-offline/testdata/{file}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn drift_prints_a_table_and_json_for_two_csv_files() {
    let table = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["drift", &testdata("reference.csv"), &testdata("current.csv")])
        .output()
        .unwrap();
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.lines().next().unwrap().starts_with("column"), "{text}");
    assert!(text.contains("columns drifted"), "{text}");

    let json = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["drift", "--json", &testdata("reference.csv"), &testdata("current.csv")])
        .output()
        .unwrap();
    assert!(json.status.success());
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--json prints JSON");
    let columns = report["columns"].as_array().expect("a columns array");
    assert_eq!(columns.len(), 5);
    let age = columns.iter().find(|c| c["column"] == "age").expect("age column");
    assert_eq!(age["drifted"], true, "{age}");
}

#[test]
fn a_ragged_file_is_named_with_its_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["drift", &testdata("reference.csv"), &testdata("ragged.csv")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ragged.csv") && err.contains("line 7"), "{err}");
}

#[test]
fn exit_codes_tell_no_drift_error_and_drift_found_apart() {
    let run = |extra: &[&str], reference: &str, current: &str| {
        let mut args = vec!["drift".to_owned(), testdata(reference), testdata(current)];
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_vigil")).args(&args).output().unwrap()
    };
    // Drift without --fail-on-drift: a report, exit 0.
    let out = run(&[], "reference.csv", "current.csv");
    assert_eq!(out.status.code(), Some(0));
    // With it: exit 3, the report printed all the same.
    let out = run(&["--fail-on-drift", "--format", "markdown"], "reference.csv", "current.csv");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("| column |"));
    // The same file on both sides: nothing drifted, exit 0 even with the flag.
    let out = run(&["--fail-on-drift"], "reference.csv", "reference.csv");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // An error: exit 1, the file named on stderr.
    let out = run(&["--fail-on-drift"], "reference.csv", "does_not_exist.parquet");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does_not_exist.parquet"));
    // Parquet on one side, CSV on the other.
    let out = run(&["--format", "json"], "reference.parquet", "current.csv");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
