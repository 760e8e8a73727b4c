//! Pearson chi-square goodness-of-fit test for categorical features.

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::{Statistic, EMPTY_BIN_EPSILON};
use crate::error::{require, Result};
use crate::sketch::CategoricalSketch;

/// Chi-square test of the current counts against the reference proportions, as
/// `scipy.stats.chisquare(f_obs=current, f_exp=reference_proportions * n_current)`:
/// `X2 = sum_i (c_i - E_i)^2 / E_i`, p-value from the chi-square distribution with `k - 1`
/// degrees of freedom. Drift when `p < threshold`.
///
/// Cells: every entry of `reference`/`current` (the caller's bins); cells empty on both sides
/// are dropped. A cell empty in the reference but not in the current (a category never seen in
/// the reference) would make `E_i = 0` and the statistic infinite, so its expected proportion is
/// floored at [`EMPTY_BIN_EPSILON`] and all expected proportions renormalised to sum to 1.
/// Fewer than two cells: `X2 = 0`, `p = 1` (nothing can differ). Either side empty:
/// `NotEnoughData`.
pub fn chi_square_counts(reference: &[u64], current: &[u64]) -> Result<Statistic> {
    if reference.len() != current.len() {
        return Err(crate::StatsError::Incompatible("count vectors have different lengths"));
    }
    let n_ref: u64 = reference.iter().sum();
    let n_cur: u64 = current.iter().sum();
    require(1, n_ref)?;
    require(1, n_cur)?;
    // Two passes over the cells instead of collecting them: this runs per window and feature.
    let cells = || reference.iter().zip(current).filter(|(&r, &c)| r > 0 || c > 0);
    let inv_ref = 1.0 / n_ref as f64;
    let expected_share = |r: u64| {
        if r == 0 {
            EMPTY_BIN_EPSILON
        } else {
            r as f64 * inv_ref
        }
    };
    let (k, total) = cells().fold((0usize, 0.0f64), |(k, t), (&r, _)| (k + 1, t + expected_share(r)));
    if k < 2 {
        return Ok(Statistic::exact(0.0, Some(1.0)));
    }
    let scale = n_cur as f64 / total;
    let stat: f64 = cells()
        .map(|(&r, &c)| {
            let expected = expected_share(r) * scale;
            (c as f64 - expected).powi(2) / expected
        })
        .sum();
    let dist = ChiSquared::new((k - 1) as f64).expect("k - 1 >= 1");
    Ok(Statistic::exact(stat, Some(dist.sf(stat))))
}

/// Two-sample chi-square test of homogeneity: are `reference` and `current` drawn from the same
/// categorical distribution? As `scipy.stats.chi2_contingency([reference, current],
/// correction=False)` on the cells not empty on both sides: expected counts come from the pooled
/// proportions, `X2 = sum over both rows and all cells of (O - E)^2 / E`, `k - 1` degrees of
/// freedom. Unlike [`chi_square_counts`], which treats the reference proportions as exact, this
/// accounts for the reference being a sample too, so a small reference does not inflate false
/// alarms. Fewer than two cells: `X2 = 0`, `p = 1`. Either side empty: `NotEnoughData`.
pub fn chi_square_2samp_counts(reference: &[u64], current: &[u64]) -> Result<Statistic> {
    if reference.len() != current.len() {
        return Err(crate::StatsError::Incompatible("count vectors have different lengths"));
    }
    let n_ref: u64 = reference.iter().sum();
    let n_cur: u64 = current.iter().sum();
    require(1, n_ref)?;
    require(1, n_cur)?;
    let n = (n_ref + n_cur) as f64;
    let (share_ref, share_cur) = (n_ref as f64 / n, n_cur as f64 / n);
    let mut k = 0usize;
    let mut stat = 0.0;
    for (&r, &c) in reference.iter().zip(current).filter(|(&r, &c)| r > 0 || c > 0) {
        k += 1;
        let pooled = (r + c) as f64;
        let (e_ref, e_cur) = (pooled * share_ref, pooled * share_cur);
        stat += (r as f64 - e_ref).powi(2) / e_ref + (c as f64 - e_cur).powi(2) / e_cur;
    }
    if k < 2 {
        return Ok(Statistic::exact(0.0, Some(1.0)));
    }
    let dist = ChiSquared::new((k - 1) as f64).expect("k - 1 >= 1");
    Ok(Statistic::exact(stat, Some(dist.sf(stat))))
}

/// [`chi_square_2samp_counts`] between two sketches with the same vocabulary.
pub fn chi_square_2samp(reference: &CategoricalSketch, current: &CategoricalSketch) -> Result<Statistic> {
    reference.check_compatible(current)?;
    chi_square_2samp_counts(reference.counts(), current.counts())
}

/// Chi-square test between two sketches with the same vocabulary ("other" is one more cell).
pub fn chi_square(reference: &CategoricalSketch, current: &CategoricalSketch) -> Result<Statistic> {
    reference.check_compatible(current)?;
    chi_square_counts(reference.counts(), current.counts())
}
