#!/usr/bin/env python3
"""Side by side: Evidently's DataDriftPreset and `vigil drift`, end to end, on the same files.

Generates a reference and a current data set (356,000 rows x 50 mixed columns by default, some
shifted, fixed seed) and writes each as CSV and as Parquet under --data-dir (about 284 MB per CSV
file: keep it out of the repository, /tmp by default). Then, in one run:

- Evidently 0.7.23's DataDriftPreset, in a fresh Python process: read both CSV files with
  pandas, run the report, take each column's verdict;
- `vigil drift` (the release binary) on the same two CSV files, and on the Parquet files;

each timed as a whole process (wall clock and peak RSS from `/usr/bin/time -v`), and prints a
Markdown table with both verdicts and statistics per column, both times and their ratio.

Both tools run the same test on every column: Evidently's choice for references over 1,000 rows
(normed Wasserstein for numeric columns, Jensen-Shannon for categorical ones). vigil picks the same
for numeric and categorical columns by itself; for the two-valued columns, where vigil's default
is the two-proportion Z-test, the script passes `--test NAME=jensen_shannon`.

    python3.11 -m venv .venv && .venv/bin/pip install -r load-tests/evidently/requirements.txt
    cargo build --release -p vigil
    .venv/bin/python load-tests/evidently/compare.py [--rows 356000] [--out report.md]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CATS = ["alpha", "beta", "gamma", "delta", "epsilon"]
# Issue 14: `vigil drift` end to end from CSV at least this many times faster than Evidently.
TARGET_RATIO = 30


def make_data(rows, seed=20261206):
    """50 columns: 36 numeric (n*), 10 categorical (c*), 4 binary 0/1 (b*). Names say what changed."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ref, cur = {}, {}
    families = [
        ("normal", lambda n, s: rng.normal(s, 1, n)),
        ("scale", lambda n, s: rng.normal(0, 1 + 5 * s, n)),
        ("lognormal", lambda n, s: rng.lognormal(s, 1, n)),
        ("uniform", lambda n, s: rng.uniform(0 + 100 * s, 100 + 100 * s, n)),
        ("gamma", lambda n, s: rng.gamma(2 + 4 * s, 2, n)),
        ("integer", lambda n, s: rng.integers(18, 90 + int(200 * s), n)),
        ("heavy_tail", lambda n, s: rng.standard_t(2, n) + 10 * s),
        ("mixture", lambda n, s: np.where(rng.random(n) < 0.5 + s, rng.normal(-2, 1, n), rng.normal(2, 1, n))),
        ("beta", lambda n, s: rng.beta(2 + 10 * s, 5, n)),
    ]
    # shift per column: 0 (stable), small (below the 0.1 threshold) or large (above it)
    shifts = [0.0, 0.03, 0.3, 0.0]
    for k in range(36):
        family, sample = families[k % len(families)]
        shift = shifts[(k // len(families)) % len(shifts)]
        tag = "stable" if shift == 0 else ("small_shift" if shift < 0.1 else "shift")
        name = f"n{k:02d}_{family}_{tag}"
        ref[name] = sample(rows, 0.0)
        cur[name] = sample(rows, shift)
    mixes = [
        ("stable", [.2, .2, .2, .2, .2], [.2, .2, .2, .2, .2]),
        ("mix_shift", [.4, .3, .15, .1, .05], [.2, .3, .25, .15, .1]),
        ("mild_shift", [.4, .3, .15, .1, .05], [.37, .31, .16, .11, .05]),
        ("new_category", [.25, .25, .25, .25, 0], [.22, .22, .22, .22, .12]),
        ("stable", [.5, .2, .15, .1, .05], [.5, .2, .15, .1, .05]),
    ]
    for k in range(10):
        tag, p, q = mixes[k % len(mixes)]
        name = f"c{k:02d}_{tag}"
        ref[name] = rng.choice(CATS, rows, p=p)
        cur[name] = rng.choice(CATS, rows, p=q)
    for k, (tag, p, q) in enumerate([("rate_up", .3, .36), ("tiny_change", .5, .51), ("stable", .2, .2),
                                     ("rate_jump", .1, .4)]):
        name = f"b{k:02d}_{tag}"
        ref[name] = (rng.random(rows) < p).astype(int)
        cur[name] = (rng.random(rows) < q).astype(int)
    return pd.DataFrame(ref), pd.DataFrame(cur)


def write_data(rows, data_dir):
    """Writes the four files once per row count; later runs reuse them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = {f"{side}.{ext}": data_dir / f"{side}_{rows}.{ext}" for side in ("reference", "current")
             for ext in ("csv", "parquet")}
    if all(p.exists() for p in paths.values()):
        return paths
    ref, cur = make_data(rows)
    for side, df in (("reference", ref), ("current", cur)):
        df.to_csv(paths[f"{side}.csv"], index=False)
        df.to_parquet(paths[f"{side}.parquet"], index=False)
    return paths


def evidently_main(reference, current):
    """Runs in a child process: read both CSV files, run the preset, print verdicts as JSON."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    start = time.perf_counter()
    read = pd.read_parquet if reference.endswith(".parquet") else pd.read_csv
    ref, cur = read(reference), read(current)
    numeric = [c for c in ref.columns if c.startswith("n")]
    categorical = [c for c in ref.columns if not c.startswith("n")]
    dd = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(cur, data_definition=dd),
        reference_data=Dataset.from_pandas(ref, data_definition=dd),
    )
    out = {}
    for m in snapshot.dict()["metrics"]:
        cfg = m["config"]
        if cfg.get("type", "").endswith("ValueDrift"):
            method, threshold, value = cfg["method"], cfg["threshold"], float(m["value"])
            p_value_test = "p_value" in method or "test" in method.lower() and "distance" not in method.lower()
            drifted = value < threshold if p_value_test else value >= threshold
            out[cfg["column"]] = {"method": method, "value": value, "threshold": threshold, "drifted": drifted}
    json.dump({"columns": out, "seconds_in_process": time.perf_counter() - start}, sys.stdout)


def timed(cmd):
    """Runs cmd under /usr/bin/time -v: (stdout, wall seconds, peak RSS in MB, CPU seconds)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", proc.stderr).group(1))
              for kind in ("User", "System"))
    return proc.stdout, wall, rss, cpu


def vigil_binary(build):
    if build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "vigil"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "vigil"


def run_vigil(binary, reference, current, binary_columns):
    cmd = [str(binary), "drift", str(reference), str(current), "--format", "json"]
    for col in binary_columns:
        cmd += ["--test", f"{col}=jensen_shannon"]
    stdout, wall, rss, cpu = timed(cmd)
    report = json.loads(stdout)
    return {c["column"]: c for c in report["columns"]}, wall, rss, cpu, report["seconds"]


def load_average():
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return ["?"] * 3


def fmt(x):
    if x is None:
        return "-"
    return f"{x:.3e}" if x != 0 and abs(x) < 1e-3 else f"{x:.4f}"


def same_statistic(e, v):
    """Relative difference of the two statistics (vigil's Jensen-Shannon is base 2, Evidently's
    natural-log: vigil's is rescaled by sqrt(ln 2) first)."""
    import math
    if v["statistic"] is None:
        return "n/a"
    if v["test"] == "wasserstein_normed" and "Wasserstein" in e["method"]:
        ours = v["statistic"]
    elif v["test"] == "jensen_shannon" and "Jensen" in e["method"]:
        ours = v["statistic"] * math.sqrt(math.log(2))
    else:
        return "n/a (different tests)"
    return f"{abs(ours - e['value']) / max(abs(e['value']), 1e-300):.1e}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=356_000)
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/vigil-evidently"))
    ap.add_argument("--no-build", action="store_true", help="use target/release/vigil as it is")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--evidently-child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.evidently_child:
        return evidently_main(*a.evidently_child)

    from importlib.metadata import version

    paths = write_data(a.rows, a.data_dir)
    binary = vigil_binary(not a.no_build)
    header = paths["reference.csv"].open().readline().strip().split(",")
    binary_columns = [c for c in header if c.startswith("b")]
    load_before = load_average()

    ev_out, ev_wall, ev_rss, ev_cpu = timed(
        [sys.executable, __file__, "--evidently-child", str(paths["reference.csv"]), str(paths["current.csv"])]
    )
    ev = json.loads(ev_out)["columns"]
    vg, vg_wall, vg_rss, vg_cpu, vg_split = run_vigil(
        binary, paths["reference.csv"], paths["current.csv"], binary_columns
    )
    vp, vp_wall, vp_rss, vp_cpu, vp_split = run_vigil(
        binary, paths["reference.parquet"], paths["current.parquet"], binary_columns
    )
    load_after = load_average()

    mb = lambda p: p.stat().st_size / 1e6
    lines = [
        f"{a.rows:,} rows x {len(header)} columns per side (CSV {mb(paths['reference.csv']):.0f} MB and "
        f"{mb(paths['current.csv']):.0f} MB, Parquet {mb(paths['reference.parquet']):.0f} MB and "
        f"{mb(paths['current.parquet']):.0f} MB); evidently {version('evidently')}, pandas {version('pandas')}, "
        f"numpy {version('numpy')}; {os.cpu_count()} cores, load average {' '.join(load_before)} before and "
        f"{' '.join(load_after)} after.",
        "",
        "| column | Evidently test | Evidently value | Evidently drift | vigil test | vigil statistic | vigil drift "
        "| agree | rel. diff | vigil (Parquet) drift |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    agree = agree_parquet = 0
    for col in header:
        e, v, p = ev[col], vg[col], vp[col]
        same = e["drifted"] == v["drifted"]
        agree += same
        agree_parquet += p["drifted"] == v["drifted"] and p["statistic"] == v["statistic"]
        lines.append(
            f"| {col} | {e['method']} | {fmt(e['value'])} | {'yes' if e['drifted'] else 'no'} | {v['test']} | "
            f"{fmt(v['statistic'])} | {'yes' if v['drifted'] else 'no'} | {'yes' if same else '**no**'} | "
            f"{same_statistic(e, v)} | {'yes' if p['drifted'] else 'no'} |"
        )
    lines += [
        "",
        f"Verdicts agree on {agree} of {len(header)} columns; vigil from Parquet gives the same statistics as "
        f"from CSV on {agree_parquet} of {len(header)}.",
        "",
        "| run (whole process) | wall clock | vs Evidently | CPU (user + sys) | peak RSS |",
        "|---|---|---|---|---|",
        f"| Evidently DataDriftPreset, pandas.read_csv of both files | {ev_wall:.2f} s | 1x | {ev_cpu:.2f} s | "
        f"{ev_rss:.0f} MB |",
        f"| vigil drift, CSV (reading {vg_split[0]:.2f} s, tests {vg_split[1]:.2f} s) | {vg_wall:.2f} s | "
        f"**{ev_wall / vg_wall:.1f}x** faster | {vg_cpu:.2f} s | {vg_rss:.0f} MB |",
        f"| vigil drift, Parquet (reading {vp_split[0]:.2f} s, tests {vp_split[1]:.2f} s) | {vp_wall:.2f} s | "
        f"{ev_wall / vp_wall:.1f}x faster | {vp_cpu:.2f} s | {vp_rss:.0f} MB |",
        "",
        f"Evidently {ev_wall:.2f} s, vigil drift from CSV {vg_wall:.2f} s: {ev_wall / vg_wall:.1f}x "
        f"(target >= {TARGET_RATIO}x: {'met' if ev_wall / vg_wall >= TARGET_RATIO else 'NOT met'}); "
        f"from Parquet {vp_wall:.2f} s: {ev_wall / vp_wall:.1f}x. "
        f"Verdicts agree on {agree} of {len(header)} columns.",
    ]
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
