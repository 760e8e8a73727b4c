//! Jensen-Shannon distance.

use super::{proportion_pairs, Binned, Statistic};
use crate::error::Result;

/// Jensen-Shannon distance, base 2, as `scipy.spatial.distance.jensenshannon(p, q, base=2)`:
/// `sqrt((KL(p || m) + KL(q || m)) / 2)` with `m = (p + q) / 2` and logarithms base 2, where
/// `0 * log 0 = 0` so empty bins need no epsilon. In [0, 1]; 0 for identical distributions, 1 for
/// disjoint supports; higher means more drift. Either side empty: `NotEnoughData`.
pub fn jensen_shannon_counts(reference: &[u64], current: &[u64]) -> Result<Statistic> {
    // a ln(a/m) + b ln(b/m) with m = (a+b)/2, one reciprocal per bin instead of two divisions.
    let js: f64 = proportion_pairs(reference, current)?
        .map(|(a, b)| {
            let s = a + b;
            if s == 0.0 {
                return 0.0;
            }
            let inv_m = 2.0 / s;
            let term = |x: f64| if x > 0.0 { x * (x * inv_m).ln() } else { 0.0 };
            term(a) + term(b)
        })
        .sum::<f64>()
        / 2.0
        / std::f64::consts::LN_2;
    // Rounding can leave a tiny negative sum for identical inputs; scipy would return NaN there.
    Ok(Statistic::exact(js.max(0.0).sqrt(), None))
}

/// Jensen-Shannon distance between two compatible sketches.
pub fn jensen_shannon<B: Binned>(reference: &B, current: &B) -> Result<Statistic> {
    reference.check_same_bins(current)?;
    jensen_shannon_counts(reference.bin_counts(), current.bin_counts())
}
