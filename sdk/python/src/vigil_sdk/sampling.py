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


def fmix64(h: int) -> int:
    """MurmurHash3's 64-bit finalizer: every input bit flips each output bit with probability ~1/2."""
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK
    return h ^ (h >> 33)


def sample_point(prediction_id: str) -> float:
    """Where a prediction id falls in [0, 1): FNV-1a 64 of its UTF-8 bytes, then fmix64, top 53
    bits. Every SDK, process and restart keeps the same predictions, and their outcomes with them.
    The finalizer keeps ids that differ only in their last characters (`req-1`, `req-2`, ...) at
    the configured rate: FNV-1a's top bits barely change there."""
    return (fmix64(fnv1a64(prediction_id.encode("utf-8"))) >> 11) / 9007199254740992.0  # 2**53
