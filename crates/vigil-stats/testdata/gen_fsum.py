#!/usr/bin/env python3
"""Writes the golden vectors for vigil-stats' exact sums (`ExactSum`), from Python's `math.fsum`.

Standard library only (no numpy): run from anywhere with any Python 3.8+:  python gen_fsum.py
Output: golden/fsum.json next to this script. Deterministic (fixed seeds). Floats are written
with `repr`, which round-trips exactly; only finite sums without intermediate overflow (where
`math.fsum` raises) are kept.
"""
import json
import math
import platform
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "golden"
rng = random.Random(20261127)


def wide(n, lo=-300, hi=300):
    """`n` values with random signs, mantissas and decimal exponents in [lo, hi]."""
    return [rng.choice((-1.0, 1.0)) * rng.random() * 10.0 ** rng.randint(lo, hi) for _ in range(n)]


def cases():
    tiny = 2.0 ** -1074
    yield "cancel_1e16", [1e16, 1.0, -1e16]
    yield "cancel_nested", [1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50]
    yield "tenths", [0.1] * 10
    yield "half_even_across_partials", [1e-16, 1.0, 1e16]
    yield "tie_rounds_to_even", [1.0, 2.0 ** -53]
    yield "tie_broken_by_tiny", [1.0, 2.0 ** -53, 2.0 ** -105]
    yield "tie_broken_below", [1.0, 2.0 ** -53, -(2.0 ** -105)]
    yield "two53_minus", [2.0 ** 53, -0.5, -(2.0 ** -54)]
    yield "two53_plus", [2.0 ** 53, 1.0, 2.0 ** -100]
    yield "two53_minus4", [2.0 ** 53 - 4.0, 0.5, 2.0 ** -54]
    yield "cancel_to_zero", [1e16 - 2.0, 1.0 - 2.0 ** -53, -(1e16 - 2.0), -(1.0 - 2.0 ** -53)]
    yield "harmonic_1000", [1.0 / n for n in range(1, 1001)]
    yield "alternating_harmonic_1000", [(-1.0) ** n / n for n in range(1, 1001)]
    yield "telescoping_powers", [1.7 ** (i + 1) - 1.7 ** i for i in range(500)] + [-(1.7 ** 500)]
    yield "huge_then_many_tiny", [1e20] + [1e-3] * 3000 + [-1e20]
    yield "many_tiny_then_huge", [1e-3] * 3000 + [1e20, -1e20, 3.0]
    yield "subnormals", [tiny, -tiny * 3, 2.0 ** -1022, tiny * 5, -(2.0 ** -1022)]
    yield "near_max_cancelling", [1e307, 1.0, -1e307, 1e307, -1e307, 2.5]
    yield "wide_exponents_1000", wide(1000)
    yield "wide_exponents_cancelling", (lambda xs: xs + [-x for x in xs[: len(xs) // 2]] + [1.0])(wide(400))
    yield "unit_scale_1500", [rng.gauss(0.0, 1.0) for _ in range(1500)]
    yield "offset_squares", [x * x for x in (1e9 + rng.random() for _ in range(2000))]
    yield "log_losses", [-math.log(max(rng.random(), 2.0 ** -52)) for _ in range(1500)]


def main():
    out = []
    for name, xs in cases():
        xs = [float(x) for x in xs]
        assert all(math.isfinite(x) for x in xs), name
        out.append({"name": name, "values": xs, "fsum": math.fsum(xs)})
    OUT.mkdir(exist_ok=True)
    meta = {"python": platform.python_version()}
    with open(OUT / "fsum.json", "w") as f:
        json.dump({"generated_with": meta, "cases": out}, f, separators=(",", ":"))
        f.write("\n")
    print(f"fsum.json: {(OUT / 'fsum.json').stat().st_size} bytes")


if __name__ == "__main__":
    main()
