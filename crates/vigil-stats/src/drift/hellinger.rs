//! Hellinger distance.

use super::{proportion_pairs, Binned, Statistic};
use crate::error::Result;

/// Hellinger distance `sqrt(1/2 * sum_i (sqrt(p_i) - sqrt(q_i))^2)` between reference and
/// current proportions (the sum-of-squares form, which stays accurate near 0 where
/// `sqrt(1 - sum sqrt(p q))` cancels). In [0, 1]; higher means more drift; empty bins need no
/// epsilon. Either side empty: `NotEnoughData`.
pub fn hellinger_counts(reference: &[u64], current: &[u64]) -> Result<Statistic> {
    let s: f64 = proportion_pairs(reference, current)?.map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2)).sum();
    Ok(Statistic::exact((0.5 * s).sqrt(), None))
}

/// Hellinger distance between two compatible sketches.
pub fn hellinger<B: Binned>(reference: &B, current: &B) -> Result<Statistic> {
    reference.check_same_bins(current)?;
    hellinger_counts(reference.bin_counts(), current.bin_counts())
}
