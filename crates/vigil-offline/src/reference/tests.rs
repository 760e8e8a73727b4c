use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Schema;
use vigil_events::{encode, Prediction, PredictionEvent, HEADER_LEN, PREDICTION_SCHEMA};

use super::*;

/// A file under a folder of this test process.
fn file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-offline-reference-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Reads `path` and returns the report and every row as an owned event.
fn read(path: &Path, options: &ReadOptions) -> Result<(ReadReport, Vec<PredictionEvent>), OfflineError> {
    let mut rows = Vec::new();
    let report =
        read_reference(path, options, &mut Progress::hidden(), &mut |view| rows.push(view.to_owned()))?;
    Ok((report, rows))
}

/// Default options that skip up to `bad` bad rows.
fn allowing(bad: u64) -> ReadOptions {
    ReadOptions { max_bad_rows: bad, ..ReadOptions::default() }
}

fn role(report: &ReadReport, column: &str) -> Role {
    report.columns.iter().find(|(c, _)| c == column).map(|(_, r)| *r).unwrap()
}

const CSV: &str = "\
id,age,city,flag,score,predicted,blank
a1,34,paris,1,0.25,no,
a2,NA,lyon,0,0.75,yes,
a3,51.5,,1,,no,NA
";

#[test]
fn csv_columns_are_typed_as_vigil_drift_types_them_and_flags_pick_the_rest() {
    let path = file("typed.csv", CSV.as_bytes());
    let options = ReadOptions {
        skip_columns: vec!["id".into()],
        score_column: Some("score".into()),
        label_column: Some("predicted".into()),
        ..ReadOptions::default()
    };
    let (report, rows) = read(&path, &options).unwrap();
    assert_eq!(report.format, Format::Csv);
    assert_eq!((report.rows, report.bad_rows), (3, 0));
    let roles: Vec<Role> = report.columns.iter().map(|(_, r)| *r).collect();
    use Role::*;
    // `flag` holds two numbers: numeric for the monitor, as a serving app sends a 0/1 input.
    assert_eq!(roles, [Skipped, Numeric, Categorical, Numeric, Score, Label, Empty]);
    assert_eq!(rows[0].numeric_features["age"], 34.0);
    assert!(rows[1].numeric_features["age"].is_nan(), "a missing number is NaN, as the SDKs send it");
    assert_eq!(rows[0].categorical_features["city"], "paris");
    assert!(!rows[2].categorical_features.contains_key("city"), "a missing category is absent");
    assert_eq!(rows[1].prediction.score, Some(0.75));
    assert_eq!(rows[2].prediction.score, None);
    assert_eq!(rows[1].prediction.label.as_deref(), Some("yes"));
    assert!(rows
        .iter()
        .all(|r| !r.numeric_features.contains_key("id") && !r.numeric_features.contains_key("blank")));
    assert!(report.bytes > 0);

    // Forced types win over inference: `flag` as a category, `age` stays numeric.
    let forced = ReadOptions { columns: vec!["flag=categorical".into()], ..ReadOptions::default() };
    let (report, rows) = read(&path, &forced).unwrap();
    assert_eq!(role(&report, "flag"), Categorical);
    assert_eq!(role(&report, "id"), Categorical, "without --skip-column an id is a (useless) feature");
    assert_eq!(rows[0].categorical_features["flag"], "1");
}

