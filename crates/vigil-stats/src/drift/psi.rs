//! Population Stability Index.

use super::{proportion_pairs, Binned, Statistic, EMPTY_BIN_EPSILON};
use crate::error::Result;

/// PSI over bins: `sum_i (q_i - p_i) * ln(q_i / p_i)` with `p` the reference and `q` the current
/// proportions, each proportion that is exactly 0 replaced by [`EMPTY_BIN_EPSILON`] (1e-4) so
/// the logarithm stays finite. Non-negative and symmetric; higher means more drift (0.1 "some",
/// 0.25 "major" by the usual rule of thumb). Either side empty: `NotEnoughData`.
pub fn psi_counts(reference: &[u64], current: &[u64]) -> Result<Statistic> {
    let floor = |x: f64| if x == 0.0 { EMPTY_BIN_EPSILON } else { x };
    let psi = proportion_pairs(reference, current)?
        .map(|(p, q)| (floor(q) - floor(p)) * (floor(q) / floor(p)).ln())
        .sum();
    Ok(Statistic::exact(psi, None))
}

/// PSI between two compatible sketches (numeric bins or categories).
pub fn psi<B: Binned>(reference: &B, current: &B) -> Result<Statistic> {
    reference.check_same_bins(current)?;
    psi_counts(reference.bin_counts(), current.bin_counts())
}
