"""Every ```python example of README.md runs, against the real broker (VIGIL_TEST_KAFKA_BROKERS)
and Schema Registry (VIGIL_TEST_SCHEMA_REGISTRY_URL) on fresh topics, so the README cannot name
a function or an argument the SDK does not have."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
from test_kafka import admin, topics  # noqa: F401  (fixtures)

import vigil_sdk

README = Path(__file__).resolve().parents[1] / "README.md"
REGISTRY_URL = os.environ.get("VIGIL_TEST_SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7")
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, brokers: str, topics: tuple[str, str],  # noqa: F811
                             monkeypatch: pytest.MonkeyPatch) -> None:
    predictions_topic, outcomes_topic = topics
    code = BLOCKS[index]
    code = code.replace('"127.0.0.1:9092"', repr(brokers))
    code = code.replace('"http://127.0.0.1:8081/apis/ccompat/v7"', repr(REGISTRY_URL))
    real = vigil_sdk.VigilProducer

    class OnTestTopics(real):  # type: ignore[misc, valid-type]
        def __init__(self, brokers: str, **settings):  # noqa: ANN003
            settings.setdefault("predictions_topic", predictions_topic)
            settings.setdefault("outcomes_topic", outcomes_topic)
            super().__init__(brokers, **settings)

    monkeypatch.setattr(vigil_sdk, "VigilProducer", OnTestTopics)
    namespace: dict[str, object] = {"__name__": f"readme_example_{index}_{uuid.uuid4().hex[:6]}"}
    if "except QueueFull" in code and "vigil" not in code.split("try:")[0]:
        # The drop-policy snippet uses a producer and an event from the example before it.
        namespace["vigil"] = OnTestTopics(brokers)
        namespace["event"] = vigil_sdk.PredictionEvent(model_id="m", model_version="v1")
        namespace["QueueFull"] = vigil_sdk.QueueFull
    try:
        exec(compile(code, f"README.md example {index}", "exec"), namespace)
    finally:
        producer = namespace.get("vigil")
        if isinstance(producer, real):
            producer.close(5.0)
