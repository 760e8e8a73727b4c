//! The hand-written codec checked against apache-avro, the reference implementation, and against
//! hostile input.

use std::collections::BTreeMap;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use proptest::prelude::*;
use vigil_events::*;

fn sample_prediction() -> PredictionEvent {
    PredictionEvent {
        event_id: "e-1".into(),
        prediction_id: "p-1".into(),
        model_id: "fraud".into(),
        model_version: "v3".into(),
        event_time_ms: 1_764_000_000_123,
        segment: BTreeMap::from([("country".into(), "DE".into()), ("channel".into(), "web".into())]),
        numeric_features: (0..20).map(|i| (format!("f{i:02}"), i as f64 * 0.5 - 3.0)).collect(),
        categorical_features: BTreeMap::from([("device".into(), "ios".into())]),
        prediction: Prediction {
            label: Some("fraud".into()),
            probabilities: Some(BTreeMap::from([("fraud".into(), 0.8), ("ok".into(), 0.2)])),
            score: Some(0.8),
            value: None,
        },
        serving_latency_ms: Some(3.25),
    }
}

fn from_avro_datum(schema: &Schema, bytes: &mut &[u8], _: Option<()>) -> apache_avro::AvroResult<Value> {
    GenericDatumReader::builder(schema).build()?.read_value(bytes)
}

fn to_avro_datum(schema: &Schema, value: Value) -> apache_avro::AvroResult<Vec<u8>> {
    GenericDatumWriter::builder(schema).build()?.write_value_to_vec(value)
}

fn body(bytes: &[u8]) -> &[u8] {
    &bytes[HEADER_LEN..]
}

fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    match record {
        Value::Record(fields) => &fields.iter().find(|(n, _)| n == name).expect(name).1,
        other => panic!("not a record: {other:?}"),
    }
}

#[test]
fn apache_avro_reads_what_we_write() {
    let event = sample_prediction();
    let bytes = encode(&event);
    let schema = Schema::parse_str(PREDICTION_SCHEMA).unwrap();
    let value = from_avro_datum(&schema, &mut body(&bytes), None).unwrap();
    assert_eq!(field(&value, "model_id"), &Value::String("fraud".into()));
    assert_eq!(field(&value, "event_time_ms"), &Value::Long(1_764_000_000_123));
    match field(&value, "numeric_features") {
        Value::Map(m) => {
            assert_eq!(m.len(), 20);
            assert_eq!(m["f07"], Value::Double(0.5));
        }
        other => panic!("{other:?}"),
    }
    match field(field(&value, "prediction"), "score") {
        Value::Union(1, v) => assert_eq!(**v, Value::Double(0.8)),
        other => panic!("{other:?}"),
    }
    assert_eq!(field(field(&value, "prediction"), "value"), &Value::Union(0, Box::new(Value::Null)));
}

#[test]
fn we_read_what_apache_avro_writes() {
    let schema = Schema::parse_str(OUTCOME_SCHEMA).unwrap();
    let value = Value::Record(vec![
        ("event_id".into(), Value::String("e-9".into())),
        ("prediction_id".into(), Value::String("p-9".into())),
        ("model_id".into(), Value::String("churn".into())),
        ("event_time_ms".into(), Value::Long(5)),
        ("label".into(), Value::Union(1, Box::new(Value::String("yes".into())))),
        ("value".into(), Value::Union(0, Box::new(Value::Null))),
    ]);
    let mut bytes = MAGIC.to_vec();
    bytes.extend(OutcomeEvent::fingerprint().to_le_bytes());
    bytes.extend(to_avro_datum(&schema, value).unwrap());
    let outcome = decode::<OutcomeEvent>(&bytes).unwrap();
    assert_eq!(outcome.model_id, "churn");
    assert_eq!(outcome.event_time_ms, 5);
    assert_eq!(outcome.label.as_deref(), Some("yes"));
    assert_eq!(outcome.value, None);
}

