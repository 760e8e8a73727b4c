//! Schema evolution: what earlier revisions wrote (`schemas/history/`) still decodes, with the
//! fields added since at their defaults; apache-avro's schema resolution agrees.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Schema;
use serde_json::Value as Json;
use vigil_events::{
    decode, encode, schema_name, AvroRecord, DatasetRef, EventKind, LifecycleEvent, Lineage,
    RemediationAction, RemediationEvent, Severity, Stage, HEADER_LEN, LIFECYCLE_SCHEMA, LIFECYCLE_SCHEMA_1,
    REMEDIATION_SCHEMA, REMEDIATION_SCHEMA_1,
};

/// Reads a body written with `writer` as `reader` (Avro schema resolution).
fn resolve(writer: &Schema, reader: &Schema, mut bytes: &[u8]) -> apache_avro::AvroResult<Value> {
    GenericDatumReader::builder(writer).reader_schema(reader).build()?.read_value(&mut bytes)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn old_log() -> Json {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/testdata/lifecycle-v1-log.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_log_written_with_revision_1_decodes_with_defaults() {
    let log = old_log();
    let events: Vec<LifecycleEvent> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| decode::<LifecycleEvent>(&unhex(e["hex"].as_str().unwrap())).unwrap())
        .collect();
    assert_eq!(events.len(), 4);
    for (event, expected) in events.iter().zip(log["events"].as_array().unwrap()) {
        assert_eq!(event.event_id, expected["event_id"].as_str().unwrap());
        assert_eq!(event.actor, expected["actor"].as_str().unwrap());
        assert_eq!((event.kind, event.lineage.as_ref()), (EventKind::StageChange, None));
    }
    assert_eq!((events[1].stage, events[1].traffic_weight), (Stage::Canary, Some(0.2)));
    assert_eq!((events[2].stage, events[2].remediation_id.as_deref()), (Stage::RolledBack, Some("rem-old")));
    // The old bytes name revision 1, which this build knows by name.
    let bytes = unhex(log["events"][0]["hex"].as_str().unwrap());
    assert_eq!(vigil_events::fingerprint(&bytes).unwrap(), vigil_events::fingerprint_of(LIFECYCLE_SCHEMA_1));
    assert_eq!(
        schema_name(vigil_events::fingerprint_of(LIFECYCLE_SCHEMA_1)),
        Some(LifecycleEvent::FULL_NAME)
    );
    assert_ne!(LifecycleEvent::fingerprint(), vigil_events::fingerprint_of(LIFECYCLE_SCHEMA_1));
}

#[test]
fn apache_avro_resolves_revision_1_bodies_to_the_same_defaults() {
    let old = Schema::parse_str(LIFECYCLE_SCHEMA_1).unwrap();
    let new = Schema::parse_str(LIFECYCLE_SCHEMA).unwrap();
    let bytes = unhex(old_log()["events"][0]["hex"].as_str().unwrap());
    let value = resolve(&old, &new, &bytes[HEADER_LEN..]).unwrap();
    let Value::Record(fields) = value else { panic!("a record") };
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(field("kind"), Value::Union(0, Box::new(Value::Null)));
    assert_eq!(field("lineage"), Value::Union(0, Box::new(Value::Null)));
}

#[test]
fn lineage_and_kind_round_trip() {
    let event = LifecycleEvent {
        event_id: "e".into(),
        model_id: "fraud".into(),
        model_version: "v5".into(),
        stage: Stage::Candidate,
        traffic_weight: None,
        reason: "registered".into(),
        actor: "ci".into(),
        remediation_id: None,
        event_time_ms: 5,
        kind: EventKind::StageChange,
        lineage: Some(Box::new(Lineage {
            training_run_id: Some("run-42".into()),
            training_run_uri: Some("mlflow://runs/run-42".into()),
            datasets: vec![
                DatasetRef { name: "tx".into(), version: Some("7".into()), sha256: None },
                DatasetRef { name: "labels".into(), version: None, sha256: Some("ab".repeat(32)) },
            ],
            code_repository: Some("https://example.org/ml/fraud.git".into()),
            code_commit: Some("0123abc".into()),
            artifact_uri: Some("s3://models/fraud/v5".into()),
            artifact_sha256: Some("cd".repeat(32)),
            parent_version: Some("v4".into()),
            team: Some("risk".into()),
            tags: [("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())].into(),
        })),
    };
    assert!(event.lineage.as_ref().unwrap().is_complete());
    assert_eq!(decode::<LifecycleEvent>(&encode(&event)).unwrap(), event);
    let retrain = LifecycleEvent { kind: EventKind::RetrainRequested, lineage: None, ..event.clone() };
    assert_eq!(decode::<LifecycleEvent>(&encode(&retrain)).unwrap(), retrain);

    let mut bad = event.clone();
    bad.lineage.as_mut().unwrap().artifact_sha256 = Some("xyz".into());
    let error = decode::<LifecycleEvent>(&encode(&bad)).unwrap_err().to_string();
    assert!(error.contains("lineage.artifact_sha256"), "{error}");
    let mut long = event;
    long.lineage.as_mut().unwrap().team = Some("t".repeat(2000));
    assert!(decode::<LifecycleEvent>(&encode(&long)).unwrap_err().to_string().contains("lineage.team"));
}

#[test]
fn remediations_of_revision_1_decode_and_retrain_is_new() {
    let remediation = RemediationEvent {
        remediation_id: "r".into(),
        model_id: "fraud".into(),
        model_version: "v1".into(),
        window_start_ms: 0,
        window_end_ms: 60_000,
        severity: Severity::Warning,
        action: RemediationAction::Rollback,
        policy: "drift".into(),
        evidence: vec![],
        reference_id: None,
        config_hash: "h".into(),
        created_at_ms: 60_001,
    };
    // The body of a rollback is the same in both revisions: only the header's fingerprint differs.
    let mut old = encode(&remediation);
    old[2..HEADER_LEN].copy_from_slice(&vigil_events::fingerprint_of(REMEDIATION_SCHEMA_1).to_le_bytes());
    assert_eq!(decode::<RemediationEvent>(&old).unwrap(), remediation);
    let old_schema = Schema::parse_str(REMEDIATION_SCHEMA_1).unwrap();
    resolve(&old_schema, &Schema::parse_str(REMEDIATION_SCHEMA).unwrap(), &old[HEADER_LEN..]).unwrap();

    let retrain = RemediationEvent { action: RemediationAction::Retrain, ..remediation };
    assert_eq!(decode::<RemediationEvent>(&encode(&retrain)).unwrap(), retrain);
    // An old writer never sent index 3: in a revision-1 body it is malformed.
    let mut forged = encode(&retrain);
    forged[2..HEADER_LEN].copy_from_slice(&vigil_events::fingerprint_of(REMEDIATION_SCHEMA_1).to_le_bytes());
    assert!(decode::<RemediationEvent>(&forged).is_err());
}
