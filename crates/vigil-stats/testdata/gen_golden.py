#!/usr/bin/env python3
"""Writes the golden vectors that vigil-stats' tests compare against.

Every expected value comes from SciPy or scikit-learn (or, for PSI, Hellinger and the
mean error, which neither library has, from a direct numpy formula), never from vigil.
Run from anywhere:  python gen_golden.py   (versions pinned in requirements.txt)
Output: golden/*.json next to this script. Deterministic (fixed seeds).
The exact sums' vectors (golden/fsum.json) come from gen_fsum.py (math.fsum, standard library only).
"""
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import scipy
import sklearn
from scipy import stats
from scipy.spatial import distance
from sklearn import calibration, metrics

OUT = Path(__file__).resolve().parent / "golden"
EPS = 1e-4  # vigil's EMPTY_BIN_EPSILON
STD_FLOOR = 1e-3  # vigil's wasserstein STD_FLOOR
rng = np.random.default_rng(20261126)


def fl(x):
    return [float(v) for v in x]


def write(name, cases):
    OUT.mkdir(exist_ok=True)
    meta = {"numpy": np.__version__, "scipy": scipy.__version__, "sklearn": sklearn.__version__}
    with open(OUT / f"{name}.json", "w") as f:
        json.dump({"generated_with": meta, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")


def r6(x):
    """Six decimals: keeps files small and adds realistic ties."""
    return np.round(x, 6)


# ---------------------------------------------------------------- numeric drift (raw samples)
def numeric_cases():
    n = rng.normal
    return [
        ("tiny_1_vs_1", [1.0], [2.0]),
        ("tiny_2_vs_3", [1.0, 2.0], [1.0, 2.0, 3.0]),
        ("small_shift_20_25", r6(n(0, 1, 20)), r6(n(0.8, 1, 25))),
        ("small_same_15_15", r6(n(0, 1, 15)), r6(n(0, 1, 15))),
        ("ties_integers", rng.integers(0, 6, 200).astype(float), rng.integers(0, 7, 300).astype(float)),
        ("constant_both", [5.0] * 50, [5.0] * 40),
        ("constant_reference", [5.0] * 50, r6(n(5, 0.1, 60))),
        ("heavy_tail_cauchy", r6(rng.standard_cauchy(500)), r6(rng.standard_cauchy(600) * 1.5)),
        ("pareto_tail", r6(rng.pareto(1.5, 800)), r6(rng.pareto(1.2, 700))),
        ("equal_1000_shift", r6(n(0, 1, 1000)), r6(n(0.1, 1, 1000))),
        ("lognormal_5000", r6(rng.lognormal(0, 1, 5000)), r6(rng.lognormal(0.05, 1, 5000))),
        ("exact_limit_10000_8000", r6(n(0, 1, 10000)), r6(n(0.03, 1, 8000))),
        ("large_small_shift", r6(n(0, 1, 20000)), r6(n(0.01, 1, 15000))),
        ("large_clear_shift", r6(n(0, 1, 20000)), r6(n(0.08, 1.1, 15000))),
        ("large_same", r6(n(0, 1, 30000)), r6(n(0, 1, 25000))),
        ("large_vs_tiny", r6(n(0, 1, 12000)), r6(n(0.5, 1, 7))),
        ("large_vs_small_100", r6(n(0, 1, 11000)), r6(n(0.2, 1, 100))),
        ("large_nearly_identical", base := r6(n(0, 1, 12000)), np.concatenate([base[:-5], [9.0] * 5])),
        ("large_vs_medium_300", r6(n(0, 1, 15000)), r6(n(0.05, 1, 300))),
    ]


def numeric_golden():
    cases = []
    for name, ref, cur in numeric_cases():
        ref, cur = np.asarray(ref, float), np.asarray(cur, float)
        ks = stats.ks_2samp(ref, cur, method="auto")
        case = {
            "name": name,
            "reference": fl(ref),
            "current": fl(cur),
            "ks": {"statistic": float(ks.statistic), "p_value": float(ks.pvalue)},
            "wasserstein": float(stats.wasserstein_distance(ref, cur)),
            "wasserstein_normed": float(stats.wasserstein_distance(ref, cur) / max(np.std(ref), STD_FLOOR)),
            "cvm": None,
        }
        if len(ref) >= 2 and len(cur) >= 2:
            cvm = stats.cramervonmises_2samp(ref, cur, method="auto")
            case["cvm"] = {"statistic": float(cvm.statistic), "p_value": float(cvm.pvalue)}
        cases.append(case)
    write("numeric_drift", cases)


# ---------------------------------------------------------------- drift on bin counts
def psi(r, c):
    p, q = r / r.sum(), c / c.sum()
    p, q = np.where(p == 0, EPS, p), np.where(q == 0, EPS, q)
    return float(np.sum((q - p) * np.log(q / p)))


def hellinger(r, c):
    p, q = r / r.sum(), c / c.sum()
    return float(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


def chisq(r, c):
    keep = (r > 0) | (c > 0)
    r, c = r[keep], c[keep]
    if len(r) < 2:
        return {"statistic": 0.0, "p_value": 1.0}
    e = np.where(r == 0, EPS, r / r.sum())
    e = e / e.sum()
    res = stats.chisquare(c, f_exp=e * c.sum())
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue)}


def chisq_2samp(r, c):
    keep = (r > 0) | (c > 0)
    r, c = r[keep], c[keep]
    if len(r) < 2:
        return {"statistic": 0.0, "p_value": 1.0}
    res = stats.chi2_contingency(np.vstack([r, c]), correction=False)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue)}


