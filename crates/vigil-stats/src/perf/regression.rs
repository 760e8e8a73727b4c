//! Regression metrics.

use serde::{Deserialize, Serialize};

use crate::error::{require, Result};

/// Streaming regression metrics over pairs (truth `y`, prediction `ŷ`), as scikit-learn:
/// MAE `mean|y - ŷ|`; RMSE `sqrt(mean (y - ŷ)^2)`; MAPE `mean(|y - ŷ| / max(|y|, eps))` with
/// `eps` = f64 machine epsilon (a fraction, not a percentage); R² `1 - SS_res / SS_tot`, which is
/// 1 when both are 0 and 0 when only `SS_tot` is 0 (`force_finite=True`); mean error
/// `mean(ŷ - y)` (positive = over-prediction). `SS_tot` uses Welford/Chan updates of the
/// mean and squared deviations of `y`, so merging partial states stays accurate. Non-finite
/// pairs are counted in `nonfinite` and left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    n: u64,
    abs_err: f64,
    sq_err: f64,
    pct_err: f64,
    err: f64,
    y_mean: f64,
    y_m2: f64,
    nonfinite: u64,
}

impl RegressionMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, y: f64, y_hat: f64) {
        if !y.is_finite() || !y_hat.is_finite() {
            self.nonfinite += 1;
            return;
        }
        let e = y_hat - y;
        self.n += 1;
        self.abs_err += e.abs();
        self.sq_err += e * e;
        self.pct_err += e.abs() / y.abs().max(f64::EPSILON);
        self.err += e;
        let d = y - self.y_mean;
        self.y_mean += d / self.n as f64;
        self.y_m2 += d * (y - self.y_mean);
    }

    pub fn merge(&mut self, other: &Self) {
        let (na, nb) = (self.n as f64, other.n as f64);
        if other.n > 0 {
            let n = na + nb;
            let d = other.y_mean - self.y_mean;
            self.y_mean += d * nb / n;
            self.y_m2 += other.y_m2 + d * d * na * nb / n;
        }
        self.n += other.n;
        self.abs_err += other.abs_err;
        self.sq_err += other.sq_err;
        self.pct_err += other.pct_err;
        self.err += other.err;
        self.nonfinite += other.nonfinite;
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn nonfinite(&self) -> u64 {
        self.nonfinite
    }

    fn mean_of(&self, sum: f64) -> Result<f64> {
        require(1, self.n)?;
        Ok(sum / self.n as f64)
    }

    pub fn mae(&self) -> Result<f64> {
        self.mean_of(self.abs_err)
    }

    pub fn rmse(&self) -> Result<f64> {
        Ok(self.mean_of(self.sq_err)?.sqrt())
    }

    pub fn mape(&self) -> Result<f64> {
        self.mean_of(self.pct_err)
    }

    pub fn mean_error(&self) -> Result<f64> {
        self.mean_of(self.err)
    }

    pub fn r2(&self) -> Result<f64> {
        require(1, self.n)?;
        Ok(match (self.sq_err == 0.0, self.y_m2 == 0.0) {
            (true, _) => 1.0,
            (false, true) => 0.0,
            _ => 1.0 - self.sq_err / self.y_m2,
        })
    }
}