#[test]
fn a_bad_row_stops_the_read_with_file_line_and_what_to_do() {
    let path = file("ragged.csv", b"x,y\n1,a\n2\n3,c\n4,d\n");
    let err = read(&path, &ReadOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ragged.csv: line 3: expected 2 fields as in the header, found 1"), "{text}");
    assert!(text.contains("--max-bad-rows"), "{text}");

    let (report, rows) = read(&path, &allowing(1)).unwrap();
    assert_eq!(
        (report.rows, report.bad_rows, rows.len()),
        (3, 1, 3),
        "the same row is not counted twice over two passes"
    );
    assert!(report.bad_examples[0].contains("line 3"), "{:?}", report.bad_examples);

    // A value that does not fit its forced type, and a score that is not finite.
    let path = file("values.csv", b"x,score\n1,0.5\nabc,0.5\n2,NaN\n3,0.1\n");
    let options = ReadOptions {
        columns: vec!["x=numeric".into()],
        score_column: Some("score".into()),
        ..ReadOptions::default()
    };
    let text = read(&path, &options).unwrap_err().to_string();
    assert!(
        text.contains("values.csv: line 3, column \"x\": \"abc\" is not a number (the column is numeric)"),
        "{text}"
    );
    let (report, _) = read(&path, &ReadOptions { max_bad_rows: 2, ..options.clone() }).unwrap();
    assert_eq!((report.rows, report.bad_rows), (2, 2));
    assert!(
        report.bad_examples[1].contains("line 4, column \"score\": the score NaN is not a finite number"),
        "{:?}",
        report.bad_examples
    );
    let err = read(&path, &ReadOptions { max_bad_rows: 1, ..options }).unwrap_err();
    assert!(matches!(&err, OfflineError::TooManyBadRows { count: 2, limit: 1, .. }), "{err}");
    assert!(err.to_string().contains("line 3") && err.to_string().contains("more than 1 bad rows"), "{err}");
}

#[test]
fn files_and_flags_that_cannot_work_are_refused_before_reading() {
    let path = file("flags.csv", b"x,y\n1,2\n");
    let typo = ReadOptions { score_column: Some("scroe".into()), ..ReadOptions::default() };
    let text = read(&path, &typo).unwrap_err().to_string();
    assert!(text.contains("no column named \"scroe\"") && text.contains("columns: x, y"), "{text}");
    let twice = ReadOptions {
        score_column: Some("x".into()),
        skip_columns: vec!["x".into()],
        ..ReadOptions::default()
    };
    assert!(read(&path, &twice).unwrap_err().to_string().contains("two roles"));
    let bad_type = ReadOptions { columns: vec!["x=binary".into()], ..ReadOptions::default() };
    assert!(read(&path, &bad_type).unwrap_err().to_string().contains("NAME=numeric or NAME=categorical"));

    let text = read(&file("data.xlsx", b"x"), &ReadOptions::default()).unwrap_err().to_string();
    assert!(text.contains("--format csv, avro, parquet or arrow"), "{text}");
    let text = read(&file("data.parquet", b"x,y\n1,2\n"), &ReadOptions::default()).unwrap_err().to_string();
    assert!(text.contains("data.parquet: expected a Parquet file: not a Parquet file"), "{text}");
    let text = read(&file("header_only.csv", b"x,y\n"), &ReadOptions::default()).unwrap_err().to_string();
    assert!(text.contains("header_only.csv: no rows"), "{text}");
    let text = read(&file("not_avro.avro", b"x,y\n1,2\n"), &ReadOptions::default()).unwrap_err().to_string();
    assert!(
        text.contains("not_avro.avro: header: not an Avro object container file")
            && text.contains("--format csv"),
        "{text}"
    );
    let (report, _) = read(
        &file("csv_named_avro.avro", b"x,y\n1,2\n"),
        &ReadOptions { format: Some(Format::Csv), ..ReadOptions::default() },
    )
    .unwrap();
    assert_eq!(report.rows, 1);
}

/// A writer a test reads back.
#[derive(Clone, Default)]
pub(super) struct Shared(pub(super) Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn progress_reports_both_passes_over_a_large_csv() {
    let mut csv = String::from("x,device\n");
    for i in 0..5000 {
        csv.push_str(&format!("{},{}\n", i as f64 / 7.0, ["ios", "web", "tv"][i % 3]));
    }
    let path = file("large.csv", csv.as_bytes());
    let out = Shared::default();
    let mut progress = Progress::new(Box::new(out.clone()), false, Duration::ZERO);
    let report = read_reference(&path, &ReadOptions::default(), &mut progress, &mut |_| {}).unwrap();
    assert_eq!(report.rows, 5000);
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let pass = |n: &str| text.lines().filter(|l| l.contains(n)).collect::<Vec<_>>();
    let (first, second) = (pass("pass 1 of 2: column types"), pass("pass 2 of 2: rows"));
    assert_eq!((first.len(), second.len()), (6, 6), "5 updates and a summary each:\n{text}");
    assert!(second[4].contains("5,000 rows, 100% of"), "{text}");
    assert!(second[5].contains("5,000 rows in ") && second[5].ends_with("rows/s)"), "{text}");
}

const FLAT_SCHEMA: &str = r#"{
  "type": "record", "name": "Row", "fields": [
    {"name": "amount", "type": "double"},
    {"name": "ratio", "type": "float"},
    {"name": "count", "type": ["null", "long"]},
    {"name": "age", "type": "int"},
    {"name": "city", "type": ["null", "string"]},
    {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["gold", "silver"]}},
    {"name": "member", "type": "boolean"},
    {"name": "p", "type": ["null", "double"]},
    {"name": "blob", "type": "bytes"}
  ]
}"#;

