//! Feature drift of a closed window against its model version's reference, with vigil-stats'
//! default test choice. Numeric features: both quantile sketches are re-binned onto the
//! reference's quantile edges, then the chosen binned test runs (its error bound is reported).
//! Categorical features: counts over the reference's categories (others pooled), chi-square (the
//! monitor configures the two-sample variant) or Jensen-Shannon by window size, the
//! two-proportion Z-test for two-valued features.

use vigil_stats::select::{run_categorical, run_numeric, NumericData};
use vigil_stats::{CategoricalSketch, DriftPolicy, DriftResult, FeatureKind, StatsError};

use crate::window::WindowState;

/// Quantile bins of the reference per numeric feature. Windows hold hundreds to thousands of
/// events, so 20 bins keep each bin populated.
pub const REFERENCE_BINS: usize = 20;

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDrift {
    pub feature: String,
    pub result: DriftResult,
    pub current_count: u64,
}

/// Drift of every numeric feature present in both states; a feature whose test cannot run
/// (e.g. no finite values on one side) is returned in the second list with the reason.
pub fn numeric_drift(
    reference: &WindowState,
    current: &WindowState,
    policy: &DriftPolicy,
) -> (Vec<FeatureDrift>, Vec<(String, StatsError)>) {
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for (feature, current_sketch) in &current.numeric {
        let Some(reference_sketch) = reference.numeric.get(feature) else { continue };
        let run = || -> Result<DriftResult, StatsError> {
            let edges = reference_sketch.edges(REFERENCE_BINS)?;
            let r = reference_sketch.rebin_with_bounds(&edges)?;
            let c = current_sketch.rebin_with_bounds(&edges)?;
            let choice = policy.choose(FeatureKind::Numeric, current_sketch.count());
            let mut result = run_numeric(
                choice,
                NumericData { sketch: &r.sketch, exact: None },
                NumericData { sketch: &c.sketch, exact: None },
            )?;
            // The binned test's own bound covers binning; add what re-binning the sketches may move.
            let rebin_bound = r.error_bound(choice.test, &c).ok();
            result.error_bound = match (result.error_bound, rebin_bound) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            Ok(result)
        };
        match run() {
            Ok(result) => results.push(FeatureDrift {
                feature: feature.clone(),
                result,
                current_count: current_sketch.count(),
            }),
            Err(error) => skipped.push((feature.clone(), error)),
        }
    }
    (results, skipped)
}

