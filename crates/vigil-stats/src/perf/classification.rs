//! Confusion matrix and the metrics derived from it.

use serde::{Deserialize, Serialize};

use super::ratio;
use crate::error::{require, Result, StatsError};

/// Confusion matrix over classes `0..n_classes`: `counts[t * n + p]` is the number of events with
/// true class `t` predicted as `p`. Binary classification is `n_classes = 2` with class 1
/// positive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    n_classes: usize,
    counts: Vec<u64>,
}

/// Precision, recall, F1 and support of one class (sklearn's `precision_recall_fscore_support`
/// with `zero_division=0`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Precision, recall and F1 averaged one way.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl ConfusionMatrix {
    pub fn new(n_classes: usize) -> Result<Self> {
        if n_classes < 2 {
            return Err(StatsError::InvalidArgument("a classifier needs at least two classes".into()));
        }
        Ok(ConfusionMatrix { n_classes, counts: vec![0; n_classes * n_classes] })
    }

    /// Counts one event; `InvalidArgument` for a class outside `0..n_classes`.
    #[inline]
    pub fn update(&mut self, truth: usize, predicted: usize) -> Result<()> {
        if truth >= self.n_classes || predicted >= self.n_classes {
            return Err(StatsError::InvalidArgument(format!(
                "class out of range: truth {truth}, predicted {predicted}, classes {}",
                self.n_classes
            )));
        }
        self.counts[truth * self.n_classes + predicted] += 1;
        Ok(())
    }

    /// Counts `n` events of true class `truth` predicted as `predicted` at once.
    pub fn add(&mut self, truth: usize, predicted: usize, n: u64) -> Result<()> {
        if n > 0 {
            self.update(truth, predicted)?;
            self.counts[truth * self.n_classes + predicted] += n - 1;
        }
        Ok(())
    }

    /// Adds `other`; `Incompatible` when the class counts differ.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if self.n_classes != other.n_classes {
            return Err(StatsError::Incompatible("confusion matrices have different class counts"));
        }
        self.counts.iter_mut().zip(&other.counts).for_each(|(a, b)| *a += b);
        Ok(())
    }

    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Count of events with true class `truth` predicted as `predicted`.
    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.n_classes + predicted]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Fraction of events predicted correctly; `NotEnoughData` when empty.
    pub fn accuracy(&self) -> Result<f64> {
        let total = self.total();
        require(1, total)?;
        let correct: u64 = (0..self.n_classes).map(|c| self.get(c, c)).sum();
        Ok(correct as f64 / total as f64)
    }

    fn tp_fp_fn(&self, c: usize) -> (u64, u64, u64) {
        let tp = self.get(c, c);
        let predicted: u64 = (0..self.n_classes).map(|t| self.get(t, c)).sum();
        let actual: u64 = (0..self.n_classes).map(|p| self.get(c, p)).sum();
        (tp, predicted - tp, actual - tp)
    }

    /// Metrics of class `c`; F1 is `2 tp / (2 tp + fp + fn)`.
    pub fn class(&self, c: usize) -> ClassMetrics {
        let (tp, fp, fneg) = self.tp_fp_fn(c);
        ClassMetrics {
            precision: ratio(tp as f64, (tp + fp) as f64),
            recall: ratio(tp as f64, (tp + fneg) as f64),
            f1: ratio(2.0 * tp as f64, (2 * tp + fp + fneg) as f64),
            support: tp + fneg,
        }
    }

    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.n_classes).map(|c| self.class(c)).collect()
    }

    /// Unweighted mean over classes (F1 is the mean of per-class F1, as sklearn).
    pub fn macro_avg(&self) -> Averages {
        let per = self.per_class();
        let n = per.len() as f64;
        Averages {
            precision: per.iter().map(|m| m.precision).sum::<f64>() / n,
            recall: per.iter().map(|m| m.recall).sum::<f64>() / n,
            f1: per.iter().map(|m| m.f1).sum::<f64>() / n,
        }
    }

    /// Mean over classes weighted by support (0 when there is no event).
    pub fn weighted_avg(&self) -> Averages {
        let per = self.per_class();
        let total: u64 = per.iter().map(|m| m.support).sum();
        let w = |f: fn(&ClassMetrics) -> f64| {
            ratio(per.iter().map(|m| f(m) * m.support as f64).sum::<f64>(), total as f64)
        };
        Averages { precision: w(|m| m.precision), recall: w(|m| m.recall), f1: w(|m| m.f1) }
    }

    /// Global counts of tp, fp and fn over all classes.
    pub fn micro_avg(&self) -> Averages {
        let (mut tp, mut fp, mut fneg) = (0u64, 0u64, 0u64);
        for c in 0..self.n_classes {
            let (a, b, d) = self.tp_fp_fn(c);
            tp += a;
            fp += b;
            fneg += d;
        }
        Averages {
            precision: ratio(tp as f64, (tp + fp) as f64),
            recall: ratio(tp as f64, (tp + fneg) as f64),
            f1: ratio(2.0 * tp as f64, (2 * tp + fp + fneg) as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_counts() {
        let mut m = ConfusionMatrix::new(2).unwrap();
        for (t, p) in [(1, 1), (1, 0), (0, 1), (0, 0), (1, 1)] {
            m.update(t, p).unwrap();
        }
        let pos = m.class(1);
        assert_eq!((pos.precision, pos.recall, pos.support), (2.0 / 3.0, 2.0 / 3.0, 3));
        assert_eq!(m.accuracy().unwrap(), 0.6);
        assert!(m.update(2, 0).is_err());
        assert!(ConfusionMatrix::new(2).unwrap().accuracy().is_err());
    }
}
