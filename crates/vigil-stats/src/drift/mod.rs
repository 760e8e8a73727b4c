//! Drift tests between a reference and a current window.
//!
//! Each test returns a [`Statistic`]; [`DriftResult::judge`] turns it into a verdict with the
//! test's direction: tests with a p-value drift when `p_value < threshold`, distances drift when
//! `statistic >= threshold`. Empty inputs give [`crate::StatsError::NotEnoughData`], never NaN.
//! Definitions, edge cases and error bounds are in each module and in `docs/stats.md`.

pub mod chisq;
pub mod cvm;
pub mod hellinger;
pub mod js;
pub mod kolmogorov;
pub mod ks;
pub mod psi;
pub mod wasserstein;
pub mod ztest;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::sketch::{CategoricalSketch, NumericSketch};

/// Floor applied to empty-bin proportions where a logarithm or division needs one (PSI, and the
/// expected proportion of a category absent from the reference in the chi-square test).
pub const EMPTY_BIN_EPSILON: f64 = 1e-4;

/// The drift tests vigil implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftTest {
    Psi,
    Ks,
    Wasserstein,
    WassersteinNormed,
    JensenShannon,
    Hellinger,
    ChiSquare,
    /// Two-sample chi-square (test of homogeneity); the monitor's default for categorical windows.
    ChiSquare2Samp,
    CramerVonMises,
    ZTest,
}

impl DriftTest {
    pub const ALL: [DriftTest; 10] = [
        DriftTest::Psi,
        DriftTest::Ks,
        DriftTest::Wasserstein,
        DriftTest::WassersteinNormed,
        DriftTest::JensenShannon,
        DriftTest::Hellinger,
        DriftTest::ChiSquare,
        DriftTest::ChiSquare2Samp,
        DriftTest::CramerVonMises,
        DriftTest::ZTest,
    ];

    /// Stable snake_case name (the serde name).
    pub fn name(self) -> &'static str {
        match self {
            DriftTest::Psi => "psi",
            DriftTest::Ks => "ks",
            DriftTest::Wasserstein => "wasserstein",
            DriftTest::WassersteinNormed => "wasserstein_normed",
            DriftTest::JensenShannon => "jensen_shannon",
            DriftTest::Hellinger => "hellinger",
            DriftTest::ChiSquare => "chi_square",
            DriftTest::ChiSquare2Samp => "chi_square_2samp",
            DriftTest::CramerVonMises => "cramer_von_mises",
            DriftTest::ZTest => "z_test",
        }
    }

    /// Whether the verdict compares a p-value (drift when `p < threshold`) rather than the
    /// statistic (drift when `statistic >= threshold`).
    pub fn uses_p_value(self) -> bool {
        matches!(
            self,
            DriftTest::Ks
                | DriftTest::ChiSquare
                | DriftTest::ChiSquare2Samp
                | DriftTest::CramerVonMises
                | DriftTest::ZTest
        )
    }

    /// Default threshold: 0.05 for p-value tests; 0.1 for PSI, normed Wasserstein,
    /// Jensen-Shannon and Hellinger (the conventions Evidently also uses). Raw Wasserstein is in
    /// the feature's own unit, so its 0.1 default is only a placeholder to override.
    pub fn default_threshold(self) -> f64 {
        if self.uses_p_value() {
            0.05
        } else {
            0.1
        }
    }
}

impl std::str::FromStr for DriftTest {
    type Err = crate::StatsError;
    fn from_str(s: &str) -> Result<Self> {
        DriftTest::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| crate::StatsError::InvalidArgument(format!("unknown drift test {s:?}")))
    }
}

/// A test's raw output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Statistic {
    pub statistic: f64,
    pub p_value: Option<f64>,
    /// For tests run on a sketch: a bound on `|statistic - exact statistic on the raw values|`.
    /// `None` when the statistic is exact.
    pub error_bound: Option<f64>,
}

impl Statistic {
    pub(crate) fn exact(statistic: f64, p_value: Option<f64>) -> Self {
        Statistic { statistic, p_value, error_bound: None }
    }
}

/// A verdict: the test, its output, the threshold used and whether it says "drift".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftResult {
    pub test: DriftTest,
    pub statistic: f64,
    pub p_value: Option<f64>,
    pub error_bound: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
}

impl DriftResult {
    /// Applies the test's direction to `stat` (see [`DriftTest::uses_p_value`]).
    pub fn judge(test: DriftTest, stat: Statistic, threshold: f64) -> Self {
        let drifted = match (test.uses_p_value(), stat.p_value) {
            (true, Some(p)) => p < threshold,
            _ => stat.statistic >= threshold,
        };
        DriftResult {
            test,
            statistic: stat.statistic,
            p_value: stat.p_value,
            error_bound: stat.error_bound,
            threshold,
            drifted,
        }
    }
}

/// Sketches whose bins line up one to one with another sketch of the same reference.
pub trait Binned {
    /// Counts per bin, in a fixed order shared with compatible sketches.
    fn bin_counts(&self) -> &[u64];
    /// `Incompatible` unless `other` has the same bins.
    fn check_same_bins(&self, other: &Self) -> Result<()>;
}

impl Binned for NumericSketch {
    fn bin_counts(&self) -> &[u64] {
        self.counts()
    }
    fn check_same_bins(&self, other: &Self) -> Result<()> {
        self.check_compatible(other)
    }
}

impl Binned for CategoricalSketch {
    fn bin_counts(&self) -> &[u64] {
        self.counts()
    }
    fn check_same_bins(&self, other: &Self) -> Result<()> {
        self.check_compatible(other)
    }
}

/// Pairs of (reference, current) proportions without allocating (the binned tests run per
/// window and feature, so they avoid the heap).
pub(crate) fn proportion_pairs<'a>(
    reference: &'a [u64],
    current: &'a [u64],
) -> Result<impl Iterator<Item = (f64, f64)> + 'a> {
    if reference.len() != current.len() {
        return Err(crate::StatsError::Incompatible("count vectors have different lengths"));
    }
    let (nr, nc): (u64, u64) = (reference.iter().sum(), current.iter().sum());
    crate::error::require(1, nr)?;
    crate::error::require(1, nc)?;
    let (ir, ic) = (1.0 / nr as f64, 1.0 / nc as f64);
    Ok(reference.iter().zip(current).map(move |(&r, &c)| (r as f64 * ir, c as f64 * ic)))
}

/// Finite values of `xs`, sorted ascending.
pub(crate) fn sorted_finite(xs: &[f64]) -> Vec<f64> {
    // Sized up front: collecting a filter grows the vector by doubling, copying it each time.
    let mut v: Vec<f64> = Vec::with_capacity(xs.len());
    v.extend(xs.iter().copied().filter(|x| x.is_finite()));
    v.sort_by(f64::total_cmp);
    v
}
