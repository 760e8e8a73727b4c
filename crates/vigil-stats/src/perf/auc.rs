//! ROC AUC and PR AUC (average precision), exact and binned.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError};

/// Area under the ROC curve from raw scores, as `sklearn.metrics.roc_auc_score`: the trapezoidal
/// area, which equals the probability that a random positive outscores a random negative with
/// ties counted one half. `Undefined` when only one class is present, `InvalidArgument` on
/// non-finite scores or mismatched lengths.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    let groups = tie_groups(scores, labels)?;
    auc_from_groups(&groups)
}

/// Average precision from raw scores, as `sklearn.metrics.average_precision_score`:
/// `AP = sum_k (R_k - R_{k-1}) P_k` over the distinct score thresholds in decreasing order (a
/// step-wise PR AUC, no interpolation). `Undefined` when there is no positive.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Result<f64> {
    let groups = tie_groups(scores, labels)?;
    Ok(ap_from_groups(&groups)?.0)
}

/// (positives, negatives) per distinct score, highest score first.
fn tie_groups(scores: &[f64], labels: &[bool]) -> Result<Vec<(u64, u64)>> {
    if scores.len() != labels.len() {
        return Err(StatsError::InvalidArgument("scores and labels differ in length".into()));
    }
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(StatsError::InvalidArgument("scores must be finite".into()));
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut groups: Vec<(u64, u64)> = Vec::new();
    let mut last = f64::NAN;
    for i in order {
        if scores[i] != last {
            groups.push((0, 0));
            last = scores[i];
        }
        let g = groups.last_mut().expect("pushed");
        if labels[i] {
            g.0 += 1;
        } else {
            g.1 += 1;
        }
    }
    Ok(groups)
}

fn class_totals(groups: &[(u64, u64)]) -> (f64, f64) {
    let p: u64 = groups.iter().map(|g| g.0).sum();
    let n: u64 = groups.iter().map(|g| g.1).sum();
    (p as f64, n as f64)
}

/// Trapezoidal ROC area over groups in decreasing score order.
fn auc_from_groups(groups: &[(u64, u64)]) -> Result<f64> {
    let (p, n) = class_totals(groups);
    if p == 0.0 || n == 0.0 {
        return Err(StatsError::Undefined("roc auc needs both classes"));
    }
    let mut tp_before = 0.0;
    let mut area = 0.0;
    for &(pos, neg) in groups {
        area += neg as f64 * (tp_before + 0.5 * pos as f64);
        tp_before += pos as f64;
    }
    Ok(area / (p * n))
}

/// Average precision over groups, and the bound described on [`ScoreHistogram::average_precision`]
/// (meaningful only when groups are bins).
fn ap_from_groups(groups: &[(u64, u64)]) -> Result<(f64, f64)> {
    let (p, _) = class_totals(groups);
    if p == 0.0 {
        return Err(StatsError::Undefined("average precision needs a positive"));
    }
    let (mut tp, mut seen, mut ap, mut bound) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for &(pos, neg) in groups {
        let (a, b) = (tp, seen);
        tp += pos as f64;
        seen += (pos + neg) as f64;
        if pos == 0 {
            continue;
        }
        let precision = tp / seen;
        ap += pos as f64 / p * precision;
        // Inside the bin, the exact precision at each positive lies in [lo, hi].
        let lo = (a + 1.0) / seen;
        let hi = ((a + pos as f64) / (b + pos as f64)).min(1.0);
        bound += pos as f64 / p * (hi - precision).max(precision - lo);
    }
    Ok((ap, bound))
}

/// Mergeable exact sample of (score, label) pairs, for the exact [`roc_auc`] and
/// [`average_precision`] on windows of up to `cap` events. Past `cap` it drops its pairs and
/// [`ScoreSample::exact`] returns `None` (use a [`ScoreHistogram`] then); deterministic, like
/// [`crate::Reservoir`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSample {
    cap: usize,
    scores: Vec<f64>,
    labels: Vec<bool>,
    seen: u64,
}

impl ScoreSample {
    pub fn new(cap: usize) -> Self {
        ScoreSample { cap, scores: Vec::new(), labels: Vec::new(), seen: 0 }
    }