#[test]
fn apache_avro_agrees_on_remediation_and_lifecycle_bytes() {
    let remediation = RemediationEvent {
        remediation_id: "r-1".into(),
        model_id: "fraud".into(),
        model_version: "v3".into(),
        window_start_ms: 60_000,
        window_end_ms: 120_000,
        severity: Severity::Critical,
        action: RemediationAction::Rollback,
        policy: "auc_drop".into(),
        evidence: vec![Evidence { metric: "auc".into(), value: 0.61, threshold: 0.7, feature: None }],
        reference_id: Some("ref-1".into()),
        config_hash: "abc".into(),
        created_at_ms: 130_000,
    };
    let schema = Schema::parse_str(REMEDIATION_SCHEMA).unwrap();
    let bytes = encode(&remediation);
    let value = from_avro_datum(&schema, &mut body(&bytes), None).unwrap();
    assert_eq!(field(&value, "action"), &Value::Enum(2, "ROLLBACK".into()));
    assert_eq!(field(&value, "severity"), &Value::Enum(2, "CRITICAL".into()));
    assert_eq!(to_avro_datum(&schema, value).unwrap(), body(&bytes));
    assert_eq!(decode::<RemediationEvent>(&bytes).unwrap(), remediation);

    let lifecycle = LifecycleEvent {
        event_id: "l-1".into(),
        model_id: "fraud".into(),
        model_version: "v4".into(),
        stage: Stage::Canary,
        traffic_weight: Some(0.1),
        reason: "registered".into(),
        actor: "alice".into(),
        remediation_id: None,
        event_time_ms: 1,
        kind: vigil_events::EventKind::StageChange,
        lineage: Some(Box::new(vigil_events::Lineage {
            training_run_id: Some("run-7".into()),
            datasets: vec![vigil_events::DatasetRef {
                name: "tx".into(),
                version: Some("2026-11".into()),
                sha256: None,
            }],
            tags: [("owner".to_owned(), "risk".to_owned())].into(),
            ..Default::default()
        })),
    };
    let schema = Schema::parse_str(LIFECYCLE_SCHEMA).unwrap();
    let bytes = encode(&lifecycle);
    let value = from_avro_datum(&schema, &mut body(&bytes), None).unwrap();
    assert_eq!(to_avro_datum(&schema, value).unwrap(), body(&bytes));
    assert_eq!(decode::<LifecycleEvent>(&bytes).unwrap(), lifecycle);
}

#[test]
fn header_carries_the_rabin_fingerprint_apache_avro_computes() {
    let schema = Schema::parse_str(PREDICTION_SCHEMA).unwrap();
    let fp = schema.fingerprint::<apache_avro::rabin::Rabin>();
    assert_eq!(&encode(&sample_prediction())[2..10], fp.bytes.as_slice());
}

#[test]
fn bad_input_gets_a_reason() {
    let good = encode(&sample_prediction());
    assert_eq!(decode::<PredictionEvent>(b"{\"json\": true}").unwrap_err().reason(), "not_avro");
    assert_eq!(decode::<PredictionEvent>(&good[..good.len() - 3]).unwrap_err().reason(), "malformed");

    let mut unknown = good.clone();
    unknown[2] ^= 0xff;
    assert_eq!(decode::<PredictionEvent>(&unknown).unwrap_err().reason(), "unknown_schema");

    let outcome = OutcomeEvent {
        prediction_id: "p".into(),
        model_id: "m".into(),
        label: Some("x".into()),
        ..Default::default()
    };
    let err = decode::<PredictionEvent>(&encode(&outcome)).unwrap_err();
    assert_eq!(err, DecodeError::WrongEventType { schema: "vigil.v1.OutcomeEvent" });

    let no_model = PredictionEvent { model_id: String::new(), ..sample_prediction() };
    assert_eq!(decode::<PredictionEvent>(&encode(&no_model)).unwrap_err().reason(), "missing_model_id");

    let mut nan_score = sample_prediction();
    nan_score.prediction.score = Some(f64::NAN);
    assert_eq!(decode::<PredictionEvent>(&encode(&nan_score)).unwrap_err().reason(), "non_finite_value");

    let before_1970 = PredictionEvent { event_time_ms: -1, ..sample_prediction() };
    assert_eq!(decode::<PredictionEvent>(&encode(&before_1970)).unwrap_err().reason(), "out_of_range");

    let mut trailing = good;
    trailing.push(0);
    assert_eq!(decode::<PredictionEvent>(&trailing).unwrap_err().reason(), "malformed");
}

