//! Agreement with SciPy and scikit-learn on the committed golden vectors
//! (`testdata/gen_golden.py`). Exact variants must agree within 1e-9 relative; sketch variants
//! within their stated error bound. Exact sums must equal `math.fsum` bit for bit
//! (`testdata/gen_fsum.py`).

use serde_json::Value;
use vigil_stats::drift::{chisq, cvm, hellinger, js, ks, psi, wasserstein, ztest};
use vigil_stats::perf::{
    average_precision, roc_auc, ConfusionMatrix, MulticlassLogLoss, ProbabilityMetrics, RegressionMetrics,
    ScoreHistogram,
};
use vigil_stats::{CategoricalSketch, ExactSum, NumericSketch, StatsError};

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/testdata/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

/// The elements of a JSON array, each converted by `get` (e.g. `Value::as_f64`).
fn list<T>(v: &Value, get: impl Fn(&Value) -> Option<T>) -> Vec<T> {
    v.as_array().unwrap().iter().map(|x| get(x).unwrap()).collect()
}

/// The number at JSON pointer `at` (e.g. "/ks/p_value") in `case`.
fn num(case: &Value, at: &str) -> f64 {
    case.pointer(at).and_then(Value::as_f64).unwrap_or_else(|| panic!("{at} missing"))
}

/// 1e-9 relative; absolute differences below 1e-15 are rounding noise around zero.
fn agrees(got: f64, want: f64) -> bool {
    let diff = (got - want).abs();
    diff <= 1e-9 * got.abs().max(want.abs()) || diff <= 1e-15
}

/// Asserts `got` agrees with the golden value at pointer `at` of `case`.
#[track_caller]
fn check(case: &Value, at: &str, got: f64) {
    let want = num(case, at);
    assert!(agrees(got, want), "{} {at}: got {got:e}, want {want:e}", case["name"]);
}

#[test]
fn numeric_drift_matches_scipy() {
    for case in load("numeric_drift") {
        let (r, c) = (list(&case["reference"], Value::as_f64), list(&case["current"], Value::as_f64));
        let (stat, method) = ks::ks_2samp_with_method(&r, &c).unwrap();
        check(&case, "/ks/statistic", stat.statistic);
        assert!(
            agrees(stat.p_value.unwrap(), num(&case, "/ks/p_value")),
            "{} ks p ({method:?})",
            case["name"]
        );
        check(&case, "/wasserstein", wasserstein::wasserstein(&r, &c).unwrap().statistic);
        check(&case, "/wasserstein_normed", wasserstein::wasserstein_normed(&r, &c).unwrap().statistic);
        if case["cvm"].is_null() {
            assert!(matches!(cvm::cramer_von_mises(&r, &c), Err(StatsError::NotEnoughData { .. })));
            continue;
        }
        let got = cvm::cramer_von_mises(&r, &c).unwrap();
        check(&case, "/cvm/statistic", got.statistic);
        // Asymptotic p-values are 1 - cdf: their absolute precision is ~1e-15 (cancellation) on
        // either side, so tiny p-values are compared to 1e-13 absolute.
        let p = got.p_value.unwrap();
        if (p - num(&case, "/cvm/p_value")).abs() > 1e-13 {
            check(&case, "/cvm/p_value", p);
        }
    }
}

#[test]
fn binned_numeric_drift_is_within_its_bound_of_scipy() {
    for case in load("numeric_drift") {
        let (r, c) = (list(&case["reference"], Value::as_f64), list(&case["current"], Value::as_f64));
        for bins in [10, 100] {
            let rs = NumericSketch::reference(&r, bins).unwrap();
            let mut cs = rs.empty_like();
            cs.extend(&c);
            let checks = [
                ("/ks/statistic", ks::ks_binned(&rs, &cs).unwrap()),
                ("/wasserstein", wasserstein::wasserstein_binned(&rs, &cs).unwrap()),
                ("/wasserstein_normed", wasserstein::wasserstein_normed_binned(&rs, &cs).unwrap()),
            ];
            for (at, got) in checks {
                let (exact, bound) = (num(&case, at), got.error_bound.unwrap());
                assert!(
                    (got.statistic - exact).abs() <= bound * (1.0 + 1e-9) + 1e-12,
                    "{} {at} bins={bins}: binned {} exact {exact} bound {bound}",
                    case["name"],
                    got.statistic
                );
            }
        }
    }
}

