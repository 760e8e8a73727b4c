"""The shared vectors in schemas/testdata/vectors.json, written by the Rust codec
(crates/vigil-events/tests/vectors.rs): every event must encode to exactly its bytes."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from conftest import SCHEMAS, VECTORS, event_from_json
from vigil_sdk import OutcomeEvent, Prediction, PredictionEvent, decode, encode_outcome, encode_prediction
from vigil_sdk.codec import HEADER_LEN, SCHEMAS as SDK_SCHEMAS, encode_with_fastavro, fingerprint, load_schema_json

CASES = json.loads(VECTORS.read_text(encoding="utf-8"))["cases"]


def encode(event: PredictionEvent | OutcomeEvent) -> bytes:
    return encode_prediction(event) if isinstance(event, PredictionEvent) else encode_outcome(event)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_every_vector_encodes_to_the_rust_bytes(case: dict[str, Any]) -> None:
    event = event_from_json(case["record"], case["event"])
    assert encode(event).hex() == case["hex"]
    assert encode_with_fastavro(event).hex() == case["hex"]
    assert decode(bytes.fromhex(case["hex"])) == event


def test_packaged_schemas_equal_the_repository_schemas() -> None:
    for name in ("prediction", "outcome"):
        assert load_schema_json(name) == json.loads((SCHEMAS / f"{name}.avsc").read_text(encoding="utf-8")), (
            f"sdk/python/src/vigil_sdk/schemas/{name}.avsc differs from schemas/{name}.avsc: "
            f"cp schemas/{name}.avsc sdk/python/src/vigil_sdk/schemas/"
        )


def test_fingerprints_match_the_rust_sdk(vectors: dict[str, Any]) -> None:
    for full_name, expected in vectors["fingerprints"].items():
        file = full_name.split(".")[-1].removesuffix("Event").lower() + ".avsc"
        schema = json.loads((SCHEMAS / file).read_text(encoding="utf-8"))
        assert f"{fingerprint(schema):016x}" == expected, full_name
    for full_name, schema in SDK_SCHEMAS.items():
        assert f"{schema.fingerprint:016x}" == vectors["fingerprints"][full_name]


def test_fingerprints_are_the_avro_specification_ones() -> None:
    # Checked against fastavro's canonical form, an implementation independent of apache-avro
    # (which computes the Rust side's fingerprints).
    for file in sorted(SCHEMAS.glob("*.avsc")):
        schema = json.loads(file.read_text(encoding="utf-8"))
        assert '"logicalType"' not in to_parsing_canonical_form(schema), file.name
        digest = fastavro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
        assert fingerprint(schema) == int.from_bytes(bytes.fromhex(digest), "little"), file.name


def _random_text(rng: random.Random) -> str:
    alphabet = "abcXYZ09-_. éüßø日本🚀\u0000\u007f\u0080\uffff"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))


def _random_double(rng: random.Random) -> float:
    return rng.choice([0.0, -0.0, 1.0, -1.5, 5e-324, 1.7976931348623157e308, rng.uniform(-1e9, 1e9), rng.random()])


def test_the_fast_encoder_writes_what_fastavro_writes_for_random_events() -> None:
    rng = random.Random(7)
    for i in range(500):
        def some(make: Any) -> Any:
            return make() if rng.random() < 0.5 else None

        probabilities = some(lambda: {_random_text(rng): rng.random() for _ in range(rng.randrange(0, 4))})
        event = PredictionEvent(
            event_id=_random_text(rng),
            prediction_id=_random_text(rng),
            model_id=_random_text(rng),
            model_version=_random_text(rng),
            event_time_ms=rng.choice([0, 1, 63, 64, 8191, 8192, 1_764_190_245_123, 4_294_967_295_999, -1, -(2**63), 2**63 - 1]),
            segment={_random_text(rng): _random_text(rng) for _ in range(rng.randrange(0, 5))},
            numeric_features={_random_text(rng): _random_double(rng) for _ in range(rng.randrange(0, 30))},
            categorical_features={_random_text(rng): _random_text(rng) for _ in range(rng.randrange(0, 5))},
            prediction=Prediction(
                label=some(lambda: _random_text(rng)),
                probabilities=probabilities,
                score=some(lambda: _random_double(rng)),
                value=some(lambda: _random_double(rng)),
            ),
            serving_latency_ms=some(lambda: _random_double(rng)),
        )
        assert encode_prediction(event) == encode_with_fastavro(event), i
        assert decode(encode_prediction(event)) == event, i
        outcome = OutcomeEvent(
            event_id=_random_text(rng),
            prediction_id=_random_text(rng),
            model_id=_random_text(rng),
            event_time_ms=event.event_time_ms,
            label=some(lambda: _random_text(rng)),
            value=some(lambda: _random_double(rng)),
        )
        assert encode_outcome(outcome) == encode_with_fastavro(outcome), i


def test_nan_features_are_encoded_as_nan() -> None:
    event = PredictionEvent(event_id="e", prediction_id="p", model_id="m", model_version="1", event_time_ms=0,
                            numeric_features={"x": math.nan})
    data = encode_prediction(event)
    assert data == encode_with_fastavro(event)
    assert math.isnan(decode(data).numeric_features["x"])  # type: ignore[union-attr]


def test_maps_are_sorted_by_utf8_bytes_whatever_the_insertion_order() -> None:
    keys = ["b", "a", "é", "z", "日", "🚀", "", "A", "\uffff"]
    forward = PredictionEvent(event_id="e", prediction_id="p", model_id="m", model_version="1", event_time_ms=0,
                              numeric_features={k: 1.0 for k in keys})
    backward = PredictionEvent(event_id="e", prediction_id="p", model_id="m", model_version="1", event_time_ms=0,
                               numeric_features={k: 1.0 for k in reversed(keys)})
    assert encode_prediction(forward) == encode_prediction(backward)
    # code point order is UTF-8 byte order (Rust's BTreeMap<String, _>)
    assert sorted(keys) == [k for k in sorted(keys, key=lambda k: k.encode("utf-8"))]


def test_decode_refuses_foreign_bytes() -> None:
    with pytest.raises(ValueError, match="c3 01"):
        decode(b"{}")
    with pytest.raises(ValueError, match="unknown schema fingerprint"):
        decode(b"\xc3\x01" + bytes(8) + b"\x00")
    good = bytes.fromhex(CASES[0]["hex"])
    assert len(good) > HEADER_LEN
    with pytest.raises(ValueError, match="left after"):
        decode(good + b"\x00")


def test_the_uncached_paths_write_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from vigil_sdk import codec

    cached = [encode_prediction(event_from_json(c["record"], c["event"])) for c in CASES if "Prediction" in c["record"]]
    monkeypatch.setattr(codec, "_LAYOUTS_MAX", 0)
    monkeypatch.setattr(codec, "_CACHE_MAX", 0)
    monkeypatch.setattr(codec, "_map_layouts", {})
    monkeypatch.setattr(codec, "_string_maps", {})
    monkeypatch.setattr(codec, "_cached_strings", {})
    uncached = [encode_prediction(event_from_json(c["record"], c["event"])) for c in CASES if "Prediction" in c["record"]]
    assert uncached == cached
    assert [b.hex() for b in uncached] == [c["hex"] for c in CASES if "Prediction" in c["record"]]
