"""vigil producer SDK: log ML predictions and outcomes to Kafka as Avro, byte-identical to the
Rust SDK (`crates/vigil-sdk`), without blocking the serving path."""

from .codec import confluent_header, decode, encode_outcome, encode_prediction, fingerprint
from .errors import (
    ConfigError,
    InvalidEvent,
    KafkaProduceError,
    ProducerClosed,
    QueueFull,
    SchemaRegistryError,
    VigilError,
)
from .events import OutcomeEvent, Prediction, PredictionEvent, validate_outcome, validate_prediction
from .producer import OUTCOMES_TOPIC, PREDICTIONS_TOPIC, SdkStats, VigilProducer
from .registry import SchemaRegistry, subject
from .sampling import fnv1a64, sample_point

__all__ = [
    "OUTCOMES_TOPIC",
    "PREDICTIONS_TOPIC",
    "ConfigError",
    "InvalidEvent",
    "KafkaProduceError",
    "OutcomeEvent",
    "Prediction",
    "PredictionEvent",
    "ProducerClosed",
    "QueueFull",
    "SchemaRegistry",
    "SchemaRegistryError",
    "SdkStats",
    "VigilError",
    "VigilProducer",
    "confluent_header",
    "decode",
    "encode_outcome",
    "encode_prediction",
    "fingerprint",
    "fnv1a64",
    "sample_point",
    "subject",
    "validate_outcome",
    "validate_prediction",
]
__version__ = "0.1.0"
