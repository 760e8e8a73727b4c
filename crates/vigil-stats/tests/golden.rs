//! Agreement with SciPy and scikit-learn on the committed golden vectors
//! (`testdata/gen_golden.py`). Exact variants must agree within 1e-9 relative; sketch variants
//! within their stated error bound.

use serde_json::Value;
use vigil_stats::drift::{chisq, cvm, hellinger, js, ks, psi, wasserstein, ztest};
use vigil_stats::perf::{
    average_precision, roc_auc, ConfusionMatrix, ProbabilityMetrics, RegressionMetrics,
    ScoreHistogram,
};
use vigil_stats::{CategoricalSketch, NumericSketch, StatsError};

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/testdata/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_bool().unwrap())
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// 1e-9 relative; values below 1e-15 in absolute difference are rounding noise around zero.
#[track_caller]
fn close(what: &str, got: f64, want: f64) {
    let diff = (got - want).abs();
    assert!(
        diff <= 1e-9 * got.abs().max(want.abs()) || diff <= 1e-15,
        "{what}: got {got:e}, want {want:e} (diff {diff:e})"
    );
}

#[test]
fn numeric_drift_matches_scipy() {
    for case in load("numeric_drift") {
        let name = case["name"].as_str().unwrap();
        let (r, c) = (f64s(&case["reference"]), f64s(&case["current"]));
        let (stat, method) = ks::ks_2samp_with_method(&r, &c).unwrap();
        close(
            &format!("{name} ks D"),
            stat.statistic,
            case["ks"]["statistic"].as_f64().unwrap(),
        );
        let (p, want_p) = (
            stat.p_value.unwrap(),
            case["ks"]["p_value"].as_f64().unwrap(),
        );
        close(&format!("{name} ks p ({method:?})"), p, want_p);
        close(
            &format!("{name} w1"),
            wasserstein::wasserstein(&r, &c).unwrap().statistic,
            case["wasserstein"].as_f64().unwrap(),
        );
        close(
            &format!("{name} w1 normed"),
            wasserstein::wasserstein_normed(&r, &c).unwrap().statistic,
            case["wasserstein_normed"].as_f64().unwrap(),
        );
        match &case["cvm"] {
            Value::Null => assert!(matches!(
                cvm::cramer_von_mises(&r, &c),
                Err(StatsError::NotEnoughData { .. })
            )),
            want => {
                let got = cvm::cramer_von_mises(&r, &c).unwrap();
                close(
                    &format!("{name} cvm T"),
                    got.statistic,
                    want["statistic"].as_f64().unwrap(),
                );
                // Asymptotic p-values are 1 - cdf: their absolute precision is ~1e-15 (cancellation)
                // on either side, so tiny p-values are compared to 1e-13 absolute.
                let (p, want_p) = (got.p_value.unwrap(), want["p_value"].as_f64().unwrap());
                if (p - want_p).abs() > 1e-13 {
                    close(&format!("{name} cvm p"), p, want_p);
                }
            }
        }
    }
}

#[test]
fn binned_numeric_drift_is_within_its_bound_of_scipy() {
    for case in load("numeric_drift") {
        let name = case["name"].as_str().unwrap();
        let (r, c) = (f64s(&case["reference"]), f64s(&case["current"]));
        for bins in [10, 100] {
            let rs = NumericSketch::reference(&r, bins).unwrap();
            let mut cs = rs.empty_like();
            cs.extend(&c);
            let checks = [
                (
                    "ks",
                    ks::ks_binned(&rs, &cs).unwrap(),
                    case["ks"]["statistic"].as_f64().unwrap(),
                ),
                (
                    "w1",
                    wasserstein::wasserstein_binned(&rs, &cs).unwrap(),
                    case["wasserstein"].as_f64().unwrap(),
                ),
                (
                    "w1 normed",
                    wasserstein::wasserstein_normed_binned(&rs, &cs).unwrap(),
                    case["wasserstein_normed"].as_f64().unwrap(),
                ),
            ];
            for (test, got, exact) in checks {
                let bound = got.error_bound.unwrap();
                assert!(
                    (got.statistic - exact).abs() <= bound * (1.0 + 1e-9) + 1e-12,
                    "{name} {test} bins={bins}: binned {} exact {exact} bound {bound}",
                    got.statistic
                );
            }
        }
    }
}