#[test]
fn nan_features_are_kept_as_missing_values() {
    let mut event = sample_prediction();
    event.numeric_features.insert("f00".into(), f64::NAN);
    let decoded = decode::<PredictionEvent>(&encode(&event)).unwrap();
    assert!(decoded.numeric_features["f00"].is_nan());
}

fn arb_map<V: std::fmt::Debug>(
    value: impl Strategy<Value = V>,
) -> impl Strategy<Value = BTreeMap<String, V>> {
    prop::collection::btree_map("[a-z_]{1,8}", value, 0..6)
}

prop_compose! {
    fn arb_prediction()(
        ids in ("[a-z0-9-]{1,12}", "[a-z0-9-]{1,12}", "[a-z]{1,8}", "v[0-9]"),
        event_time_ms in 0i64..4_000_000_000_000,
        segment in arb_map("[A-Z]{0,3}"),
        numeric_features in arb_map(-1e12f64..1e12),
        categorical_features in arb_map("\\PC{0,5}"),
        label in proptest::option::of("[a-z]{1,5}"),
        probabilities in proptest::option::of(arb_map(0.0f64..=1.0)),
        score in proptest::option::of(0.0f64..1.0),
        value in proptest::option::of(-1e6f64..1e6),
        serving_latency_ms in proptest::option::of(0.0f64..1e4),
    ) -> PredictionEvent {
        PredictionEvent {
            event_id: ids.0, prediction_id: ids.1, model_id: ids.2, model_version: ids.3,
            event_time_ms, segment, numeric_features, categorical_features,
            prediction: Prediction { label, probabilities, score, value },
            serving_latency_ms,
        }
    }
}

proptest! {
    #[test]
    fn any_valid_prediction_round_trips_and_apache_avro_reencodes_it_identically(event in arb_prediction()) {
        let bytes = encode(&event);
        prop_assert_eq!(&decode::<PredictionEvent>(&bytes).unwrap(), &event);
        prop_assert_eq!(&decode_prediction_view(&bytes).unwrap().to_owned(), &event);
        // apache-avro writes maps in hash order, so compare its re-encoding only with at most one entry per map.
        if [event.segment.len(), event.numeric_features.len(), event.categorical_features.len(),
            event.prediction.probabilities.as_ref().map_or(0, |m| m.len())].iter().all(|n| *n <= 1) {
            let schema = Schema::parse_str(PREDICTION_SCHEMA).unwrap();
            let value = from_avro_datum(&schema, &mut body(&bytes), None).unwrap();
            prop_assert_eq!(to_avro_datum(&schema, value).unwrap(), body(&bytes).to_vec());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(PredictionEvent::fingerprint().to_le_bytes());
        bytes.extend(tail);
        // The borrowed and the owned decoders accept and reject exactly the same bytes.
        let owned = decode::<PredictionEvent>(&bytes);
        let view = decode_prediction_view(&bytes);
        prop_assert_eq!(owned.map_err(|e| e.reason()), view.map(|v| v.to_owned()).map_err(|e| e.reason()));
    }

    #[test]
    fn truncating_a_valid_event_is_an_error_not_a_panic(event in arb_prediction(), cut in 0usize..400) {
        let bytes = encode(&event);
        let cut = cut.min(bytes.len() - 1);
        prop_assert!(decode::<PredictionEvent>(&bytes[..cut]).is_err());
    }
}