fn flat_row(i: i32, count: Option<i64>, city: Option<&str>, p: Option<f64>) -> Value {
    let nullable = |v: Option<Value>| match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    };
    Value::Record(vec![
        ("amount".into(), Value::Double(f64::from(i) * 1.5)),
        ("ratio".into(), Value::Float(0.5)),
        ("count".into(), nullable(count.map(Value::Long))),
        ("age".into(), Value::Int(20 + i)),
        ("city".into(), nullable(city.map(|c| Value::String(c.into())))),
        ("tier".into(), Value::Enum(u32::from(i % 2 == 1), ["gold", "silver"][(i % 2) as usize].into())),
        ("member".into(), Value::Boolean(i % 2 == 0)),
        ("p".into(), nullable(p.map(Value::Double))),
        ("blob".into(), Value::Bytes(vec![1, 2])),
    ])
}

fn avro_file(name: &str, schema: &str, rows: &[Value]) -> PathBuf {
    let schema = Schema::parse_str(schema).unwrap();
    let mut writer =
        apache_avro::Writer::with_codec(&schema, Vec::new(), apache_avro::Codec::Deflate(Default::default()))
            .unwrap();
    for row in rows {
        writer.append_value_ref(row).unwrap();
    }
    file(name, &writer.into_inner().unwrap())
}

#[test]
fn flat_avro_records_are_typed_by_their_schema() {
    let rows = [
        flat_row(0, Some(3), Some("paris"), Some(0.2)),
        flat_row(1, None, None, None),
        flat_row(2, Some(5), Some("lyon"), Some(0.9)),
    ];
    let path = avro_file("flat.avro", FLAT_SCHEMA, &rows);

    let text = read(&path, &ReadOptions::default()).unwrap_err().to_string();
    assert!(
        text.contains("flat.avro: header: field \"blob\" has type bytes")
            && text.contains("--skip-column blob"),
        "{text}"
    );

    let options = ReadOptions {
        skip_columns: vec!["blob".into()],
        score_column: Some("p".into()),
        columns: vec!["age=categorical".into()],
        ..ReadOptions::default()
    };
    let (report, events) = read(&path, &options).unwrap();
    assert_eq!(report.rows, 3);
    assert!(!report.prediction_events);
    use Role::*;
    let roles: Vec<Role> = report.columns.iter().map(|(_, r)| *r).collect();
    assert_eq!(
        roles,
        [Numeric, Numeric, Numeric, Categorical, Categorical, Categorical, Categorical, Score, Skipped]
    );
    let e = &events[0];
    assert_eq!(
        (e.numeric_features["amount"], e.numeric_features["ratio"], e.numeric_features["count"]),
        (0.0, 0.5, 3.0)
    );
    assert_eq!(e.categorical_features["age"], "20", "a number forced categorical");
    assert_eq!(
        (e.categorical_features["tier"].as_str(), e.categorical_features["member"].as_str()),
        ("gold", "true")
    );
    assert_eq!(e.prediction.score, Some(0.2));
    assert!(events[1].numeric_features["count"].is_nan(), "null is a missing value");
    assert!(!events[1].categorical_features.contains_key("city"));
    assert_eq!(events[1].prediction.score, None);
}