    pub fn update(&mut self, score: f64, positive: bool) {
        self.seen += 1;
        if self.seen <= self.cap as u64 {
            self.scores.push(score);
            self.labels.push(positive);
        } else {
            self.drop_pairs();
        }
    }

    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if self.cap != other.cap {
            return Err(StatsError::Incompatible("score samples have different caps"));
        }
        self.seen += other.seen;
        if self.seen <= self.cap as u64 {
            self.scores.extend_from_slice(&other.scores);
            self.labels.extend_from_slice(&other.labels);
        } else {
            self.drop_pairs();
        }
        Ok(())
    }

    fn drop_pairs(&mut self) {
        self.scores = Vec::new();
        self.labels = Vec::new();
    }

    /// All (scores, labels) of the window, or `None` once more than `cap` were seen.
    pub fn exact(&self) -> Option<(&[f64], &[bool])> {
        (self.seen <= self.cap as u64).then_some((self.scores.as_slice(), self.labels.as_slice()))
    }
}

/// Mergeable score histogram for binary classifiers: `bins` equal-width bins over [0, 1], with
/// positives and negatives counted per bin. Scores outside [0, 1] or non-finite are counted in
/// `invalid` and left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreHistogram {
    pos: Vec<u64>,
    neg: Vec<u64>,
    invalid: u64,
}

/// A binned metric and a bound on its distance to the exact value on the raw scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounded {
    pub value: f64,
    pub error_bound: f64,
}

impl ScoreHistogram {
    pub fn new(bins: usize) -> Result<Self> {
        if bins == 0 {
            return Err(StatsError::InvalidArgument("bins must be at least 1".into()));
        }
        Ok(ScoreHistogram { pos: vec![0; bins], neg: vec![0; bins], invalid: 0 })
    }

    #[inline]
    pub fn update(&mut self, score: f64, positive: bool) {
        if !(0.0..=1.0).contains(&score) {
            self.invalid += 1;
            return;
        }
        let b = ((score * self.pos.len() as f64) as usize).min(self.pos.len() - 1);
        if positive {
            self.pos[b] += 1;
        } else {
            self.neg[b] += 1;
        }
    }

    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if self.pos.len() != other.pos.len() {
            return Err(StatsError::Incompatible("score histograms have different bins"));
        }
        self.pos.iter_mut().zip(&other.pos).for_each(|(a, b)| *a += b);
        self.neg.iter_mut().zip(&other.neg).for_each(|(a, b)| *a += b);
        self.invalid += other.invalid;
        Ok(())
    }

    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    fn groups(&self) -> Vec<(u64, u64)> {
        self.pos.iter().zip(&self.neg).rev().map(|(&p, &n)| (p, n)).collect()
    }

    /// ROC AUC treating each bin as one tie group. Only pairs of a positive and a negative in
    /// the same bin can be misordered, each by at most one half, so
    /// `|AUC_binned - AUC_exact| <= sum_b pos_b neg_b / (2 P N)`.
    pub fn roc_auc(&self) -> Result<Bounded> {
        let groups = self.groups();
        let value = auc_from_groups(&groups)?;
        let (p, n) = class_totals(&groups);
        let same_bin: f64 = groups.iter().map(|&(a, b)| a as f64 * b as f64).sum();
        Ok(Bounded { value, error_bound: same_bin / (2.0 * p * n) })
    }

    /// Average precision treating each bin as one tie group. For a bin with `T` positives among
    /// `S` events after `A` positives among `B` earlier events, the exact precision at each of its
    /// positives lies between `(A + 1) / (B + S)` and `(A + T) / (B + T)`; the bound sums, over
    /// bins, `T / P` times the larger distance from the binned precision `(A + T) / (B + S)` to
    /// those limits.
    pub fn average_precision(&self) -> Result<Bounded> {
        let (value, error_bound) = ap_from_groups(&self.groups())?;
        Ok(Bounded { value, error_bound })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_reversed() {
        let s = [0.1, 0.2, 0.8, 0.9];
        assert_eq!(roc_auc(&s, &[false, false, true, true]).unwrap(), 1.0);
        assert_eq!(roc_auc(&s, &[true, true, false, false]).unwrap(), 0.0);
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]).unwrap(), 0.5);
        assert!(matches!(roc_auc(&s, &[true; 4]), Err(StatsError::Undefined(_))));
    }

    #[test]
    fn binned_is_within_its_bound() {
        let scores: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1000) as f64 / 1000.0).collect();
        let labels: Vec<bool> =
            scores.iter().enumerate().map(|(i, s)| (s + (i % 7) as f64 * 0.1) > 0.7).collect();
        let mut h = ScoreHistogram::new(20).unwrap();
        scores.iter().zip(&labels).for_each(|(&s, &l)| h.update(s, l));
        let exact = roc_auc(&scores, &labels).unwrap();
        let binned = h.roc_auc().unwrap();
        assert!((exact - binned.value).abs() <= binned.error_bound + 1e-12);
        let exact = average_precision(&scores, &labels).unwrap();
        let binned = h.average_precision().unwrap();
        assert!((exact - binned.value).abs() <= binned.error_bound + 1e-12);
    }
}