#[test]
fn count_drift_matches_scipy() {
    for case in load("count_drift") {
        let name = case["name"].as_str().unwrap();
        let (r, c) = (u64s(&case["reference"]), u64s(&case["current"]));
        close(
            &format!("{name} psi"),
            psi::psi_counts(&r, &c).unwrap().statistic,
            case["psi"].as_f64().unwrap(),
        );
        close(
            &format!("{name} js"),
            js::jensen_shannon_counts(&r, &c).unwrap().statistic,
            case["jensen_shannon"].as_f64().unwrap(),
        );
        close(
            &format!("{name} hellinger"),
            hellinger::hellinger_counts(&r, &c).unwrap().statistic,
            case["hellinger"].as_f64().unwrap(),
        );
        let chi = chisq::chi_square_counts(&r, &c).unwrap();
        close(
            &format!("{name} chi2"),
            chi.statistic,
            case["chi_square"]["statistic"].as_f64().unwrap(),
        );
        close(
            &format!("{name} chi2 p"),
            chi.p_value.unwrap(),
            case["chi_square"]["p_value"].as_f64().unwrap(),
        );
    }
}

#[test]
fn categorical_drift_matches_scipy() {
    for case in load("categorical_drift") {
        let name = case["name"].as_str().unwrap();
        let cap = case["cap"].as_u64().unwrap() as usize;
        let rs = CategoricalSketch::reference(&strs(&case["reference"]), cap).unwrap();
        assert_eq!(
            rs.vocabulary(),
            strs(&case["vocabulary"]).as_slice(),
            "{name} vocabulary"
        );
        let mut cs = rs.empty_like();
        strs(&case["current"]).iter().for_each(|v| cs.update(v));
        let chi = chisq::chi_square(&rs, &cs).unwrap();
        close(
            &format!("{name} chi2"),
            chi.statistic,
            case["chi_square"]["statistic"].as_f64().unwrap(),
        );
        close(
            &format!("{name} chi2 p"),
            chi.p_value.unwrap(),
            case["chi_square"]["p_value"].as_f64().unwrap(),
        );
        close(
            &format!("{name} js"),
            js::jensen_shannon(&rs, &cs).unwrap().statistic,
            case["jensen_shannon"].as_f64().unwrap(),
        );
        close(
            &format!("{name} psi"),
            psi::psi(&rs, &cs).unwrap().statistic,
            case["psi"].as_f64().unwrap(),
        );
    }
}

#[test]
fn z_test_matches_scipy() {
    for case in load("z_test") {
        let g = |k: &str| case[k].as_u64().unwrap();
        let got = ztest::z_test_counts(g("ref_pos"), g("ref_n"), g("cur_pos"), g("cur_n")).unwrap();
        close("z", got.statistic, case["z"].as_f64().unwrap());
        close(
            "z p",
            got.p_value.unwrap(),
            case["p_value"].as_f64().unwrap(),
        );
    }
}

#[test]
fn classification_matches_sklearn() {
    for case in load("classification") {
        let name = case["name"].as_str().unwrap();
        let k = case["n_classes"].as_u64().unwrap() as usize;
        // Build from two halves and merge, so merging is checked against sklearn too.
        let (t, p) = (u64s(&case["y_true"]), u64s(&case["y_pred"]));
        let (mut a, mut b) = (
            ConfusionMatrix::new(k).unwrap(),
            ConfusionMatrix::new(k).unwrap(),
        );
        for (i, (&t, &p)) in t.iter().zip(&p).enumerate() {
            let m = if i % 2 == 0 { &mut a } else { &mut b };
            m.update(t as usize, p as usize).unwrap();
        }
        a.merge(&b).unwrap();
        close(
            &format!("{name} accuracy"),
            a.accuracy().unwrap(),
            case["accuracy"].as_f64().unwrap(),
        );
        for (ti, row) in case["confusion"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                u64s(row),
                (0..k).map(|pi| a.get(ti, pi)).collect::<Vec<_>>(),
                "{name} confusion"
            );
        }
        for (c, m) in a.per_class().iter().enumerate() {
            close(
                &format!("{name} precision {c}"),
                m.precision,
                case["precision"][c].as_f64().unwrap(),
            );
            close(
                &format!("{name} recall {c}"),
                m.recall,
                case["recall"][c].as_f64().unwrap(),
            );
            close(
                &format!("{name} f1 {c}"),
                m.f1,
                case["f1"][c].as_f64().unwrap(),
            );
            assert_eq!(m.support, case["support"][c].as_u64().unwrap());
        }
        for (avg, got) in [
            ("macro", a.macro_avg()),
            ("micro", a.micro_avg()),
            ("weighted", a.weighted_avg()),
        ] {
            let want = &case["averages"][avg];
            close(
                &format!("{name} {avg} p"),
                got.precision,
                want["precision"].as_f64().unwrap(),
            );
            close(
                &format!("{name} {avg} r"),
                got.recall,
                want["recall"].as_f64().unwrap(),
            );
            close(
                &format!("{name} {avg} f1"),
                got.f1,
                want["f1"].as_f64().unwrap(),
            );
        }
    }
}