def counts_golden():
    raw = [
        ("identical", [10, 20, 30, 40], [10, 20, 30, 40]),
        ("proportional", [10, 20, 30, 40], [1, 2, 3, 4]),
        ("shifted", [25, 25, 25, 25], [10, 20, 30, 40]),
        ("empty_bins_both_sides", [0, 50, 50, 0, 3], [5, 45, 0, 0, 7]),
        ("disjoint", [10, 0], [0, 10]),
        ("one_bin", [7], [3]),
        ("hundred_bins", list(rng.integers(50, 150, 100)), list(rng.integers(40, 170, 100))),
        ("hundred_bins_sparse", list(rng.poisson(1.0, 100)), list(rng.poisson(1.3, 100))),
        ("large_counts", [10**9, 3 * 10**9, 5], [2 * 10**8, 5 * 10**8, 7]),
    ]
    cases = []
    for name, r, c in raw:
        r, c = np.asarray(r, float), np.asarray(c, float)
        cases.append({
            "name": name,
            "reference": [int(x) for x in r],
            "current": [int(x) for x in c],
            "psi": psi(r, c),
            "jensen_shannon": float(distance.jensenshannon(r, c, base=2)),
            "hellinger": hellinger(r, c),
            "chi_square": chisq(r, c),
            "chi_square_2samp": chisq_2samp(r, c),
        })
    write("count_drift", cases)


