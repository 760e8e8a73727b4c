//! Wasserstein-1 (earth mover's) distance.

use super::{sorted_finite, Statistic};
use crate::error::{require, Result};
use crate::sketch::NumericSketch;

/// Floor on the reference standard deviation in [`wasserstein_normed`], so a constant reference
/// gives a finite (large when the current moved) value instead of a division by zero. The same
/// floor Evidently uses, which keeps verdicts comparable.
pub const STD_FLOOR: f64 = 1e-3;

/// Wasserstein-1 distance on raw values, as `scipy.stats.wasserstein_distance(reference,
/// current)`: `W1 = integral |F_ref(x) - F_cur(x)| dx` over the empirical CDFs, in the feature's
/// unit. 0 for identical samples; higher means more drift. Non-finite values are ignored; either
/// side without finite values is `NotEnoughData`.
pub fn wasserstein(reference: &[f64], current: &[f64]) -> Result<Statistic> {
    let (a, b) = (sorted_finite(reference), sorted_finite(current));
    Ok(Statistic::exact(w1_sorted(&a, &b)?, None))
}

/// Wasserstein-1 divided by the reference's population standard deviation (ddof = 0), floored at
/// [`STD_FLOOR`]: a unit-free distance in "reference standard deviations", drift when
/// `>= threshold` (default 0.1).
pub fn wasserstein_normed(reference: &[f64], current: &[f64]) -> Result<Statistic> {
    let (a, b) = (sorted_finite(reference), sorted_finite(current));
    let w = w1_sorted(&a, &b)?;
    Ok(Statistic::exact(w / std_pop(&a).max(STD_FLOOR), None))
}

fn w1_sorted(a: &[f64], b: &[f64]) -> Result<f64> {
    require(1, a.len() as u64)?;
    require(1, b.len() as u64)?;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut prev: Option<f64> = None;
    let mut total = 0.0;
    // Merge the two sorted samples; between consecutive pooled values the CDFs are constant.
    while i < a.len() || j < b.len() {
        let take_a = j == b.len() || (i < a.len() && a[i] <= b[j]);
        let v = if take_a { a[i] } else { b[j] };
        if let Some(p) = prev {
            total += (i as f64 / na - j as f64 / nb).abs() * (v - p);
        }
        if take_a {
            i += 1;
        } else {
            j += 1;
        }
        prev = Some(v);
    }
    Ok(total)
}

fn std_pop(sorted: &[f64]) -> f64 {
    let n = sorted.len() as f64;
    let mean = sorted.iter().sum::<f64>() / n;
    (sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// Wasserstein-1 between two histograms with the same edges, assuming values spread uniformly
/// inside each bin (the under- and overflow bins span out to the smallest and largest value
/// either sketch saw). Each CDF is then within its bin's proportion of the true one, so
/// `|W1_binned - W1_exact| <= sum_j width_j (p_j + q_j)`, returned as `error_bound`.
pub fn wasserstein_binned(reference: &NumericSketch, current: &NumericSketch) -> Result<Statistic> {
    reference.check_compatible(current)?;
    let pairs = super::proportion_pairs(reference.counts(), current.counts())?;
    let (rlo, rhi) = reference.extent().expect("non-empty");
    let (clo, chi) = current.extent().expect("non-empty");
    let edges = reference.edges();
    let (lo, hi) = (rlo.min(clo), rhi.max(chi));
    // Bin j spans [bounds(j), bounds(j + 1)]: the outer bins reach the extreme values seen.
    let bounds = |j: usize| {
        if j == 0 {
            lo
        } else if j > edges.len() {
            hi
        } else {
            edges[j - 1]
        }
    };
    let (mut d0, mut total, mut bound) = (0.0f64, 0.0f64, 0.0f64);
    for (j, (pj, qj)) in pairs.enumerate() {
        let w = bounds(j + 1) - bounds(j);
        let d1 = d0 + pj - qj;
        total += w * linear_abs_mean(d0, d1);
        bound += w * (pj + qj);
        d0 = d1;
    }
    Ok(Statistic { statistic: total, p_value: None, error_bound: Some(bound) })
}

/// [`wasserstein_binned`] divided by the reference sketch's standard deviation (floored at
/// [`STD_FLOOR`]); the error bound is divided likewise.
pub fn wasserstein_normed_binned(reference: &NumericSketch, current: &NumericSketch) -> Result<Statistic> {
    let s = wasserstein_binned(reference, current)?;
    let norm = reference.std().unwrap_or(0.0).max(STD_FLOOR);
    Ok(Statistic {
        statistic: s.statistic / norm,
        p_value: None,
        error_bound: s.error_bound.map(|b| b / norm),
    })
}

/// Mean of `|d(t)|` for `d` linear from `d0` to `d1` on [0, 1].
fn linear_abs_mean(d0: f64, d1: f64) -> f64 {
    if d0 * d1 >= 0.0 {
        0.5 * (d0.abs() + d1.abs())
    } else {
        0.5 * (d0 * d0 + d1 * d1) / (d0.abs() + d1.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_by_constant_is_the_shift() {
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 2.5).collect();
        assert!((wasserstein(&a, &b).unwrap().statistic - 2.5).abs() < 1e-12);
    }

    #[test]
    fn constant_reference_uses_the_floor() {
        let s = wasserstein_normed(&[1.0; 5], &[1.0, 1.0, 1.0, 1.0, 2.0]).unwrap();
        assert!((s.statistic - 0.2 / STD_FLOOR).abs() < 1e-9);
    }
}
