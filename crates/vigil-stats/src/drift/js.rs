//! Jensen-Shannon distance.

use super::{proportion_pairs, Binned, Statistic};
use crate::error::Result;

/// Jensen-Shannon distance, base 2, as `scipy.spatial.distance.jensenshannon(p, q, base=2)`:
/// `sqrt((KL(p || m) + KL(q || m)) / 2)` with `m = (p + q) / 2` and logarithms base 2, where
/// `0 * log 0 = 0` so empty bins need no epsilon. In [0, 1]; 0 for identical distributions, 1 for
/// disjoint supports; higher means more drift. Either side empty: `NotEnoughData`.
pub fn jensen_shannon_counts(reference: &[u64], current: &[u64]) -> Result<Statistic> {
    // Per bin, a ln(a/m) + b ln(b/m) with m = (a+b)/2. Written with t = (a-b)/(a+b) it is
    // m g(t), g(t) = (1+t) ln(1+t) + (1-t) ln(1-t): a short even series when |t| is small (bins
    // that barely moved, the common case in monitoring), two logarithms otherwise.
    let js: f64 = proportion_pairs(reference, current)?
        .map(|(a, b)| {
            let s = a + b;
            if s == 0.0 {
                return 0.0;
            }
            let t = (a - b) / s;
            if t.abs() <= 0.25 {
                return 0.5 * s * g_series(t * t);
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

/// `g(t) = (1+t) ln(1+t) + (1-t) ln(1-t) = sum_{k>=1} t^(2k) / (k (2k-1))` from `t2 = t^2`, for
/// `|t| <= 1/4`: thirteen terms leave a remainder below 1e-18 relative.
fn g_series(t2: f64) -> f64 {
    // 1 / (k (2k - 1)) for k = 1..=13.
    const C: [f64; 13] = {
        let mut c = [0.0; 13];
        let mut k = 1;
        while k <= 13 {
            c[k - 1] = 1.0 / ((k * (2 * k - 1)) as f64);
            k += 1;
        }
        c
    };
    C.iter().rev().fold(0.0, |acc, &c| acc * t2 + c) * t2
}

/// Jensen-Shannon distance between two compatible sketches.
pub fn jensen_shannon<B: Binned>(reference: &B, current: &B) -> Result<Statistic> {
    reference.check_same_bins(current)?;
    jensen_shannon_counts(reference.bin_counts(), current.bin_counts())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_matches_the_logarithms() {
        for i in -250..=250 {
            let t = i as f64 / 1000.0;
            // g(t) = ln(1 - t^2) + 2 t atanh(t): terms near -t^2 and 2t^2, so little cancellation.
            let exact = (-t * t).ln_1p() + 2.0 * t * t.atanh();
            let series = g_series(t * t);
            assert!((series - exact).abs() <= 1e-15 * exact.abs() + 1e-300, "t={t}: {series} vs {exact}");
        }
    }
}