/// Drift of every categorical feature present in both states.
pub fn categorical_drift(
    reference: &WindowState,
    current: &WindowState,
    policy: &DriftPolicy,
) -> (Vec<FeatureDrift>, Vec<(String, StatsError)>) {
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for (feature, current_counts) in &current.categorical {
        let Some(reference_counts) = reference.categorical.get(feature) else { continue };
        let run = || -> Result<(DriftResult, u64), StatsError> {
            let mut r = CategoricalSketch::with_vocabulary(reference_counts.keys().cloned().collect())?;
            let mut c = r.empty_like();
            for (value, n) in reference_counts {
                r.add_count(value, *n);
            }
            for (value, n) in current_counts {
                c.add_count(value, *n);
            }
            let kind = if r.vocabulary().len() == 2 && c.other() == 0 {
                FeatureKind::Binary
            } else {
                FeatureKind::Categorical
            };
            let choice = policy.choose(kind, c.count());
            Ok((run_categorical(choice, &r, &c)?, c.count()))
        };
        match run() {
            Ok((result, current_count)) => {
                results.push(FeatureDrift { feature: feature.clone(), result, current_count })
            }
            Err(error) => skipped.push((feature.clone(), error)),
        }
    }
    (results, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_events::{decode_prediction_view, encode, PredictionEvent};
    use vigil_stats::DriftTest;

    /// A deterministic, roughly normal sample (sum of uniforms from an LCG).
    fn normalish(n: usize, seed: u64, shift: f64) -> Vec<f64> {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n).map(|_| (0..12).map(|_| next()).sum::<f64>() - 6.0 + shift).collect()
    }

    fn state(values_a: &[f64], values_b: &[f64]) -> WindowState {
        let mut s = WindowState::default();
        for (a, b) in values_a.iter().zip(values_b) {
            let e = PredictionEvent {
                prediction_id: "p".into(),
                model_id: "m".into(),
                model_version: "v".into(),
                numeric_features: [("stable".to_owned(), *a), ("shifted".to_owned(), *b)].into(),
                ..Default::default()
            };
            s.add(&decode_prediction_view(&encode(&e)).unwrap(), false);
        }
        s
    }

    #[test]
    fn a_shifted_feature_drifts_and_a_stable_one_does_not() {
        let reference = state(&normalish(2000, 1, 0.0), &normalish(2000, 2, 0.0));
        let current = state(&normalish(500, 3, 0.0), &normalish(500, 4, 1.0));
        let (results, skipped) = numeric_drift(&reference, &current, &DriftPolicy::default());
        assert!(skipped.is_empty(), "{skipped:?}");
        let by_name = |name: &str| results.iter().find(|r| r.feature == name).unwrap().result;
        let (stable, shifted) = (by_name("stable"), by_name("shifted"));
        assert_eq!(stable.test, DriftTest::Ks, "500 values: the small-window test");
        assert!(!stable.drifted && stable.statistic < 0.1, "{stable:?}");
        assert!(shifted.drifted && shifted.statistic > 0.3 && shifted.p_value.unwrap() < 1e-6, "{shifted:?}");
        assert!(shifted.error_bound.is_some());
    }

    fn devices(counts: &[(&str, u32)]) -> WindowState {
        let mut s = WindowState::default();
        for (value, n) in counts {
            for _ in 0..*n {
                let e = PredictionEvent {
                    prediction_id: "p".into(),
                    model_id: "m".into(),
                    model_version: "v".into(),
                    categorical_features: [("device".to_owned(), (*value).to_owned())].into(),
                    ..Default::default()
                };
                s.add(&decode_prediction_view(&encode(&e)).unwrap(), false);
            }
        }
        s
    }

    #[test]
    fn categorical_features_are_tested_on_the_reference_categories() {
        let policy = DriftPolicy::default();
        let reference = devices(&[("ios", 300), ("android", 300), ("web", 300)]);
        let same = devices(&[("ios", 100), ("android", 95), ("web", 105)]);
        let (results, skipped) = categorical_drift(&reference, &same, &policy);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(results[0].result.test, DriftTest::ChiSquare);
        let two_sample = DriftPolicy {
            categorical_small: vigil_stats::TestChoice::of(DriftTest::ChiSquare2Samp),
            ..DriftPolicy::default()
        };
        let (results_2samp, _) = categorical_drift(&reference, &same, &two_sample);
        assert!(
            results_2samp[0].result.p_value > results[0].result.p_value,
            "the reference's own noise widens the test"
        );
        assert!(!results[0].result.drifted, "{results:?}");
        // A category the reference never saw pools into "other" and drives the drift.
        let shifted = devices(&[("ios", 100), ("android", 50), ("web", 50), ("tv", 100)]);
        let (results, _) = categorical_drift(&reference, &shifted, &policy);
        assert!(results[0].result.drifted && results[0].result.p_value.unwrap() < 1e-6, "{results:?}");
        // Two values: the two-proportion Z-test.
        let (yes_no, later) = (devices(&[("yes", 500), ("no", 500)]), devices(&[("yes", 300), ("no", 100)]));
        let (results, _) = categorical_drift(&yes_no, &later, &policy);
        assert_eq!(results[0].result.test, DriftTest::ZTest);
        assert!(results[0].result.drifted, "{results:?}");
    }

    #[test]
    fn large_windows_use_normed_wasserstein() {
        let reference = state(&normalish(3000, 1, 0.0), &normalish(3000, 2, 0.0));
        let current = state(&normalish(2000, 3, 0.0), &normalish(2000, 4, 0.5));
        let (results, _) = numeric_drift(&reference, &current, &DriftPolicy::default());
        let shifted = results.iter().find(|r| r.feature == "shifted").unwrap();
        assert_eq!(shifted.result.test, DriftTest::WassersteinNormed);
        // A 0.5 sd shift of a unit-variance feature moves W1 by about 0.5.
        assert!((shifted.result.statistic - 0.5).abs() < 0.1 && shifted.result.drifted, "{shifted:?}");
    }
}
