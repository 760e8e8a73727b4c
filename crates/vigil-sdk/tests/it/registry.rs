//! The Confluent wire format: schemas registered with the real registry at
//! `VIGIL_TEST_SCHEMA_REGISTRY_URL` (default `http://127.0.0.1:8081/apis/ccompat/v7`), events
//! framed with the ids it gave, read back through the registry's schemas.

use std::time::Duration;

use vigil_events::{decode_confluent, detect, Framing, OutcomeEvent, PredictionEvent};
use vigil_registry::{Cache, Client, RegistryConfig, SubjectNameStrategy};
use vigil_sdk::{Producer, WireFormat};

use crate::kafka::{consume, outcome, prediction, Topics};

fn registry_url() -> String {
    std::env::var("VIGIL_TEST_SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

#[test]
fn events_in_the_confluent_format_carry_the_registry_ids_and_decode_with_its_schemas() {
    let topics = Topics::new("confluent");
    let mut config = topics.config();
    let client = Client::new(RegistryConfig::new(registry_url())).unwrap();
    #[cfg(feature = "schema-registry")]
    let format = topics
        .runtime
        .block_on(vigil_sdk::register_schemas(&client, SubjectNameStrategy::TopicName, &mut config))
        .expect("registered (is the registry up? deploy/local/up)");
    #[cfg(not(feature = "schema-registry"))]
    let format = {
        let ids = topics
            .runtime
            .block_on(client.register_vigil_schemas(
                SubjectNameStrategy::TopicName,
                &topics.predictions,
                &topics.outcomes,
            ))
            .expect("registered (is the registry up? deploy/local/up)");
        config.wire_format =
            WireFormat::Confluent { prediction_schema_id: ids.prediction, outcome_schema_id: ids.outcome };
        config.wire_format
    };
    let WireFormat::Confluent { prediction_schema_id, outcome_schema_id } = format else {
        panic!("confluent format expected, got {format:?}")
    };
    let producer = Producer::new(config).unwrap();
    let predictions: Vec<PredictionEvent> = (0..20).map(prediction).collect();
    let outcomes: Vec<OutcomeEvent> = (0..10).map(outcome).collect();
    for (i, p) in predictions.iter().enumerate() {
        // Both the lent (encoded in the call) and the moved (encoded on the SDK's thread) paths.
        if i % 2 == 0 {
            producer.log_prediction(p).unwrap();
        } else {
            producer.log_prediction(p.clone()).unwrap();
        }
    }
    for o in &outcomes {
        producer.log_outcome(o.clone()).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let cache = Cache::new(client, 16);
    let mut read = Vec::new();
    for (_, bytes) in consume(&topics.predictions, predictions.len(), Duration::from_secs(30)) {
        assert_eq!(detect(&bytes).unwrap(), Framing::Confluent { schema_id: prediction_schema_id });
        let writer = topics.runtime.block_on(cache.schema(prediction_schema_id)).unwrap();
        read.push(decode_confluent::<PredictionEvent>(&bytes, &writer).unwrap());
    }
    read.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let mut sent = predictions.clone();
    sent.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(read, sent);
    let outcomes_read = consume(&topics.outcomes, outcomes.len(), Duration::from_secs(30));
    assert_eq!(outcomes_read.len(), outcomes.len());
    for (_, bytes) in outcomes_read {
        assert_eq!(detect(&bytes).unwrap(), Framing::Confluent { schema_id: outcome_schema_id });
    }
    assert_eq!(cache.fetched(), 1, "one fetch per schema id");
}