# ---------------------------------------------------------------- categorical drift (raw values)
def categorical_golden():
    colors = ["red", "green", "blue", "cyan", "magenta"]
    raw = [
        ("same_mix", rng.choice(colors, 400, p=[.4, .3, .2, .05, .05]), rng.choice(colors, 300, p=[.4, .3, .2, .05, .05]), 10),
        ("shifted_mix", rng.choice(colors, 400, p=[.4, .3, .2, .05, .05]), rng.choice(colors, 300, p=[.2, .3, .4, .05, .05]), 10),
        ("unseen_categories", rng.choice(colors[:3], 500), rng.choice(colors, 200), 10),
        ("cap_smaller_than_cardinality", rng.choice(colors, 1000, p=[.3, .3, .2, .1, .1]), rng.choice(colors, 800), 3),
        ("single_category", ["a"] * 30, ["a"] * 20, 10),
    ]
    cases = []
    for name, ref, cur, cap in raw:
        ref, cur = [str(x) for x in ref], [str(x) for x in cur]
        freq = Counter(ref)
        top = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:cap]
        vocab = sorted(k for k, _ in top)
        def counts(xs):
            cnt = Counter(xs)
            other = sum(v for k, v in cnt.items() if k not in vocab)
            return np.asarray([cnt.get(k, 0) for k in vocab] + [other], float)
        r, c = counts(ref), counts(cur)
        cases.append({
            "name": name, "cap": cap, "reference": ref, "current": cur, "vocabulary": vocab,
            "chi_square": chisq(r, c),
            "jensen_shannon": float(distance.jensenshannon(r, c, base=2)),
            "psi": psi(r, c),
        })
    write("categorical_drift", cases)


def ztest_golden():
    raw = [(30, 100, 45, 100), (500, 1000, 520, 1000), (0, 50, 0, 60), (50, 50, 40, 40),
           (1, 10000, 30, 10000), (123456, 1000000, 125000, 1000000), (3, 7, 1, 9)]
    cases = []
    for rp, rn, cp, cn in raw:
        p1, p2, pooled = rp / rn, cp / cn, (rp + cp) / (rn + cn)
        var = pooled * (1 - pooled) * (1 / rn + 1 / cn)
        z = 0.0 if var == 0 else (p1 - p2) / math.sqrt(var)
        p = 1.0 if var == 0 else float(2 * stats.norm.sf(abs(z)))
        cases.append({"ref_pos": rp, "ref_n": rn, "cur_pos": cp, "cur_n": cn, "z": z, "p_value": p})
    write("z_test", cases)


# ---------------------------------------------------------------- performance metrics
def classification_golden():
    cases = []
    for name, k, n, noise in [("binary", 2, 500, 0.3), ("multiclass_4", 4, 1000, 0.4),
                              ("missing_class_pred", 3, 60, 0.0), ("all_one_class", 2, 40, -1.0)]:
        y = rng.integers(0, k, n)
        if noise < 0:
            y = np.zeros(n, int)
            yhat = rng.integers(0, 2, n)
        elif noise == 0.0:
            yhat = np.where(y == 2, 1, y)  # class 2 is never predicted
        else:
            yhat = np.where(rng.random(n) < noise, rng.integers(0, k, n), y)
        labels = list(range(k))
        p, r, f, s = metrics.precision_recall_fscore_support(y, yhat, labels=labels, zero_division=0)
        avg = {}
        for a in ["macro", "micro", "weighted"]:
            ap, ar, af, _ = metrics.precision_recall_fscore_support(y, yhat, labels=labels, average=a, zero_division=0)
            avg[a] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
        cases.append({
            "name": name, "n_classes": k, "y_true": [int(v) for v in y], "y_pred": [int(v) for v in yhat],
            "accuracy": float(metrics.accuracy_score(y, yhat)),
            "confusion": metrics.confusion_matrix(y, yhat, labels=labels).tolist(),
            "precision": fl(p), "recall": fl(r), "f1": fl(f), "support": [int(v) for v in s],
            "averages": avg,
        })
    write("classification", cases)


def ranking_golden():
    cases = []
    specs = [("separable", 300, 2.0, False), ("noisy", 2000, 0.5, False), ("heavy_ties", 1000, 0.7, True),
             ("all_negative", 50, 0.0, False), ("all_positive", 50, 0.0, False), ("large", 50000, 0.8, False)]
    for name, n, sep, ties in specs:
        y = rng.random(n) < 0.3
        if name == "all_negative":
            y[:] = False
        if name == "all_positive":
            y[:] = True
        logit = rng.normal(0, 1, n) + sep * y
        s = 1 / (1 + np.exp(-logit))
        s = np.round(s, 1) if ties else r6(s)
        case = {"name": name, "scores": fl(s), "labels": [bool(v) for v in y], "roc_auc": None, "average_precision": None}
        if 0 < y.sum() < n:
            case["roc_auc"] = float(metrics.roc_auc_score(y, s))
        if y.sum() > 0:
            case["average_precision"] = float(metrics.average_precision_score(y, s))
        cases.append(case)
    write("ranking", cases)


