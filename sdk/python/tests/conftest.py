from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from vigil_sdk import OutcomeEvent, Prediction, PredictionEvent

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = REPO / "schemas"
VECTORS = SCHEMAS / "testdata" / "vectors.json"


def event_from_json(record: str, fields: dict[str, Any]) -> PredictionEvent | OutcomeEvent:
    """A vector's event as the SDK's dataclass (explicit ids and times, as the Rust test wrote them)."""
    if record == "vigil.v1.PredictionEvent":
        fields = dict(fields, prediction=Prediction(**fields["prediction"]))
        return PredictionEvent(**fields)
    assert record == "vigil.v1.OutcomeEvent", record
    return OutcomeEvent(**fields)


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def brokers() -> str:
    return os.environ.get("VIGIL_TEST_KAFKA_BROKERS", "127.0.0.1:9092")
