"""Validation at the call site: the rules and field names of crates/vigil-events."""

from __future__ import annotations

import math
from typing import Any

import pytest

from vigil_sdk import (
    ConfigError,
    InvalidEvent,
    OutcomeEvent,
    Prediction,
    PredictionEvent,
    VigilProducer,
    validate_outcome,
    validate_prediction,
)
from vigil_sdk.codec import encode_prediction
from vigil_sdk.events import MAX_EVENT_TIME_MS


def prediction(**overrides: Any) -> PredictionEvent:
    fields: dict[str, Any] = dict(event_id="e", prediction_id="p", model_id="m", model_version="v1", event_time_ms=1)
    fields.update(overrides)
    return PredictionEvent(**fields)


def outcome(**overrides: Any) -> OutcomeEvent:
    fields: dict[str, Any] = dict(event_id="e", prediction_id="p", model_id="m", event_time_ms=1, label="yes")
    fields.update(overrides)
    return OutcomeEvent(**fields)


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        (prediction(model_id=""), "model_id", "missing_model_id"),
        (prediction(model_version=""), "model_version", "missing_field"),
        (prediction(prediction_id=""), "prediction_id", "missing_field"),
        (prediction(event_time_ms=-1), "event_time_ms", "out_of_range"),
        (prediction(event_time_ms=MAX_EVENT_TIME_MS + 1), "event_time_ms", "out_of_range"),
        (prediction(prediction=Prediction(score=math.nan)), "prediction.score", "non_finite_value"),
        (prediction(prediction=Prediction(value=math.inf)), "prediction.value", "non_finite_value"),
        (prediction(serving_latency_ms=-math.inf), "serving_latency_ms", "non_finite_value"),
        (prediction(prediction=Prediction(probabilities={"a": 0.5, "b": 1.5})), "prediction.probabilities[b]", "out_of_range"),
        (prediction(prediction=Prediction(probabilities={"a": -0.1})), "prediction.probabilities[a]", "out_of_range"),
        (prediction(prediction=Prediction(probabilities={"a": math.nan})), "prediction.probabilities[a]", "out_of_range"),
        (prediction(event_time_ms=1.5), "event_time_ms", "wrong_type"),
        (prediction(model_id=7), "model_id", "wrong_type"),
        (prediction(prediction=Prediction(score="high")), "prediction.score", "wrong_type"),
    ],
)
def test_invalid_predictions_name_the_field(event: PredictionEvent, field: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        validate_prediction(event)
    assert (caught.value.field, caught.value.reason) == (field, reason)
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        (outcome(model_id=""), "model_id", "missing_model_id"),
        (outcome(prediction_id=""), "prediction_id", "missing_field"),
        (outcome(event_time_ms=2**40 * 1000), "event_time_ms", "out_of_range"),
        (outcome(value=math.nan), "value", "non_finite_value"),
        (outcome(label=None, value=None), "label or value", "missing_field"),
    ],
)
def test_invalid_outcomes_name_the_field(event: OutcomeEvent, field: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        validate_outcome(event)
    assert (caught.value.field, caught.value.reason) == (field, reason)


def test_rules_are_checked_in_the_rust_order() -> None:
    # model_id first, as vigil-events does, so both SDKs report the same field
    with pytest.raises(InvalidEvent, match="model_id"):
        validate_prediction(prediction(model_id="", model_version="", event_time_ms=-1))


def test_valid_edges_pass() -> None:
    validate_prediction(prediction(event_time_ms=0))
    validate_prediction(prediction(event_time_ms=MAX_EVENT_TIME_MS))
    validate_prediction(prediction(numeric_features={"x": math.nan, "y": math.inf}))  # features may be NaN
    validate_prediction(prediction(prediction=Prediction(probabilities={"a": 0.0, "b": 1.0})))
    validate_outcome(outcome(label=None, value=-3.0))
    validate_outcome(outcome(label="", value=None))  # an empty label is a label


def test_wrong_types_in_maps_name_the_field() -> None:
    with pytest.raises(InvalidEvent) as caught:
        encode_prediction(prediction(numeric_features={"amount": "12"}))
    assert (caught.value.field, caught.value.reason) == ("numeric_features[amount]", "wrong_type")
    with pytest.raises(InvalidEvent) as caught:
        encode_prediction(prediction(segment={"country": None}))
    assert caught.value.field == "segment[country]"


def test_the_producer_refuses_and_counts_invalid_events_before_sending() -> None:
    with VigilProducer("127.0.0.1:1") as producer:
        with pytest.raises(InvalidEvent):
            producer.log_prediction(prediction(model_id=""))
        with pytest.raises(InvalidEvent):
            producer.log_outcome(outcome(label=None))
        with pytest.raises(InvalidEvent):
            producer.log_prediction(prediction(numeric_features={"x": object()}))
        stats = producer.stats()
        assert (stats.invalid, stats.enqueued) == (3, 0)


@pytest.mark.parametrize(
    "settings", [dict(sample_rate=0.0), dict(sample_rate=1.5), dict(queue_capacity=0), dict(linger_ms=-1),
                 dict(kafka_config={"no.such.setting": 1})]
)
def test_bad_settings_are_refused_before_connecting(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        VigilProducer("127.0.0.1:1", **settings)
