//! Probabilistic binary metrics: log loss, Brier score, expected calibration error.

use serde::{Deserialize, Serialize};

use crate::error::{require, Result, StatsError};
use crate::exact::ExactSum;

/// Number of equal-width bins for the expected calibration error.
pub const ECE_BINS: usize = 10;

/// Streaming accumulator for predicted probabilities of the positive class `p` and outcomes
/// `y` in {0, 1}:
/// - log loss `mean(-(y ln p' + (1 - y) ln(1 - p)'))`, with probabilities clipped to
///   `[eps, 1 - eps]`, `eps` = f64 machine epsilon, as `sklearn.metrics.log_loss`;
/// - Brier score `mean((p - y)^2)`, as `sklearn.metrics.brier_score_loss`;
/// - expected calibration error over 10 bins, `sum_b (n_b / N) |mean(y)_b - mean(p)_b|`, with the
///   bins of `sklearn.calibration.calibration_curve(n_bins=10)`: `[0, 0.1]`, `(0.1, 0.2]`, ...,
///   `(0.9, 1]`.
///
/// Probabilities outside [0, 1] (or NaN) are rejected by [`ProbabilityMetrics::update`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbabilityMetrics {
    n: u64,
    log_loss_sum: ExactSum,
    brier_sum: ExactSum,
    bin_count: [u64; ECE_BINS],
    bin_prob_sum: [ExactSum; ECE_BINS],
    bin_positive: [u64; ECE_BINS],
}

impl Default for ProbabilityMetrics {
    fn default() -> Self {
        ProbabilityMetrics {
            n: 0,
            log_loss_sum: ExactSum::new(),
            brier_sum: ExactSum::new(),
            bin_count: [0; ECE_BINS],
            bin_prob_sum: Default::default(),
            bin_positive: [0; ECE_BINS],
        }
    }
}

/// Streaming multiclass log loss: `mean(-ln p'[y])` where `p` is the predicted probability vector
/// and `p'` its entries clipped to `[eps, 1 - eps]` (no renormalisation), as
/// `sklearn.metrics.log_loss(y, P, labels=range(k))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MulticlassLogLoss {
    n_classes: usize,
    n: u64,
    sum: ExactSum,
}

impl MulticlassLogLoss {
    pub fn new(n_classes: usize) -> Result<Self> {
        if n_classes < 2 {
            return Err(StatsError::InvalidArgument("log loss needs at least two classes".into()));
        }
        Ok(MulticlassLogLoss { n_classes, n: 0, sum: ExactSum::new() })
    }

    /// Adds one event; `InvalidArgument` when `probabilities` has the wrong length, a value
    /// outside [0, 1], or `truth` is out of range.
    pub fn update(&mut self, probabilities: &[f64], truth: usize) -> Result<()> {
        if probabilities.len() != self.n_classes || truth >= self.n_classes {
            return Err(StatsError::InvalidArgument(format!(
                "expected {} probabilities and a class below that, got {} and class {truth}",
                self.n_classes,
                probabilities.len()
            )));
        }
        if probabilities.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err(StatsError::InvalidArgument("probability outside [0, 1]".into()));
        }
        let eps = f64::EPSILON;
        self.sum.add(-probabilities[truth].clamp(eps, 1.0 - eps).ln());
        self.n += 1;
        Ok(())
    }

    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if self.n_classes != other.n_classes {
            return Err(StatsError::Incompatible("log losses have different class counts"));
        }
        self.n += other.n;
        self.sum.merge(&other.sum);
        Ok(())
    }

    pub fn log_loss(&self) -> Result<f64> {
        require(1, self.n)?;
        Ok(self.sum.value() / self.n as f64)
    }
}

/// Interior bin edges as numpy's `linspace(0, 1, 11)[1:-1]` computes them (`i * 0.1`).
fn edge(i: usize) -> f64 {
    i as f64 * (1.0 / ECE_BINS as f64)
}

impl ProbabilityMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, p: f64, positive: bool) -> Result<()> {
        if !(0.0..=1.0).contains(&p) {
            return Err(StatsError::InvalidArgument(format!("probability {p} outside [0, 1]")));
        }
        let eps = f64::EPSILON;
        let y = if positive { 1.0 } else { 0.0 };
        let likelihood = if positive { p } else { 1.0 - p };
        self.log_loss_sum.add(-likelihood.clamp(eps, 1.0 - eps).ln());
        self.brier_sum.add((p - y) * (p - y));
        // searchsorted(edges[1:-1], p, side="left"): the number of interior edges < p.
        let b = (1..ECE_BINS).take_while(|&i| edge(i) < p).count();
        self.bin_count[b] += 1;
        self.bin_prob_sum[b].add(p);
        self.bin_positive[b] += u64::from(positive);
        self.n += 1;
        Ok(())
    }

    pub fn merge(&mut self, other: &Self) {
        self.n += other.n;
        self.log_loss_sum.merge(&other.log_loss_sum);
        self.brier_sum.merge(&other.brier_sum);
        for b in 0..ECE_BINS {
            self.bin_count[b] += other.bin_count[b];
            self.bin_prob_sum[b].merge(&other.bin_prob_sum[b]);
            self.bin_positive[b] += other.bin_positive[b];
        }
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn log_loss(&self) -> Result<f64> {
        require(1, self.n)?;
        Ok(self.log_loss_sum.value() / self.n as f64)
    }

    pub fn brier(&self) -> Result<f64> {
        require(1, self.n)?;
        Ok(self.brier_sum.value() / self.n as f64)
    }

    pub fn expected_calibration_error(&self) -> Result<f64> {
        require(1, self.n)?;
        let gap: f64 = (0..ECE_BINS)
            .filter(|&b| self.bin_count[b] > 0)
            .map(|b| (self.bin_positive[b] as f64 - self.bin_prob_sum[b].value()).abs())
            .sum();
        Ok(gap / self.n as f64)
    }
}
