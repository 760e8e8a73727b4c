"""Deterministic sampling by prediction id, identical to `vigil_sdk::sample_point` in Rust."""

from __future__ import annotations

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = 0xFFFFFFFFFFFFFFFF


def fnv1a64(data: bytes) -> int:
    """FNV-1a, 64 bits."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return h


def sample_point(prediction_id: str) -> float:
    """Where a prediction id falls in [0, 1): the top 53 bits of FNV-1a 64 of its UTF-8 bytes.
    Every SDK, process and restart keeps the same predictions, and their outcomes with them."""
    return (fnv1a64(prediction_id.encode("utf-8")) >> 11) / 9007199254740992.0  # 2**53
