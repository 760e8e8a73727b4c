//! Against a real Confluent-API registry at `VIGIL_TEST_SCHEMA_REGISTRY_URL` (default
//! `http://127.0.0.1:8081/apis/ccompat/v7`, the one `deploy/local/up` starts).

use std::time::{SystemTime, UNIX_EPOCH};

use vigil_events::{
    decode_confluent, detect, encode_confluent, AvroRecord, Framing, OutcomeEvent, PredictionEvent,
};
use vigil_registry::{subject, Cache, Client, RegistryConfig, RegistryError, SubjectNameStrategy};

fn url() -> String {
    std::env::var("VIGIL_TEST_SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{nanos:x}")
}

#[tokio::test]
async fn vigil_schemas_register_and_come_back_by_id_through_the_cache() {
    let client = Client::new(RegistryConfig::new(url())).unwrap();
    let predictions = unique("it.predictions");
    let outcomes = unique("it.outcomes");
    let ids =
        client.register_vigil_schemas(SubjectNameStrategy::TopicName, &predictions, &outcomes).await.unwrap();
    assert_ne!(ids.prediction, ids.outcome);
    // Registering the same schema again under the subject gives the same id.
    let again = client
        .register(
            &subject(SubjectNameStrategy::TopicName, &predictions, PredictionEvent::FULL_NAME),
            PredictionEvent::SCHEMA_JSON,
        )
        .await
        .unwrap();
    assert_eq!(again, ids.prediction);

    let cache = Cache::new(client, 2);
    let event = PredictionEvent {
        event_id: "e".into(),
        prediction_id: "p".into(),
        model_id: "m".into(),
        model_version: "v1".into(),
        event_time_ms: 1_764_000_000_000,
        ..Default::default()
    };
    let bytes = encode_confluent(ids.prediction, &event);
    let Framing::Confluent { schema_id } = detect(&bytes).unwrap() else { panic!("confluent framing") };
    let writer = cache.schema(schema_id).await.unwrap();
    assert_eq!(writer.fingerprint(), PredictionEvent::fingerprint());
    assert_eq!(decode_confluent::<PredictionEvent>(&bytes, &writer).unwrap(), event);
    let outcome_writer = cache.schema(ids.outcome).await.unwrap();
    assert_eq!(outcome_writer.fingerprint(), OutcomeEvent::fingerprint());
    cache.schema(ids.prediction).await.unwrap();
    assert_eq!(cache.fetched(), 2, "the second lookup of an id is served from the cache");
    assert_eq!(cache.len(), 2);
}

#[tokio::test]
async fn an_unknown_id_is_a_clear_non_retriable_error() {
    let cache = Cache::new(Client::new(RegistryConfig::new(url())).unwrap(), 10);
    let err = cache.schema(2_000_000_000).await.unwrap_err();
    assert!(matches!(err, RegistryError::UnknownId { id: 2_000_000_000, .. }), "{err}");
    assert!(!err.retriable());
    assert_eq!(err.as_decode_error().unwrap().reason(), "unknown_schema_id");
    assert!(cache.is_empty());
}

#[tokio::test]
async fn an_invalid_schema_is_refused_by_the_registry() {
    let client = Client::new(RegistryConfig::new(url())).unwrap();
    let err = client.register(&unique("it.bad"), "{\"type\": \"record\"}").await.unwrap_err();
    let RegistryError::Status { status, .. } = &err else { panic!("expected a status error, got {err}") };
    assert!((400..500).contains(status), "{err}");
    assert!(!err.retriable());
}

#[tokio::test]
async fn an_unreachable_registry_is_retriable() {
    let client = Client::new(RegistryConfig::new("http://127.0.0.1:1")).unwrap();
    let err = client.schema_text(1).await.unwrap_err();
    assert!(matches!(err, RegistryError::Network { .. }), "{err}");
    assert!(err.retriable());
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}
