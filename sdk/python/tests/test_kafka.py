"""Against the real broker at VIGIL_TEST_KAFKA_BROKERS (deploy/local/up starts one): a fresh
topic per test; what the SDK logs is read back, byte for byte."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro import schemaless_reader

from vigil_sdk import OutcomeEvent, Prediction, PredictionEvent, QueueFull, VigilProducer, decode
from vigil_sdk.codec import HEADER_LEN, PREDICTION, SCHEMAS, encode_outcome, encode_prediction


@pytest.fixture(scope="module")
def admin(brokers: str) -> AdminClient:
    client = AdminClient({"bootstrap.servers": brokers, "socket.timeout.ms": 3000})
    try:
        client.list_topics(timeout=5)
    except KafkaException as error:
        pytest.fail(f"no Kafka broker at {brokers} (start one with deploy/local/up): {error}")
    return client


@pytest.fixture
def topics(admin: AdminClient, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    suffix = f"{request.node.name}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
    names = (f"vigil-sdk-test.predictions.{suffix}", f"vigil-sdk-test.outcomes.{suffix}")
    for future in admin.create_topics([NewTopic(n, num_partitions=3, replication_factor=1) for n in names]).values():
        future.result(timeout=10)
    yield names
    for future in admin.delete_topics(list(names)).values():
        try:
            future.result(timeout=10)
        except KafkaException:
            pass


def consume(brokers: str, topic: str, expected: int, timeout: float = 15.0) -> list:
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"vigil-sdk-test-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                assert message.error() is None, message.error()
                messages.append(message)
        # anything beyond the expected count would be a duplicate
        messages.extend(m for m in consumer.consume(num_messages=1000, timeout=0.5) if m.error() is None)
    finally:
        consumer.close()
    return messages


def test_logged_events_arrive_keyed_by_model_and_decode_to_themselves(brokers: str, topics: tuple[str, str]) -> None:
    predictions_topic, outcomes_topic = topics
    n = 500
    sent_predictions: dict[str, PredictionEvent] = {}
    sent_outcomes: dict[str, OutcomeEvent] = {}
    with VigilProducer(brokers, predictions_topic=predictions_topic, outcomes_topic=outcomes_topic) as producer:
        for i in range(n):
            event = PredictionEvent(
                model_id=f"model-{i % 3}",
                model_version="v1",
                segment={"country": ["DE", "FR", "日本"][i % 3]},
                numeric_features={f"f{j:02d}": i / (j + 1) for j in range(20)},
                categorical_features={"device": "ios"},
                prediction=Prediction(label="fraud" if i % 2 else "legit", probabilities={"fraud": 0.25, "legit": 0.75}),
                serving_latency_ms=1.5,
            )
            assert producer.log_prediction(event) == event.prediction_id
            sent_predictions[event.event_id] = event
            outcome = OutcomeEvent(model_id=event.model_id, prediction_id=event.prediction_id, label="fraud")
            producer.log_outcome(outcome)
            sent_outcomes[outcome.event_id] = outcome
        assert producer.flush(10.0) == 0
        stats = producer.stats()
    assert (stats.enqueued, stats.delivered, stats.failed, stats.dropped_queue_full) == (2 * n, 2 * n, 0, 0)

    parsed = SCHEMAS[PREDICTION].parsed
    received = consume(brokers, predictions_topic, n)
    assert len(received) == n
    prediction_partitions = {m.key(): m.partition() for m in received}
    for message in received:
        value = message.value()
        event = decode(value)
        assert isinstance(event, PredictionEvent)
        sent = sent_predictions.pop(event.event_id)
        assert event == sent
        assert message.key() == sent.model_id.encode()
        assert value == encode_prediction(sent)
        # plain fastavro after the 10-byte single-object header reads the same record
        body = io.BytesIO(value[HEADER_LEN:])
        record = schemaless_reader(body, parsed, None)
        assert record["prediction_id"] == sent.prediction_id and record["numeric_features"] == sent.numeric_features
    assert not sent_predictions

    received = consume(brokers, outcomes_topic, n)
    assert len(received) == n
    # co-partitioned: a model's outcomes land on the partition number of its predictions
    assert {m.key(): m.partition() for m in received} == prediction_partitions
    for message in received:
        event = decode(message.value())
        assert isinstance(event, OutcomeEvent)
        sent_outcome = sent_outcomes.pop(event.event_id)
        assert event == sent_outcome and message.key() == sent_outcome.model_id.encode()
        assert message.value() == encode_outcome(sent_outcome)
    assert not sent_outcomes


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    producer = VigilProducer("127.0.0.1:1", queue_capacity=10, kafka_config={"log_level": 0})
    dropped = 0
    start = time.monotonic()
    for i in range(1000):
        try:
            producer.log_prediction(model_id="m", model_version="v1", prediction_id=f"p-{i}", score=0.5)
        except QueueFull as error:
            assert error.capacity == 10
            dropped += 1
    elapsed = time.monotonic() - start
    stats = producer.stats()
    assert elapsed < 1.0, f"1000 calls took {elapsed:.2f}s against an unreachable broker"
    assert (stats.enqueued, stats.dropped_queue_full, dropped) == (10, 990, 990)
    assert producer.in_flight() == 10
    start = time.monotonic()
    assert producer.close(timeout=0.2) == 10
    assert time.monotonic() - start < 2.0
    assert producer.stats().failed == 10  # purged on close, counted as failed
