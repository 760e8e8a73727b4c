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
