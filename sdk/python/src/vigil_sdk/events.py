"""Event types of `schemas/prediction.avsc` and `schemas/outcome.avsc`, and the validation that
`crates/vigil-events` applies (same rules, same order, same field names)."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from .errors import InvalidEvent

_getrandbits = random.getrandbits
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version and variant bits
_UUID_SET = (4 << 76) | (0x8000 << 48)  # version 4, RFC 4122 variant

#: Largest event time ClickHouse's `DateTime` (seconds in a UInt32) can hold, in ms.
MAX_EVENT_TIME_MS = (2**32 - 1) * 1000 + 999


def new_id() -> str:
    """A random UUID (version 4) as a string. Drawn from `random` (reseeded in a forked child),
    ten times cheaper than `uuid.uuid4()`; ids deduplicate re-sends, they are no secret."""
    n = _getrandbits(128) & _UUID_CLEAR | _UUID_SET
    h = "%032x" % n
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def now_ms() -> int:
    """The current time in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True, kw_only=True)
class Prediction:
    """What the model returned; a classifier sets `label` and/or `probabilities` or `score`, a
    regressor sets `value`."""

    label: str | None = None
    probabilities: dict[str, float] | None = None
    score: float | None = None
    value: float | None = None


@dataclass(slots=True, kw_only=True)
class PredictionEvent:
    """One model prediction. `prediction_id` and `event_id` default to fresh UUIDs and
    `event_time_ms` to now; pass explicit values to make an event reproducible."""

    model_id: str
    model_version: str
    prediction: Prediction = field(default_factory=Prediction)
    prediction_id: str = field(default_factory=new_id)
    event_id: str = field(default_factory=new_id)
    event_time_ms: int = field(default_factory=now_ms)
    segment: dict[str, str] = field(default_factory=dict)
    numeric_features: dict[str, float] = field(default_factory=dict)
    categorical_features: dict[str, str] = field(default_factory=dict)
    serving_latency_ms: float | None = None


@dataclass(slots=True, kw_only=True)
class OutcomeEvent:
    """The ground truth for the prediction `prediction_id`: a `label`, a `value` or both."""

    model_id: str
    prediction_id: str
    label: str | None = None
    value: float | None = None
    event_id: str = field(default_factory=new_id)
    event_time_ms: int = field(default_factory=now_ms)


def _non_empty(name: str, value: object) -> None:
    if not value:
        reason = "missing_model_id" if name == "model_id" else "missing_field"
        raise InvalidEvent(name, reason, "is empty")
    if not isinstance(value, str):
        raise InvalidEvent(name, "wrong_type", f"is a {type(value).__name__}, not a str")


def _finite(name: str, value: object) -> None:
    if value is None:
        return
    try:
        ok = math.isfinite(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidEvent(name, "wrong_type", f"is a {type(value).__name__}, not a number") from None
    if not ok:
        raise InvalidEvent(name, "non_finite_value", "is not a finite number")


def _event_time(name: str, ms: object) -> None:
    if not isinstance(ms, int) or isinstance(ms, bool):
        raise InvalidEvent(name, "wrong_type", f"is a {type(ms).__name__}, not an int of milliseconds")
    if not 0 <= ms <= MAX_EVENT_TIME_MS:
        raise InvalidEvent(name, "out_of_range", f"is out of range: {ms} ms is not between 1970 and 2106")


def validate_prediction(event: PredictionEvent) -> None:
    """Raises `InvalidEvent` naming the first bad field, in the order vigil-events checks them.
    Feature values may be NaN (a missing value); what the model returned must be finite."""
    _non_empty("model_id", event.model_id)
    _non_empty("model_version", event.model_version)
    _non_empty("prediction_id", event.prediction_id)
    _event_time("event_time_ms", event.event_time_ms)
    p = event.prediction
    _finite("prediction.score", p.score)
    _finite("prediction.value", p.value)
    _finite("serving_latency_ms", event.serving_latency_ms)
    if p.probabilities:
        for cls in sorted(p.probabilities):
            probability = p.probabilities[cls]
            try:
                ok = 0.0 <= probability <= 1.0
            except TypeError:
                raise InvalidEvent(
                    f"prediction.probabilities[{cls}]", "wrong_type", f"is a {type(probability).__name__}, not a number"
                ) from None
            if not ok:
                raise InvalidEvent(
                    f"prediction.probabilities[{cls}]", "out_of_range", f"is out of range: {probability} is not in [0, 1]"
                )


def validate_outcome(event: OutcomeEvent) -> None:
    """Raises `InvalidEvent` naming the first bad field, in the order vigil-events checks them."""
    _non_empty("model_id", event.model_id)
    _non_empty("prediction_id", event.prediction_id)
    _event_time("event_time_ms", event.event_time_ms)
    _finite("value", event.value)
    if event.label is None and event.value is None:
        raise InvalidEvent("label or value", "missing_field", "is empty")
