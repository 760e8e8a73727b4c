"""Sampling by prediction id: the same decisions as vigil_sdk::sample_point in Rust."""

from __future__ import annotations

from vigil_sdk import Prediction, VigilProducer, fnv1a64, sample_point
from vigil_sdk.sampling import fmix64


def rust_sample_point(prediction_id: str) -> float:
    # crates/vigil-sdk/src/sampling.rs: FNV-1a 64 of the UTF-8 bytes, MurmurHash3 fmix64,
    # (hash >> 11) as f64 / 2^53 -- written out again here, independently of the SDK's code.
    h = 0xCBF29CE484222325
    for b in prediction_id.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) % 2**64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) % 2**64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) % 2**64
    h ^= h >> 33
    return float(h >> 11) / float(1 << 53)


def test_fnv1a_published_vectors() -> None:
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C  # the Rust unit test's vector
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


def test_sample_points_agree_with_the_rust_formula() -> None:
    assert fmix64(0) == 0 and fmix64(1) == 0xB456BCFC34C2CB2C  # the Rust unit test's vectors
    for pid in ["a", "", "req-000123", "p-ü-3", "7f9c2ba4-e88f-4a2b-9d1e-3c1f0d5e6a77", "🚀" * 20]:
        assert sample_point(pid) == rust_sample_point(pid), pid
        assert 0.0 <= sample_point(pid) < 1.0


def test_sample_points_spread_evenly() -> None:
    kept = sum(1 for i in range(100_000) if sample_point(f"pred-{i}") < 0.25)
    assert 24_000 <= kept < 26_000, kept
    kept = sum(1 for i in range(1_000) if sample_point(f"p-{i}") < 0.25)
    assert 200 <= kept < 300, f"short sequential ids: {kept}"


def test_a_prediction_and_its_outcome_share_the_decision() -> None:
    with VigilProducer("127.0.0.1:1", sample_rate=0.5) as producer:
        ids = [f"pred-{i}" for i in range(200)]
        for pid in ids:
            producer.log_prediction(model_id="m", model_version="v1", prediction_id=pid, score=0.5)
            producer.log_outcome(model_id="m", prediction_id=pid, label="yes")
        kept = sum(1 for pid in ids if sample_point(pid) < 0.5)
        stats = producer.stats()
        assert stats.enqueued == 2 * kept
        assert stats.sampled_out == 2 * (len(ids) - kept)
        assert 0 < kept < len(ids)
        producer.close(timeout=0.1)


def test_keyword_api_builds_the_prediction() -> None:
    with VigilProducer("127.0.0.1:1") as producer:
        pid = producer.log_prediction(model_id="m", model_version="v1", label="cat", probabilities={"cat": 0.9}, score=0.9)
        assert pid and producer.stats().enqueued == 1
        assert Prediction(label="cat").label == "cat"
        producer.close(timeout=0.1)
