//! Two-proportion Z-test for binary features.

use statrs::distribution::{ContinuousCDF, Normal};

use super::Statistic;
use crate::error::{require, Result};
use crate::sketch::CategoricalSketch;

/// Pooled two-proportion Z-test: `z = (p1 - p2) / sqrt(P (1 - P) (1/n1 + 1/n2))` with `p1`, `p2`
/// the reference and current proportions of positives and `P` the pooled proportion; two-sided
/// p-value `2 * sf(|z|)` under the standard normal (computed with the survival function, not
/// `1 - cdf`, so small p-values keep their precision). Drift when `p < threshold`.
///
/// Edge cases: either sample empty gives `NotEnoughData`; when `P` is 0 or 1 (both samples all
/// negative or all positive) the proportions are equal and the result is `z = 0`, `p = 1`.
pub fn z_test_counts(ref_pos: u64, ref_n: u64, cur_pos: u64, cur_n: u64) -> Result<Statistic> {
    require(1, ref_n)?;
    require(1, cur_n)?;
    if ref_pos > ref_n || cur_pos > cur_n {
        return Err(crate::StatsError::InvalidArgument("more positives than observations".into()));
    }
    let (n1, n2) = (ref_n as f64, cur_n as f64);
    let (p1, p2) = (ref_pos as f64 / n1, cur_pos as f64 / n2);
    let pooled = (ref_pos + cur_pos) as f64 / (n1 + n2);
    let var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2);
    if var <= 0.0 {
        return Ok(Statistic::exact(0.0, Some(1.0)));
    }
    let z = (p1 - p2) / var.sqrt();
    let normal = Normal::standard();
    Ok(Statistic::exact(z, Some((2.0 * normal.sf(z.abs())).min(1.0))))
}

/// Z-test on a sketch with one or two vocabulary entries: "negative" is the first vocabulary
/// entry (the vocabulary is sorted, so `"0"` before `"1"`, `"false"` before `"true"`) and
/// "positive" everything else, including values outside the vocabulary. `InvalidArgument` for a
/// vocabulary of more than two entries.
pub fn z_test(reference: &CategoricalSketch, current: &CategoricalSketch) -> Result<Statistic> {
    reference.check_compatible(current)?;
    if reference.vocabulary().len() > 2 {
        return Err(crate::StatsError::InvalidArgument("z-test needs at most two categories".into()));
    }
    let positives = |s: &CategoricalSketch| s.count() - s.counts()[0];
    z_test_counts(positives(reference), reference.count(), positives(current), current.count())
}