#[test]
fn ranking_matches_sklearn() {
    for case in load("ranking") {
        let name = case["name"].as_str().unwrap();
        let (s, y) = (f64s(&case["scores"]), bools(&case["labels"]));
        let mut hist = ScoreHistogram::new(100).unwrap();
        s.iter().zip(&y).for_each(|(&s, &y)| hist.update(s, y));
        match case["roc_auc"].as_f64() {
            Some(want) => {
                close(&format!("{name} auc"), roc_auc(&s, &y).unwrap(), want);
                let b = hist.roc_auc().unwrap();
                assert!(
                    (b.value - want).abs() <= b.error_bound + 1e-12,
                    "{name} binned auc {b:?} vs {want}"
                );
            }
            None => assert!(matches!(roc_auc(&s, &y), Err(StatsError::Undefined(_)))),
        }
        match case["average_precision"].as_f64() {
            Some(want) => {
                close(
                    &format!("{name} ap"),
                    average_precision(&s, &y).unwrap(),
                    want,
                );
                let b = hist.average_precision().unwrap();
                assert!(
                    (b.value - want).abs() <= b.error_bound + 1e-12,
                    "{name} binned ap {b:?} vs {want}"
                );
            }
            None => assert!(matches!(
                average_precision(&s, &y),
                Err(StatsError::Undefined(_))
            )),
        }
    }
}

#[test]
fn probability_metrics_match_sklearn() {
    for case in load("probability") {
        let name = case["name"].as_str().unwrap();
        let mut m = ProbabilityMetrics::new();
        for (&p, &y) in f64s(&case["p"]).iter().zip(&bools(&case["y"])) {
            m.update(p, y).unwrap();
        }
        close(
            &format!("{name} log loss"),
            m.log_loss().unwrap(),
            case["log_loss"].as_f64().unwrap(),
        );
        close(
            &format!("{name} brier"),
            m.brier().unwrap(),
            case["brier"].as_f64().unwrap(),
        );
        close(
            &format!("{name} ece"),
            m.expected_calibration_error().unwrap(),
            case["ece"].as_f64().unwrap(),
        );
    }
}

#[test]
fn regression_metrics_match_sklearn() {
    for case in load("regression") {
        let name = case["name"].as_str().unwrap();
        let (y, yh) = (f64s(&case["y"]), f64s(&case["y_hat"]));
        let (mut a, mut b) = (RegressionMetrics::new(), RegressionMetrics::new());
        let third = y.len() / 3;
        for (i, (&t, &p)) in y.iter().zip(&yh).enumerate() {
            if i < third {
                a.update(t, p)
            } else {
                b.update(t, p)
            }
        }
        a.merge(&b);
        close(
            &format!("{name} mae"),
            a.mae().unwrap(),
            case["mae"].as_f64().unwrap(),
        );
        close(
            &format!("{name} rmse"),
            a.rmse().unwrap(),
            case["rmse"].as_f64().unwrap(),
        );
        close(
            &format!("{name} mape"),
            a.mape().unwrap(),
            case["mape"].as_f64().unwrap(),
        );
        close(
            &format!("{name} r2"),
            a.r2().unwrap(),
            case["r2"].as_f64().unwrap(),
        );
        close(
            &format!("{name} mean error"),
            a.mean_error().unwrap(),
            case["mean_error"].as_f64().unwrap(),
        );
    }
}
