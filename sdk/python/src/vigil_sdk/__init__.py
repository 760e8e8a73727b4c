"""vigil producer SDK: log ML predictions and outcomes to Kafka as Avro, byte-identical to the
Rust SDK (`crates/vigil-sdk`), without blocking the serving path."""

from .codec import decode, encode_outcome, encode_prediction, fingerprint
from .errors import ConfigError, InvalidEvent, KafkaProduceError, ProducerClosed, QueueFull, VigilError
from .events import OutcomeEvent, Prediction, PredictionEvent, validate_outcome, validate_prediction
from .producer import OUTCOMES_TOPIC, PREDICTIONS_TOPIC, SdkStats, VigilProducer
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
    "SdkStats",
    "VigilError",
    "VigilProducer",
    "decode",
    "encode_outcome",
    "encode_prediction",
    "fingerprint",
    "fnv1a64",
    "sample_point",
    "validate_outcome",
    "validate_prediction",
]
__version__ = "0.1.0"