#[test]
fn count_drift_matches_scipy() {
    for case in load("count_drift") {
        let (r, c) = (list(&case["reference"], Value::as_u64), list(&case["current"], Value::as_u64));
        check(&case, "/psi", psi::psi_counts(&r, &c).unwrap().statistic);
        check(&case, "/jensen_shannon", js::jensen_shannon_counts(&r, &c).unwrap().statistic);
        check(&case, "/hellinger", hellinger::hellinger_counts(&r, &c).unwrap().statistic);
        let chi = chisq::chi_square_counts(&r, &c).unwrap();
        check(&case, "/chi_square/statistic", chi.statistic);
        check(&case, "/chi_square/p_value", chi.p_value.unwrap());
        let two = chisq::chi_square_2samp_counts(&r, &c).unwrap();
        check(&case, "/chi_square_2samp/statistic", two.statistic);
        check(&case, "/chi_square_2samp/p_value", two.p_value.unwrap());
    }
}

#[test]
fn categorical_drift_matches_scipy() {
    for case in load("categorical_drift") {
        let strs = |v: &Value| list(v, |x| x.as_str().map(str::to_owned));
        let cap = case["cap"].as_u64().unwrap() as usize;
        let rs = CategoricalSketch::reference(&strs(&case["reference"]), cap).unwrap();
        assert_eq!(rs.vocabulary(), strs(&case["vocabulary"]).as_slice(), "{}", case["name"]);
        let mut cs = rs.empty_like();
        strs(&case["current"]).iter().for_each(|v| cs.update(v));
        let chi = chisq::chi_square(&rs, &cs).unwrap();
        check(&case, "/chi_square/statistic", chi.statistic);
        check(&case, "/chi_square/p_value", chi.p_value.unwrap());
        check(&case, "/jensen_shannon", js::jensen_shannon(&rs, &cs).unwrap().statistic);
        check(&case, "/psi", psi::psi(&rs, &cs).unwrap().statistic);
    }
}

#[test]
fn z_test_matches_scipy() {
    for case in load("z_test") {
        let g = |k: &str| case[k].as_u64().unwrap();
        let got = ztest::z_test_counts(g("ref_pos"), g("ref_n"), g("cur_pos"), g("cur_n")).unwrap();
        check(&case, "/z", got.statistic);
        check(&case, "/p_value", got.p_value.unwrap());
    }
}

#[test]
fn classification_matches_sklearn() {
    for case in load("classification") {
        let k = case["n_classes"].as_u64().unwrap() as usize;
        // Build from two halves and merge, so merging is checked against sklearn too.
        let (t, p) = (list(&case["y_true"], Value::as_u64), list(&case["y_pred"], Value::as_u64));
        let (mut a, mut b) = (ConfusionMatrix::new(k).unwrap(), ConfusionMatrix::new(k).unwrap());
        for (i, (&t, &p)) in t.iter().zip(&p).enumerate() {
            let m = if i % 2 == 0 { &mut a } else { &mut b };
            m.update(t as usize, p as usize).unwrap();
        }
        a.merge(&b).unwrap();
        check(&case, "/accuracy", a.accuracy().unwrap());
        for (ti, row) in case["confusion"].as_array().unwrap().iter().enumerate() {
            let got: Vec<u64> = (0..k).map(|pi| a.get(ti, pi)).collect();
            assert_eq!(list(row, Value::as_u64), got, "{} confusion", case["name"]);
        }
        for (c, m) in a.per_class().iter().enumerate() {
            check(&case, &format!("/precision/{c}"), m.precision);
            check(&case, &format!("/recall/{c}"), m.recall);
            check(&case, &format!("/f1/{c}"), m.f1);
            assert_eq!(m.support, case["support"][c].as_u64().unwrap());
        }
        for (avg, got) in [("macro", a.macro_avg()), ("micro", a.micro_avg()), ("weighted", a.weighted_avg())]
        {
            check(&case, &format!("/averages/{avg}/precision"), got.precision);
            check(&case, &format!("/averages/{avg}/recall"), got.recall);
            check(&case, &format!("/averages/{avg}/f1"), got.f1);
        }
    }
}

