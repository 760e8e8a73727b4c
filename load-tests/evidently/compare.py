#!/usr/bin/env python3
"""Side by side: Evidently's DataDriftPreset and vigil-stats on the same data.

Generates a reference and a current data set (100,000 rows x 20 mixed columns, some shifted,
fixed seed), runs Evidently 0.7.23's DataDriftPreset on them in memory, runs vigil's offline
engine (`cargo run --release -p vigil-offline --example drift -- --json`) on the same data as CSV,
and prints a Markdown table with both verdicts, both statistics and both run times.

    python -m venv .venv && .venv/bin/pip install -r requirements.txt
    .venv/bin/python compare.py [--rows 100000] [--out report.md]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from importlib.metadata import version

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def make_data(rows, seed=20261126):
    rng = np.random.default_rng(seed)
    ref, cur = {}, {}
    # Numeric columns: (name, reference sampler, current sampler, what changed)
    numeric = [
        ("n00_mean_shift", lambda n: rng.normal(0, 1, n), lambda n: rng.normal(0.3, 1, n)),
        ("n01_scale", lambda n: rng.normal(0, 1, n), lambda n: rng.normal(0, 1.5, n)),
        ("n02_small_shift", lambda n: rng.normal(0, 1, n), lambda n: rng.normal(0.05, 1, n)),
        ("n03_lognormal_shift", lambda n: rng.lognormal(0, 1, n), lambda n: rng.lognormal(0.15, 1, n)),
        ("n04_heavy_tail", lambda n: rng.standard_t(2, n), lambda n: rng.standard_t(2, n)),
        ("n05_integer_ages", lambda n: rng.integers(18, 90, n), lambda n: rng.integers(18, 90, n)),
        ("n06_stable", lambda n: rng.uniform(0, 100, n), lambda n: rng.uniform(0, 100, n)),
        ("n07_stable", lambda n: rng.gamma(2, 2, n), lambda n: rng.gamma(2, 2, n)),
        ("n08_tail_grows", lambda n: rng.exponential(1, n), lambda n: np.where(rng.random(n) < 0.05, rng.exponential(10, n), rng.exponential(1, n))),
        ("n09_stable", lambda n: rng.normal(1000, 50, n), lambda n: rng.normal(1000, 50, n)),
        ("n10_shift_0_12", lambda n: rng.normal(0, 1, n), lambda n: rng.normal(0.12, 1, n)),
        ("n11_stable", lambda n: rng.beta(2, 5, n), lambda n: rng.beta(2, 5, n)),
        ("n12_bimodal_mix", lambda n: np.where(rng.random(n) < 0.5, rng.normal(-2, 1, n), rng.normal(2, 1, n)),
         lambda n: np.where(rng.random(n) < 0.6, rng.normal(-2, 1, n), rng.normal(2, 1, n))),
        ("n13_stable", lambda n: rng.normal(0, 10, n), lambda n: rng.normal(0, 10, n)),
    ]
    for name, r, c in numeric:
        ref[name], cur[name] = np.round(r(rows), 6), np.round(c(rows), 6)
    cats = ["alpha", "beta", "gamma", "delta", "epsilon"]
    categorical = [
        ("c00_mix_shift", [.4, .3, .15, .1, .05], [.2, .3, .25, .15, .1]),
        ("c01_mild_shift", [.4, .3, .15, .1, .05], [.37, .31, .16, .11, .05]),
        ("c02_stable", [.2, .2, .2, .2, .2], [.2, .2, .2, .2, .2]),
        ("c03_new_category", [.25, .25, .25, .25, 0], [.22, .22, .22, .22, .12]),
    ]
    for name, p, q in categorical:
        ref[name] = rng.choice(cats, rows, p=p)
        cur[name] = rng.choice(cats, rows, p=q)
    ref["b00_rate_up"], cur["b00_rate_up"] = (rng.random(rows) < 0.30).astype(int), (rng.random(rows) < 0.36).astype(int)
    ref["b01_tiny_change"], cur["b01_tiny_change"] = (rng.random(rows) < 0.50).astype(int), (rng.random(rows) < 0.51).astype(int)
    return pd.DataFrame(ref), pd.DataFrame(cur)


def run_evidently(ref, cur):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [c for c in ref.columns if c.startswith("n")]
    categorical = [c for c in ref.columns if not c.startswith("n")]
    dd = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(cur, data_definition=dd),
        reference_data=Dataset.from_pandas(ref, data_definition=dd),
    )
    elapsed = time.perf_counter() - start
    out = {}
    for m in snapshot.dict()["metrics"]:
        cfg = m["config"]
        if cfg.get("type", "").endswith("ValueDrift"):
            method, threshold, value = cfg["method"], cfg["threshold"], float(m["value"])
            p_value_test = "p_value" in method or "test" in method.lower() and "distance" not in method.lower()
            drifted = value < threshold if p_value_test else value >= threshold
            out[cfg["column"]] = {"method": method, "value": value, "threshold": threshold, "drifted": drifted}
    return out, elapsed


def run_vigil(ref, cur):
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vigil-offline", "--example", "drift"],
                   cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = target / "release" / "examples" / "drift"
    with tempfile.TemporaryDirectory() as tmp:
        rp, cp = Path(tmp) / "reference.csv", Path(tmp) / "current.csv"
        ref.to_csv(rp, index=False)
        cur.to_csv(cp, index=False)
        start = time.perf_counter()
        proc = subprocess.run([str(binary), str(rp), str(cp), "--json"], capture_output=True, text=True, check=True)
        elapsed = time.perf_counter() - start
    report = json.loads(proc.stdout)
    return {c["column"]: c for c in report["columns"]}, elapsed


def same_statistic(e, v):
    """Relative difference where both computed the same quantity (vigil's Jensen-Shannon is base 2,
    Evidently's natural-log, so vigil's is rescaled by sqrt(ln 2) first)."""
    if v["test"] == "wasserstein_normed" and "Wasserstein" in e["method"]:
        ours = v["statistic"]
    elif v["test"] == "jensen_shannon" and "Jensen" in e["method"]:
        ours = v["statistic"] * np.sqrt(np.log(2))
    else:
        return "n/a (different tests)"
    return f"{abs(ours - e['value']) / max(abs(e['value']), 1e-300):.1e}"


def fmt(x):
    if x is None:
        return "-"
    return f"{x:.3e}" if x != 0 and abs(x) < 1e-3 else f"{x:.4f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    ref, cur = make_data(a.rows)
    ev, ev_time = run_evidently(ref, cur)
    vg, vg_time = run_vigil(ref, cur)
    lines = [
        f"{a.rows:,} rows x {len(ref.columns)} columns per side; evidently {version('evidently')}, "
        f"pandas {pd.__version__}, numpy {np.__version__}.",
        "",
        "| column | Evidently test | Evidently value | Evidently drift | vigil test | vigil statistic | vigil p-value | vigil drift | agree | same statistic: rel. diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    agree = 0
    for col in ref.columns:
        e, v = ev[col], vg[col]
        same = e["drifted"] == v["drifted"]
        agree += same
        lines.append(
            f"| {col} | {e['method']} | {fmt(e['value'])} | {'yes' if e['drifted'] else 'no'} | {v['test']} | "
            f"{fmt(v['statistic'])} | {fmt(v['p_value'])} | {'yes' if v['drifted'] else 'no'} | {'yes' if same else '**no**'} | "
            f"{same_statistic(e, v)} |"
        )
    lines += [
        "",
        f"Verdicts agree on {agree} of {len(ref.columns)} columns.",
        f"Evidently DataDriftPreset run (DataFrames in memory): {ev_time:.2f} s.",
        f"vigil offline engine (process start, CSV parsing and all tests): {vg_time:.2f} s.",
    ]
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