#[test]
fn a_mixed_union_needs_a_type_and_a_bad_value_names_its_record() {
    let schema =
        r#"{"type": "record", "name": "R", "fields": [{"name": "x", "type": ["null", "long", "string"]}]}"#;
    let rows = [
        Value::Record(vec![("x".into(), Value::Union(1, Box::new(Value::Long(4))))]),
        Value::Record(vec![("x".into(), Value::Union(2, Box::new(Value::String("four".into()))))]),
    ];
    let path = avro_file("mixed.avro", schema, &rows);
    let text = read(&path, &ReadOptions::default()).unwrap_err().to_string();
    assert!(
        text.contains("field \"x\" mixes numbers and text") && text.contains("--column x=numeric"),
        "{text}"
    );
    let numeric = ReadOptions { columns: vec!["x=numeric".into()], ..ReadOptions::default() };
    let text = read(&path, &numeric).unwrap_err().to_string();
    assert!(text.contains("mixed.avro: record 2, column \"x\": \"four\" is not a number"), "{text}");
    let (_, events) =
        read(&path, &ReadOptions { columns: vec!["x=categorical".into()], ..ReadOptions::default() })
            .unwrap();
    assert_eq!(
        (events[0].categorical_features["x"].as_str(), events[1].categorical_features["x"].as_str()),
        ("4", "four")
    );
}

fn prediction(i: u32, version: &str) -> PredictionEvent {
    PredictionEvent {
        event_id: format!("e{i}"),
        prediction_id: format!("p{i}"),
        model_id: "fraud".into(),
        model_version: version.into(),
        event_time_ms: 1_764_000_000_000 + i64::from(i),
        segment: [("country".to_owned(), "DE".to_owned())].into(),
        numeric_features: [("x".to_owned(), f64::from(i)), ("gap".to_owned(), f64::NAN)].into(),
        categorical_features: [("device".to_owned(), "ios".to_owned())].into(),
        prediction: Prediction { label: Some("1".into()), score: Some(0.5), ..Default::default() },
        serving_latency_ms: Some(2.0),
    }
}

#[test]
fn prediction_events_are_taken_as_the_monitor_takes_them() {
    let schema = Schema::parse_str(PREDICTION_SCHEMA).unwrap();
    let datum = GenericDatumReader::builder(&schema).build().unwrap();
    let mut events: Vec<PredictionEvent> = (0..4).map(|i| prediction(i, "v1")).collect();
    events.push(prediction(4, "v2"));
    // An event the monitor would dead-letter: no prediction id.
    events.push(PredictionEvent { prediction_id: String::new(), ..prediction(5, "v1") });
    let values: Vec<Value> =
        events.iter().map(|e| datum.read_value(&mut &encode(e)[HEADER_LEN..]).unwrap()).collect();
    let path = avro_file("events.avro", PREDICTION_SCHEMA, &values);

    let text = read(&path, &ReadOptions::default()).unwrap_err().to_string();
    assert!(
        text.contains("events.avro: record 6: an invalid prediction, which the monitor would dead-letter"),
        "{text}"
    );
    let (report, rows) = read(&path, &allowing(1)).unwrap();
    assert!(report.prediction_events);
    assert_eq!((report.rows, report.bad_rows), (5, 1));
    assert_eq!(
        report.event_versions,
        [(("fraud".to_owned(), "v1".to_owned()), 4), (("fraud".to_owned(), "v2".to_owned()), 1)].into()
    );
    let mut expected = events[2].clone();
    let mut got = rows[2].clone();
    // NaN != NaN: compare the missing feature apart.
    assert!(got.numeric_features.remove("gap").unwrap().is_nan());
    expected.numeric_features.remove("gap");
    // A reference is of all of a version's traffic: segments are not kept.
    expected.segment.clear();
    assert_eq!(got, expected, "every other part of the event arrives");

    let flagged = ReadOptions { score_column: Some("x".into()), ..ReadOptions::default() };
    assert!(read(&path, &flagged).unwrap_err().to_string().contains("apply to CSV files and flat records"));
}