#[test]
fn ranking_matches_sklearn() {
    for case in load("ranking") {
        let (s, y) = (list(&case["scores"], Value::as_f64), list(&case["labels"], Value::as_bool));
        let mut hist = ScoreHistogram::new(100).unwrap();
        s.iter().zip(&y).for_each(|(&s, &y)| hist.update(s, y));
        if case["roc_auc"].is_null() {
            assert!(matches!(roc_auc(&s, &y), Err(StatsError::Undefined(_))));
        } else {
            check(&case, "/roc_auc", roc_auc(&s, &y).unwrap());
            let b = hist.roc_auc().unwrap();
            assert!(
                (b.value - num(&case, "/roc_auc")).abs() <= b.error_bound + 1e-12,
                "{} {b:?}",
                case["name"]
            );
        }
        if case["average_precision"].is_null() {
            assert!(matches!(average_precision(&s, &y), Err(StatsError::Undefined(_))));
        } else {
            check(&case, "/average_precision", average_precision(&s, &y).unwrap());
            let b = hist.average_precision().unwrap();
            let want = num(&case, "/average_precision");
            assert!((b.value - want).abs() <= b.error_bound + 1e-12, "{} {b:?}", case["name"]);
        }
    }
}

#[test]
fn probability_metrics_match_sklearn() {
    for case in load("probability") {
        if let Some(k) = case["n_classes"].as_u64() {
            let mut m = MulticlassLogLoss::new(k as usize).unwrap();
            for (p, y) in
                case["probabilities"].as_array().unwrap().iter().zip(list(&case["y_class"], Value::as_u64))
            {
                m.update(&list(p, Value::as_f64), y as usize).unwrap();
            }
            check(&case, "/log_loss", m.log_loss().unwrap());
            continue;
        }
        let mut m = ProbabilityMetrics::new();
        for (&p, &y) in list(&case["p"], Value::as_f64).iter().zip(&list(&case["y"], Value::as_bool)) {
            m.update(p, y).unwrap();
        }
        check(&case, "/log_loss", m.log_loss().unwrap());
        check(&case, "/brier", m.brier().unwrap());
        check(&case, "/ece", m.expected_calibration_error().unwrap());
    }
}

#[test]
fn regression_metrics_match_sklearn() {
    for case in load("regression") {
        let (y, yh) = (list(&case["y"], Value::as_f64), list(&case["y_hat"], Value::as_f64));
        // A third in one state, the rest in another, then merged.
        let (mut a, mut b) = (RegressionMetrics::new(), RegressionMetrics::new());
        let third = y.len() / 3;
        for (i, (&t, &p)) in y.iter().zip(&yh).enumerate() {
            let m = if i < third { &mut a } else { &mut b };
            m.update(t, p);
        }
        a.merge(&b);
        check(&case, "/mae", a.mae().unwrap());
        check(&case, "/rmse", a.rmse().unwrap());
        check(&case, "/mape", a.mape().unwrap());
        check(&case, "/r2", a.r2().unwrap());
        check(&case, "/mean_error", a.mean_error().unwrap());
    }
}

#[test]
fn exact_sums_match_python_fsum_in_any_order_and_grouping() {
    for case in load("fsum") {
        let xs = list(&case["values"], Value::as_f64);
        let want = num(&case, "/fsum");
        let name = &case["name"];
        let sum_of = |xs: &mut dyn Iterator<Item = f64>| {
            let mut s = ExactSum::new();
            xs.for_each(|x| s.add(x));
            s
        };
        let forward = sum_of(&mut xs.iter().copied());
        assert_eq!(
            forward.value().to_bits(),
            want.to_bits(),
            "{name}: got {:e}, want {want:e}",
            forward.value()
        );
        let backward = sum_of(&mut xs.iter().rev().copied());
        assert_eq!(backward.value().to_bits(), want.to_bits(), "{name} reversed");
        let mut sorted = xs.clone();
        sorted.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
        assert_eq!(
            sum_of(&mut sorted.iter().copied()).value().to_bits(),
            want.to_bits(),
            "{name} by magnitude"
        );
        // Partial sums of chunks, merged from the last chunk back, as flushes would split them.
        let mut merged = ExactSum::new();
        for chunk in xs.rchunks(7) {
            merged.merge(&sum_of(&mut chunk.iter().copied()));
        }
        assert_eq!(merged.value().to_bits(), want.to_bits(), "{name} merged in chunks");
        assert_eq!(merged, forward, "{name}: equal exact sums");
        let json = serde_json::to_string(&merged).unwrap();
        assert_eq!(json, serde_json::to_string(&forward).unwrap(), "{name}: one canonical encoding");
        let back: ExactSum = serde_json::from_str(&json).unwrap();
        assert_eq!(back.value().to_bits(), want.to_bits(), "{name} after serde");
    }
}
