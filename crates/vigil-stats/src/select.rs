//! Default choice of drift test by feature type and window size, and running a chosen test on
//! whatever a window holds (exact sample or histogram).

use serde::{Deserialize, Serialize};

use crate::drift::{self, DriftResult, DriftTest, Statistic};
use crate::error::{Result, StatsError};
use crate::sketch::{CategoricalSketch, NumericSketch};

/// How a feature's values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    Numeric,
    Categorical,
    /// Two values (or one): compared as proportions.
    Binary,
}

/// A test and the threshold its verdict uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestChoice {
    pub test: DriftTest,
    pub threshold: f64,
}

impl TestChoice {
    /// `test` with its default threshold.
    pub fn of(test: DriftTest) -> Self {
        TestChoice { test, threshold: test.default_threshold() }
    }
}

/// Which test runs for which feature and window size. The defaults follow the convention
/// popularised by Evidently: windows of up to `small_window` (1,000) current values use a
/// statistical test (KS for numeric, chi-square for categorical, p < 0.05), larger ones a
/// distance (normed Wasserstein, Jensen-Shannon, >= 0.1), because with large samples tests flag
/// differences too small to matter. Binary features always use the two-proportion Z-test.
/// Every field can be overridden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftPolicy {
    pub small_window: u64,
    pub numeric_small: TestChoice,
    pub numeric_large: TestChoice,
    pub categorical_small: TestChoice,
    pub categorical_large: TestChoice,
    pub binary: TestChoice,
}

impl Default for DriftPolicy {
    fn default() -> Self {
        DriftPolicy {
            small_window: 1000,
            numeric_small: TestChoice::of(DriftTest::Ks),
            numeric_large: TestChoice::of(DriftTest::WassersteinNormed),
            categorical_small: TestChoice::of(DriftTest::ChiSquare),
            categorical_large: TestChoice::of(DriftTest::JensenShannon),
            binary: TestChoice::of(DriftTest::ZTest),
        }
    }
}

impl DriftPolicy {
    /// The test for a feature of `kind` whose current window holds `n_current` values.
    pub fn choose(&self, kind: FeatureKind, n_current: u64) -> TestChoice {
        let small = n_current <= self.small_window;
        match (kind, small) {
            (FeatureKind::Numeric, true) => self.numeric_small,
            (FeatureKind::Numeric, false) => self.numeric_large,
            (FeatureKind::Categorical, true) => self.categorical_small,
            (FeatureKind::Categorical, false) => self.categorical_large,
            (FeatureKind::Binary, _) => self.binary,
        }
    }
}

/// A numeric window: its histogram, and all its values when it still has them.
#[derive(Debug, Clone, Copy)]
pub struct NumericData<'a> {
    pub sketch: &'a NumericSketch,
    pub exact: Option<&'a [f64]>,
}

/// Runs `choice` on two numeric windows. KS, Wasserstein and normed Wasserstein run exactly on
/// the raw values when both sides have them, and on the histograms otherwise (with an error
/// bound); Cramér-von Mises needs raw values; PSI, Jensen-Shannon, Hellinger and chi-square
/// compare histogram bins. The Z-test does not apply to numeric features.
pub fn run_numeric(choice: TestChoice, reference: NumericData, current: NumericData) -> Result<DriftResult> {
    use DriftTest::*;
    let (r, c) = (reference.sketch, current.sketch);
    let exact = reference.exact.zip(current.exact);
    let stat: Statistic = match (choice.test, exact) {
        (Ks, Some((a, b))) => drift::ks::ks_2samp(a, b)?,
        (Ks, None) => drift::ks::ks_binned(r, c)?,
        (Wasserstein, Some((a, b))) => drift::wasserstein::wasserstein(a, b)?,
        (Wasserstein, None) => drift::wasserstein::wasserstein_binned(r, c)?,
        (WassersteinNormed, Some((a, b))) => drift::wasserstein::wasserstein_normed(a, b)?,
        (WassersteinNormed, None) => drift::wasserstein::wasserstein_normed_binned(r, c)?,
        (CramerVonMises, Some((a, b))) => drift::cvm::cramer_von_mises(a, b)?,
        (CramerVonMises, None) => {
            return Err(StatsError::InvalidArgument("cramer-von mises needs exact samples".into()))
        }
        (Psi, _) => drift::psi::psi(r, c)?,
        (JensenShannon, _) => drift::js::jensen_shannon(r, c)?,
        (Hellinger, _) => drift::hellinger::hellinger(r, c)?,
        (ChiSquare, _) => {
            r.check_compatible(c)?;
            drift::chisq::chi_square_counts(r.counts(), c.counts())?
        }
        (ChiSquare2Samp, _) => {
            r.check_compatible(c)?;
            drift::chisq::chi_square_2samp_counts(r.counts(), c.counts())?
        }
        (ZTest, _) => return Err(StatsError::InvalidArgument("z-test applies to binary features".into())),
    };
    Ok(DriftResult::judge(choice.test, stat, choice.threshold))
}

/// Runs `choice` on two categorical (or binary) windows: PSI, Jensen-Shannon, Hellinger,
/// chi-square or Z-test; the tests on ordered values do not apply.
pub fn run_categorical(
    choice: TestChoice,
    reference: &CategoricalSketch,
    current: &CategoricalSketch,
) -> Result<DriftResult> {
    use DriftTest::*;
    let stat = match choice.test {
        Psi => drift::psi::psi(reference, current)?,
        JensenShannon => drift::js::jensen_shannon(reference, current)?,
        Hellinger => drift::hellinger::hellinger(reference, current)?,
        ChiSquare => drift::chisq::chi_square(reference, current)?,
        ChiSquare2Samp => drift::chisq::chi_square_2samp(reference, current)?,
        ZTest => drift::ztest::z_test(reference, current)?,
        Ks | Wasserstein | WassersteinNormed | CramerVonMises => {
            return Err(StatsError::InvalidArgument(format!("{} needs numeric values", choice.test.name())))
        }
    };
    Ok(DriftResult::judge(choice.test, stat, choice.threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_convention() {
        let p = DriftPolicy::default();
        assert_eq!(p.choose(FeatureKind::Numeric, 1000).test, DriftTest::Ks);
        assert_eq!(p.choose(FeatureKind::Numeric, 1001).test, DriftTest::WassersteinNormed);
        assert_eq!(p.choose(FeatureKind::Categorical, 10).test, DriftTest::ChiSquare);
        assert_eq!(p.choose(FeatureKind::Categorical, 5000).test, DriftTest::JensenShannon);
        assert_eq!(p.choose(FeatureKind::Binary, 5000).test, DriftTest::ZTest);
        assert_eq!(p.choose(FeatureKind::Binary, 5000).threshold, 0.05);
    }

    #[test]
    fn empty_current_is_not_enough_data() {
        let r = NumericSketch::reference(&[1.0, 2.0, 3.0], 3).unwrap();
        let c = r.empty_like();
        for test in [DriftTest::Ks, DriftTest::Psi, DriftTest::WassersteinNormed, DriftTest::JensenShannon] {
            let err = run_numeric(
                TestChoice::of(test),
                NumericData { sketch: &r, exact: None },
                NumericData { sketch: &c, exact: None },
            )
            .unwrap_err();
            assert_eq!(err, StatsError::NotEnoughData { needed: 1, got: 0 }, "{test:?}");
        }
    }
}
