"""`VigilProducer`: validates and encodes in the caller's thread, hands the bytes to librdkafka's
bounded queue and returns. A full queue drops the event, counts it and raises `QueueFull`: the
serving path never waits on vigil. Mirrors `crates/vigil-sdk`."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, TypeVar, overload

from confluent_kafka import KafkaError, KafkaException, Producer

from .codec import OUTCOME, PREDICTION, confluent_header, encode_outcome, encode_prediction, load_schema_json
from .registry import SchemaRegistry, subject
from .errors import ConfigError, InvalidEvent, KafkaProduceError, ProducerClosed, QueueFull
from .events import OutcomeEvent, Prediction, PredictionEvent, validate_outcome, validate_prediction
from .sampling import sample_point

log = logging.getLogger("vigil_sdk")
#: librdkafka's own log lines, through Python logging.
kafka_log = logging.getLogger("vigil_sdk.kafka")

PREDICTIONS_TOPIC = "vigil.predictions.v1"
OUTCOMES_TOPIC = "vigil.outcomes.v1"
_E = TypeVar("_E", PredictionEvent, OutcomeEvent)
_PREDICTION_KEYS = frozenset(("label", "probabilities", "score", "value"))


@dataclass(frozen=True, slots=True)
class SdkStats:
    """Counters since the producer started."""

    enqueued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped_queue_full: int = 0
    sampled_out: int = 0
    invalid: int = 0


class VigilProducer:
    """Logs predictions and outcomes to Kafka, keyed by model id.

    `queue_capacity` bounds the events held in memory (librdkafka
    `queue.buffering.max.messages`); `linger_ms` is how long librdkafka waits to fill a batch;
    `sample_rate` in (0, 1] is the share of predictions kept, decided per prediction id so a
    kept prediction keeps its outcome; `kafka_config` adds or overrides librdkafka settings.

    `wire_format` is `single_object` (the default: Avro single-object encoding, no registry
    needed) or `confluent` (the Confluent Schema Registry framing: the constructor registers
    vigil's schemas with `schema_registry`, a URL or a `SchemaRegistry`, under subjects named by
    `subject_name_strategy`: `topic`, `record` or `topic_record`).
    """

    def __init__(
        self,
        brokers: str,
        *,
        predictions_topic: str = PREDICTIONS_TOPIC,
        outcomes_topic: str = OUTCOMES_TOPIC,
        queue_capacity: int = 100_000,
        linger_ms: int = 5,
        sample_rate: float = 1.0,
        kafka_config: dict[str, Any] | None = None,
        wire_format: str = "single_object",
        schema_registry: SchemaRegistry | str | None = None,
        subject_name_strategy: str = "topic",
    ) -> None:
        if not (0.0 < sample_rate <= 1.0):
            raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if queue_capacity < 1:
            raise ConfigError(f"queue_capacity must be at least 1, got {queue_capacity}")
        if linger_ms < 0:
            raise ConfigError(f"linger_ms must be at least 0, got {linger_ms}")
        if wire_format not in ("single_object", "confluent"):
            raise ConfigError(f"wire_format must be single_object or confluent, got {wire_format!r}")
        if wire_format == "confluent" and schema_registry is None:
            raise ConfigError("wire_format='confluent' needs schema_registry (a URL or a SchemaRegistry)")
        self.wire_format = wire_format
        self._prediction_header: bytes | None = None
        self._outcome_header: bytes | None = None
        if wire_format == "confluent":
            registry = SchemaRegistry(schema_registry) if isinstance(schema_registry, str) else schema_registry
            # Registered once, before any event: an unreachable registry fails the constructor
            # (SchemaRegistryError), so a caller may fall back to single_object, which needs none.
            self.prediction_schema_id = registry.register(
                subject(subject_name_strategy, predictions_topic, PREDICTION), load_schema_json("prediction"))
            self.outcome_schema_id = registry.register(
                subject(subject_name_strategy, outcomes_topic, OUTCOME), load_schema_json("outcome"))
            self._prediction_header = confluent_header(self.prediction_schema_id)
            self._outcome_header = confluent_header(self.outcome_schema_id)
        self.predictions_topic = predictions_topic
        self.outcomes_topic = outcomes_topic
        self.queue_capacity = queue_capacity
        self.sample_rate = sample_rate
        config: dict[str, Any] = {
            "bootstrap.servers": brokers,
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": linger_ms,
            "queue.buffering.max.messages": queue_capacity,
            # Only failures come back as Python callbacks (a callback per delivered event would
            # cost the caller's thread about a microsecond); delivered is derived in stats().
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
            "logger": kafka_log,
        }
        config.update(kafka_config or {})
        self._lock = threading.Lock()
        self._enqueued = 0
        self._failed = 0
        self._dropped_queue_full = 0
        self._sampled_out = 0
        self._invalid = 0
        self._closed = False
        try:
            self._producer = Producer(config)
        except (KafkaException, ValueError, TypeError) as error:
            raise ConfigError(f"invalid kafka configuration: {error}") from error

    # ---- logging ---------------------------------------------------------------------------

    @overload
    def log_prediction(self, event: PredictionEvent, /) -> str: ...
    @overload
    def log_prediction(self, /, **fields: Any) -> str: ...

    def log_prediction(self, event: PredictionEvent | None = None, /, **fields: Any) -> str:
        """Validates, encodes and enqueues a prediction; never blocks. Returns its prediction id.

        Pass a `PredictionEvent`, or its fields as keywords (`label`, `probabilities`, `score`
        and `value` go into its `Prediction`). Raises `InvalidEvent` (not sent) or `QueueFull`
        (dropped); both are counted.
        """
        if event is None:
            if _PREDICTION_KEYS.intersection(fields):
                prediction = Prediction(**{k: fields.pop(k) for k in _PREDICTION_KEYS if k in fields})
                fields["prediction"] = prediction
            event = PredictionEvent(**fields)
        elif fields:
            raise TypeError("pass either a PredictionEvent or keyword fields, not both")
        if self._sampled(event.prediction_id):
            self._send(self.predictions_topic,
                       self._encode(validate_prediction, encode_prediction, event, self._prediction_header),
                       event.model_id)
        return event.prediction_id

    @overload
    def log_outcome(self, event: OutcomeEvent, /) -> None: ...
    @overload
    def log_outcome(self, /, **fields: Any) -> None: ...

    def log_outcome(self, event: OutcomeEvent | None = None, /, **fields: Any) -> None:
        """Validates, encodes and enqueues an outcome, keyed by model id so it meets its
        prediction; never blocks. Sampled with the same decision as its prediction."""
        if event is None:
            event = OutcomeEvent(**fields)
        elif fields:
            raise TypeError("pass either an OutcomeEvent or keyword fields, not both")
        if self._sampled(event.prediction_id):
            self._send(self.outcomes_topic,
                       self._encode(validate_outcome, encode_outcome, event, self._outcome_header),
                       event.model_id)

    def _sampled(self, prediction_id: str) -> bool:
        if self.sample_rate >= 1.0 or sample_point(prediction_id) < self.sample_rate:
            return True
        with self._lock:
            self._sampled_out += 1
        return False

    def _encode(self, validate: Callable[..., None], encode: Callable[..., bytes], event: _E,
                header: bytes | None) -> bytes:
        try:
            validate(event)
            return encode(event, header)
        except InvalidEvent:
            with self._lock:
                self._invalid += 1
            raise

    def _send(self, topic: str, payload: bytes, key: str) -> None:
        if self._closed:
            raise ProducerClosed("the producer is closed")
        producer = self._producer
        try:
            producer.produce(topic, payload, key)
        except BufferError:
            with self._lock:
                self._dropped_queue_full += 1
            producer.poll(0)
            raise QueueFull(self.queue_capacity) from None
        except KafkaException as error:
            raise KafkaProduceError(error.args[0] if error.args else error) from error
        with self._lock:
            self._enqueued += 1
        # Serves delivery reports (and so frees their queue slots) without waiting.
        producer.poll(0)

    # ---- delivery --------------------------------------------------------------------------

    def _on_delivery(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            with self._lock:
                self._failed += 1

    def _on_error(self, error: KafkaError) -> None:
        log.warning("vigil producer: kafka error: %s", error)

    # ---- control ---------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> int:
        """Waits up to `timeout` seconds until every enqueued event is delivered or failed.
        Returns how many are still in flight (0 when all are done)."""
        return self._producer.flush(timeout)

    def in_flight(self) -> int:
        """Events enqueued and not yet delivered or failed."""
        if not self._closed:
            self._producer.poll(0)
        return len(self._producer)

    def stats(self) -> SdkStats:
        """Counters since the producer started (serves pending delivery reports first).

        `delivered` is `enqueued - failed - in_flight()`: exact once `flush` has returned 0,
        and while events are in flight it may lag by the events other threads are enqueueing."""
        if not self._closed:
            self._producer.poll(0)
        with self._lock:
            in_flight = len(self._producer)
            return SdkStats(
                enqueued=self._enqueued,
                delivered=max(0, self._enqueued - self._failed - in_flight),
                failed=self._failed,
                dropped_queue_full=self._dropped_queue_full,
                sampled_out=self._sampled_out,
                invalid=self._invalid,
            )

    def close(self, timeout: float = 5.0) -> int:
        """Gives queued events up to `timeout` seconds to leave, then drops the rest (counted as
        failed) so closing never hangs. Returns how many were dropped. Idempotent."""
        if self._closed:
            return 0
        left = self._producer.flush(timeout)
        if left:
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.poll(0)
            log.warning("vigil producer closed with %d events unsent", left)
        self._closed = True
        return left

    def __enter__(self) -> VigilProducer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
