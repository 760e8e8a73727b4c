"""The Confluent Schema Registry wire format, against the real registry at
VIGIL_TEST_SCHEMA_REGISTRY_URL (deploy/local/up starts one; default
http://127.0.0.1:8081/apis/ccompat/v7) and the broker at VIGIL_TEST_KAFKA_BROKERS."""

from __future__ import annotations

import io
import json
import os
import uuid

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from test_kafka import admin, consume, topics  # noqa: F401  (fixtures)

from vigil_sdk import (
    OutcomeEvent,
    Prediction,
    PredictionEvent,
    SchemaRegistry,
    SchemaRegistryError,
    VigilProducer,
    confluent_header,
    decode,
    encode_outcome,
    encode_prediction,
    subject,
)
from vigil_sdk.codec import HEADER_LEN, load_schema_json

REGISTRY_URL = os.environ.get("VIGIL_TEST_SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7")


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    client = SchemaRegistry(REGISTRY_URL)
    try:
        client.register(f"vigil-sdk-test-probe-{uuid.uuid4().hex[:8]}", load_schema_json("outcome"))
    except SchemaRegistryError as error:
        pytest.fail(f"no schema registry at {REGISTRY_URL} (start one with deploy/local/up): {error}")
    return client


def test_the_confluent_header_frames_the_same_body() -> None:
    event = PredictionEvent(model_id="m", model_version="v1", prediction=Prediction(score=0.5))
    framed = encode_prediction(event, confluent_header(0x01020304))
    assert framed[:5] == b"\x00\x01\x02\x03\x04"
    assert framed[5:] == encode_prediction(event)[HEADER_LEN:]
    with pytest.raises(ValueError, match="pass registry="):
        decode(framed)
    with pytest.raises(ValueError, match="fit in 4 bytes"):
        confluent_header(2**32)


def test_subjects_follow_the_confluent_strategies() -> None:
    assert subject("topic", "vigil.predictions.v1", "vigil.v1.PredictionEvent") == "vigil.predictions.v1-value"
    assert subject("record", "t", "vigil.v1.PredictionEvent") == "vigil.v1.PredictionEvent"
    assert subject("topic_record", "t", "vigil.v1.OutcomeEvent") == "t-vigil.v1.OutcomeEvent"
    with pytest.raises(ValueError, match="subject_name_strategy must be one of"):
        subject("TopicNameStrategy", "t", "x")


def test_confluent_events_carry_the_registry_ids_and_read_back_through_the_registry(
    brokers: str, topics: tuple[str, str], registry: SchemaRegistry  # noqa: F811
) -> None:
    predictions_topic, outcomes_topic = topics
    with VigilProducer(brokers, predictions_topic=predictions_topic, outcomes_topic=outcomes_topic,
                       wire_format="confluent", schema_registry=registry) as producer:
        ids = (producer.prediction_schema_id, producer.outcome_schema_id)
        sent = []
        for i in range(50):
            event = PredictionEvent(model_id=f"model-{i % 2}", model_version="v1",
                                    numeric_features={"f00": float(i)}, prediction=Prediction(score=i / 50))
            producer.log_prediction(event)
            producer.log_outcome(OutcomeEvent(model_id=event.model_id, prediction_id=event.prediction_id, label="1"))
            sent.append(event)
        assert producer.flush(10.0) == 0
    # the registry holds vigil's schemas under the topic-name subjects, with these ids
    assert registry.register(f"{predictions_topic}-value", load_schema_json("prediction")) == ids[0]
    by_id = {e.event_id: e for e in sent}
    received = consume(brokers, predictions_topic, len(sent))
    assert len(received) == len(sent)
    for message in received:
        value = message.value()
        assert value[:5] == confluent_header(ids[0])
        event = decode(value, registry=registry)
        assert event == by_id.pop(event.event_id)
        # a plain Confluent consumer: the schema by id, fastavro after the 5-byte header
        writer = parse_schema(json.loads(json.dumps(registry.schema(ids[0]))))
        record = schemaless_reader(io.BytesIO(value[5:]), writer, None)
        assert record["model_id"] == event.model_id
    assert not by_id
    outcomes = consume(brokers, outcomes_topic, len(sent))
    assert len(outcomes) == len(sent)
    assert all(m.value()[:5] == confluent_header(ids[1]) for m in outcomes)
    assert registry.fetched <= 2


def test_an_evolved_writer_schema_is_resolved_against_vigils(registry: SchemaRegistry) -> None:
    evolved = load_schema_json("outcome")
    evolved["fields"] = [{"name": "source", "type": "string", "default": ""}, *evolved["fields"]]
    schema_id = registry.register(f"vigil-sdk-test-evolved-{uuid.uuid4().hex[:8]}", evolved)
    outcome = OutcomeEvent(model_id="m", prediction_id="p", label="fraud", event_id="o", event_time_ms=1_764_000_000_000)
    buf = io.BytesIO()
    buf.write(confluent_header(schema_id))
    schemaless_writer(buf, parse_schema(evolved), {"source": "crm", "event_id": "o", "prediction_id": "p",
                                                   "model_id": "m", "event_time_ms": 1_764_000_000_000,
                                                   "label": "fraud", "value": None})
    assert decode(buf.getvalue(), registry=registry) == outcome
    assert encode_outcome(outcome, confluent_header(schema_id)) != buf.getvalue()


def test_unknown_ids_and_an_unreachable_registry_are_clear_errors(registry: SchemaRegistry) -> None:
    with pytest.raises(SchemaRegistryError) as unknown:
        registry.schema(2_000_000_000)
    assert (unknown.value.status, unknown.value.retriable) == (404, False)
    with pytest.raises(SchemaRegistryError, match="unreachable") as away:
        VigilProducer("127.0.0.1:9092", wire_format="confluent", schema_registry="http://127.0.0.1:1")
    assert away.value.retriable
    with pytest.raises(ValueError, match="needs schema_registry"):
        VigilProducer("127.0.0.1:9092", wire_format="confluent")