def probability_golden():
    cases = []
    for name, n, kind in [("calibrated", 2000, "cal"), ("overconfident", 2000, "over"),
                          ("extremes", 12, "edge"), ("all_one_class", 100, "one")]:
        if kind == "edge":
            p = np.array([0.0, 1.0, 0.0, 1.0, 0.1, 0.2, 0.30000000000000004, 0.5, 0.9, 0.95, 1e-20, 1 - 1e-17])
            y = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1])
        else:
            p = r6(rng.random(n))
            y = (rng.random(n) < (p if kind != "over" else np.clip(0.5 + (p - 0.5) * 0.5, 0, 1))).astype(int)
            if kind == "one":
                y[:] = 1
        prob_true, prob_pred = calibration.calibration_curve(y, p, n_bins=10)
        binids = np.searchsorted(np.linspace(0.0, 1.0, 11)[1:-1], p)
        weights = np.bincount(binids, minlength=10)
        weights = weights[weights > 0] / len(p)
        ece = float(np.sum(weights * np.abs(prob_true - prob_pred)))
        cases.append({
            "name": name, "p": fl(p), "y": [bool(v) for v in y],
            "log_loss": float(metrics.log_loss(y, p, labels=[0, 1])),
            "brier": float(metrics.brier_score_loss(y, p)),
            "ece": ece,
        })
    for name, k, n in [("multiclass_4", 4, 500), ("multiclass_3_confident", 3, 300)]:
        y = rng.integers(0, k, n)
        probs = rng.dirichlet(np.ones(k) * (0.3 if "confident" in name else 2.0), n)
        probs[0] = np.eye(k)[y[0]]  # an exact 1.0 on the true class
        probs[1] = np.eye(k)[(y[1] + 1) % k]  # an exact 0.0 on the true class (clipped)
        cases.append({
            "name": name, "n_classes": k, "y_class": [int(v) for v in y], "probabilities": probs.tolist(),
            "log_loss": float(metrics.log_loss(y, probs, labels=list(range(k)))),
        })
    write("probability", cases)


def regression_golden():
    cases = []
    y0 = r6(rng.normal(100, 15, 1000))
    specs = [("typical", y0, r6(y0 + rng.normal(1, 5, 1000))),
             ("zeros_in_truth", np.array([0.0, 1.0, -2.0, 0.0, 3.5]), np.array([0.1, 1.0, -1.0, 0.0, 3.0])),
             ("constant_truth", np.full(20, 3.0), r6(np.full(20, 3.0) + rng.normal(0, 1, 20))),
             ("perfect", y0[:50], y0[:50]),
             ("heavy_tail", r6(rng.standard_cauchy(500)), r6(rng.standard_cauchy(500)))]
    for name, y, yhat in specs:
        cases.append({
            "name": name, "y": fl(y), "y_hat": fl(yhat),
            "mae": float(metrics.mean_absolute_error(y, yhat)),
            "rmse": float(metrics.root_mean_squared_error(y, yhat)),
            "mape": float(metrics.mean_absolute_percentage_error(y, yhat)),
            "r2": float(metrics.r2_score(y, yhat)),
            "mean_error": float(np.mean(yhat - y)),
        })
    write("regression", cases)


if __name__ == "__main__":
    numeric_golden()
    counts_golden()
    categorical_golden()
    ztest_golden()
    classification_golden()
    ranking_golden()
    probability_golden()
    regression_golden()
    for f in sorted(OUT.glob("*.json")):
        print(f"{f.name}: {f.stat().st_size} bytes")
