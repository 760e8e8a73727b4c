//! Shared test vectors in `schemas/testdata/vectors.json`: events as JSON next to the exact bytes
//! vigil encodes for them. Every SDK (Rust, Python) must produce these bytes. The file is
//! written by this test when `VIGIL_UPDATE_VECTORS=1`; otherwise the test checks it.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use vigil_events::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn prediction_json(e: &PredictionEvent) -> Value {
    json!({
        "event_id": e.event_id, "prediction_id": e.prediction_id, "model_id": e.model_id,
        "model_version": e.model_version, "event_time_ms": e.event_time_ms,
        "segment": e.segment, "numeric_features": e.numeric_features,
        "categorical_features": e.categorical_features,
        "prediction": {
            "label": e.prediction.label, "probabilities": e.prediction.probabilities,
            "score": e.prediction.score, "value": e.prediction.value,
        },
        "serving_latency_ms": e.serving_latency_ms,
    })
}

fn outcome_json(e: &OutcomeEvent) -> Value {
    json!({
        "event_id": e.event_id, "prediction_id": e.prediction_id, "model_id": e.model_id,
        "event_time_ms": e.event_time_ms, "label": e.label, "value": e.value,
    })
}

fn predictions() -> Vec<(&'static str, PredictionEvent)> {
    let minimal = PredictionEvent {
        event_id: "e-0".into(),
        prediction_id: "p-0".into(),
        model_id: "m".into(),
        model_version: "1".into(),
        event_time_ms: 0,
        ..Default::default()
    };
    let classifier = PredictionEvent {
        event_id: "7f9c2ba4-e88f-4a2b-9d1e-3c1f0d5e6a77".into(),
        prediction_id: "req-000123".into(),
        model_id: "fraud-detector".into(),
        model_version: "2026.11.3".into(),
        event_time_ms: 1_764_190_245_123,
        segment: BTreeMap::from([("country".into(), "DE".into()), ("channel".into(), "mobile".into())]),
        numeric_features: BTreeMap::from([
            ("amount".into(), 129.99),
            ("account_age_days".into(), 412.0),
            ("velocity_1h".into(), 3.0),
            ("ratio".into(), -0.125),
            ("tiny".into(), 5e-324),
            ("huge".into(), 1.7976931348623157e308),
        ]),
        categorical_features: BTreeMap::from([
            ("merchant_category".into(), "electronics".into()),
            ("device".into(), "ios".into()),
        ]),
        prediction: Prediction {
            label: Some("fraud".into()),
            probabilities: Some(BTreeMap::from([("fraud".into(), 0.87), ("legit".into(), 0.13)])),
            score: Some(0.87),
            value: None,
        },
        serving_latency_ms: Some(4.25),
    };
    let regressor = PredictionEvent {
        event_id: "e-2".into(),
        prediction_id: "p-2".into(),
        model_id: "eta".into(),
        model_version: "v7".into(),
        event_time_ms: 4_294_967_295_999,
        numeric_features: (0..20).map(|i| (format!("f{i:02}"), i as f64 / 7.0 - 1.0)).collect(),
        prediction: Prediction { value: Some(-17.5), ..Default::default() },
        ..minimal.clone()
    };
    let unicode = PredictionEvent {
        event_id: "e-3".into(),
        prediction_id: "p-ü-3".into(),
        model_id: "modèle-日本".into(),
        segment: BTreeMap::from([("région".into(), "Île-de-France".into()), ("emoji".into(), "🚀".into())]),
        categorical_features: BTreeMap::from([("".into(), "empty key".into())]),
        ..minimal.clone()
    };
    vec![
        ("minimal", minimal),
        ("classifier", classifier),
        ("regressor_20_features", regressor),
        ("unicode", unicode),
    ]
}

fn outcomes() -> Vec<(&'static str, OutcomeEvent)> {
    vec![
        (
            "label",
            OutcomeEvent {
                event_id: "o-1".into(),
                prediction_id: "req-000123".into(),
                model_id: "fraud-detector".into(),
                event_time_ms: 1_764_276_645_000,
                label: Some("legit".into()),
                value: None,
            },
        ),
        (
            "value",
            OutcomeEvent {
                event_id: "o-2".into(),
                prediction_id: "p-2".into(),
                model_id: "eta".into(),
                event_time_ms: 1,
                label: None,
                value: Some(-16.75),
            },
        ),
    ]
}

fn vectors() -> Value {
    let mut cases = Vec::new();
    for (name, e) in predictions() {
        cases.push(json!({"name": name, "record": PredictionEvent::FULL_NAME, "event": prediction_json(&e), "hex": hex(&encode(&e))}));
    }
    for (name, e) in outcomes() {
        cases.push(json!({"name": name, "record": OutcomeEvent::FULL_NAME, "event": outcome_json(&e), "hex": hex(&encode(&e))}));
    }
    json!({
        "comment": "Written by crates/vigil-events/tests/vectors.rs (VIGIL_UPDATE_VECTORS=1). Every SDK must encode each event to exactly these bytes.",
        "fingerprints": {
            PredictionEvent::FULL_NAME: format!("{:016x}", PredictionEvent::fingerprint()),
            OutcomeEvent::FULL_NAME: format!("{:016x}", OutcomeEvent::fingerprint()),
            RemediationEvent::FULL_NAME: format!("{:016x}", RemediationEvent::fingerprint()),
            LifecycleEvent::FULL_NAME: format!("{:016x}", LifecycleEvent::fingerprint()),
        },
        "cases": cases,
    })
}

#[test]
fn shared_vectors_match_the_committed_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/testdata/vectors.json");
    let current = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if std::env::var_os("VIGIL_UPDATE_VECTORS").is_some() {
        std::fs::write(path, &current).unwrap();
    }
    let committed = std::fs::read_to_string(path)
        .expect("schemas/testdata/vectors.json exists (VIGIL_UPDATE_VECTORS=1 writes it)");
    assert!(committed == current, "encoding changed: the bytes in {path} no longer match; if intended, rerun with VIGIL_UPDATE_VECTORS=1 and update every SDK");
}

#[test]
fn every_vector_decodes_back_to_its_event() {
    for (name, e) in predictions() {
        assert_eq!(decode::<PredictionEvent>(&encode(&e)).unwrap(), e, "{name}");
    }
    for (name, e) in outcomes() {
        assert_eq!(decode::<OutcomeEvent>(&encode(&e)).unwrap(), e, "{name}");
    }
}