#[test]
fn a_damaged_avro_file_names_the_record_it_broke_at() {
    let rows: Vec<Value> = (0..50).map(|i| flat_row(i, Some(1), Some("x"), None)).collect();
    let path = avro_file("whole.avro", FLAT_SCHEMA, &rows);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 40);
    let damaged = file("damaged.avro", &bytes);
    let options = ReadOptions { skip_columns: vec!["blob".into()], ..ReadOptions::default() };
    let text = read(&damaged, &options).unwrap_err().to_string();
    assert!(text.contains("damaged.avro: record 1:") && text.contains("damaged"), "{text}");
}

#[test]
fn parquet_and_arrow_files_give_the_rows_the_csv_gives() {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    let options = ReadOptions {
        skip_columns: vec!["id".into()],
        score_column: Some("score".into()),
        label_column: Some("predicted".into()),
        ..ReadOptions::default()
    };
    let (csv_report, csv_rows) = read(&file("same.csv", CSV.as_bytes()), &options).unwrap();
    // The CSV above as a typed table, as pandas would write it.
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(StringArray::from(vec!["a1", "a2", "a3"])) as ArrayRef),
        ("age", Arc::new(Float64Array::from(vec![Some(34.0), None, Some(51.5)]))),
        ("city", Arc::new(StringArray::from(vec![Some("paris"), Some("lyon"), None]))),
        ("flag", Arc::new(Int64Array::from(vec![1, 0, 1]))),
        ("score", Arc::new(Float64Array::from(vec![Some(0.25), Some(0.75), None]))),
        ("predicted", Arc::new(StringArray::from(vec!["no", "yes", "no"]))),
        ("blank", Arc::new(StringArray::from(vec![None::<&str>, None, None]))),
    ])
    .unwrap();
    let parquet = file("same.parquet", b"");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&parquet).unwrap(), batch.schema(), None)
            .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let arrow = file("same.arrow", b"");
    let mut writer =
        arrow_ipc::writer::FileWriter::try_new(std::fs::File::create(&arrow).unwrap(), &batch.schema())
            .unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    for (path, format) in [(parquet, Format::Parquet), (arrow, Format::Arrow)] {
        let (report, rows) = read(&path, &options).unwrap();
        assert_eq!(report.format, format);
        assert_eq!(report.columns, csv_report.columns, "{format:?}");
        assert_eq!(format!("{rows:?}"), format!("{csv_rows:?}"), "{format:?}");
    }
    // A score that is not a finite number is a bad row, named by its record.
    let bad = RecordBatch::try_from_iter(vec![(
        "score",
        Arc::new(Float64Array::from(vec![0.5, f64::INFINITY])) as ArrayRef,
    )])
    .unwrap();
    let path = file("bad_score.arrow", b"");
    let mut writer =
        arrow_ipc::writer::FileWriter::try_new(std::fs::File::create(&path).unwrap(), &bad.schema()).unwrap();
    writer.write(&bad).unwrap();
    writer.finish().unwrap();
    let err = read(&path, &options_with_score()).unwrap_err().to_string();
    assert!(
        err.contains("bad_score.arrow: record 2, column \"score\": the score inf is not a finite number"),
        "{err}"
    );
    let (report, _) = read(&path, &ReadOptions { max_bad_rows: 1, ..options_with_score() }).unwrap();
    assert_eq!((report.rows, report.bad_rows), (1, 1));
}

fn options_with_score() -> ReadOptions {
    ReadOptions { score_column: Some("score".into()), ..ReadOptions::default() }
}
