//! Regression metrics.

use serde::{Deserialize, Serialize};

use crate::error::{require, Result};
use crate::exact::ExactSum;

/// Streaming regression metrics over pairs (truth `y`, prediction `ŷ`), as scikit-learn:
/// MAE `mean|y - ŷ|`; RMSE `sqrt(mean (y - ŷ)^2)`; MAPE `mean(|y - ŷ| / max(|y|, eps))` with
/// `eps` = f64 machine epsilon (a fraction, not a percentage); R² `1 - SS_res / SS_tot`, which is
/// 1 when both are 0 and 0 when only `SS_tot` is 0 (`force_finite=True`); mean error
/// `mean(ŷ - y)` (positive = over-prediction). Every sum is exact ([`ExactSum`]), and `SS_tot`
/// comes from the exact sums of `y` and `y^2`, so merged partial states give the same numbers
/// however they were split. Non-finite pairs are counted in `nonfinite` and left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Repr", into = "Repr")]
pub struct RegressionMetrics {
    n: u64,
    abs_err: ExactSum,
    sq_err: ExactSum,
    pct_err: ExactSum,
    err: ExactSum,
    y_sum: ExactSum,
    /// Sum of `y^2`, each square added exactly (product plus its rounding error).
    y_sq: ExactSum,
    nonfinite: u64,
}

/// Serialized form; older states kept Welford's `y_mean` and `y_m2` instead of the sums of `y`.
#[derive(Serialize, Deserialize)]
struct Repr {
    n: u64,
    abs_err: ExactSum,
    sq_err: ExactSum,
    pct_err: ExactSum,
    err: ExactSum,
    #[serde(default)]
    y_sum: Option<ExactSum>,
    #[serde(default)]
    y_sq: Option<ExactSum>,
    #[serde(default, skip_serializing)]
    y_mean: Option<f64>,
    #[serde(default, skip_serializing)]
    y_m2: Option<f64>,
    nonfinite: u64,
}

impl From<Repr> for RegressionMetrics {
    fn from(r: Repr) -> Self {
        let n = r.n as f64;
        let mean = r.y_mean.unwrap_or(0.0);
        // Old states: sum y = n mean, sum y^2 = m2 + n mean^2.
        let y_sum = r.y_sum.unwrap_or_else(|| ExactSum::from(n * mean));
        let y_sq = r.y_sq.unwrap_or_else(|| ExactSum::from(r.y_m2.unwrap_or(0.0) + n * mean * mean));
        RegressionMetrics {
            n: r.n,
            abs_err: r.abs_err,
            sq_err: r.sq_err,
            pct_err: r.pct_err,
            err: r.err,
            y_sum,
            y_sq,
            nonfinite: r.nonfinite,
        }
    }
}

impl From<RegressionMetrics> for Repr {
    fn from(m: RegressionMetrics) -> Self {
        Repr {
            n: m.n,
            abs_err: m.abs_err,
            sq_err: m.sq_err,
            pct_err: m.pct_err,
            err: m.err,
            y_sum: Some(m.y_sum),
            y_sq: Some(m.y_sq),
            y_mean: None,
            y_m2: None,
            nonfinite: m.nonfinite,
        }
    }
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
        self.abs_err.add(e.abs());
        self.sq_err.add(e * e);
        self.pct_err.add(e.abs() / y.abs().max(f64::EPSILON));
        self.err.add(e);
        self.y_sum.add(y);
        self.y_sq.add_square(y);
    }

    pub fn merge(&mut self, other: &Self) {
        self.n += other.n;
        self.abs_err.merge(&other.abs_err);
        self.sq_err.merge(&other.sq_err);
        self.pct_err.merge(&other.pct_err);
        self.err.merge(&other.err);
        self.y_sum.merge(&other.y_sum);
        self.y_sq.merge(&other.y_sq);
        self.nonfinite += other.nonfinite;
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn nonfinite(&self) -> u64 {
        self.nonfinite
    }

    fn mean_of(&self, sum: &ExactSum) -> Result<f64> {
        require(1, self.n)?;
        Ok(sum.value() / self.n as f64)
    }

    pub fn mae(&self) -> Result<f64> {
        self.mean_of(&self.abs_err)
    }

    pub fn rmse(&self) -> Result<f64> {
        Ok(self.mean_of(&self.sq_err)?.sqrt())
    }

    pub fn mape(&self) -> Result<f64> {
        self.mean_of(&self.pct_err)
    }

    pub fn mean_error(&self) -> Result<f64> {
        self.mean_of(&self.err)
    }

    pub fn r2(&self) -> Result<f64> {
        require(1, self.n)?;
        let ss_res = self.sq_err.value();
        let ss_tot = ExactSum::centered_squares(self.n, &self.y_sum, &self.y_sq);
        Ok(match (ss_res == 0.0, ss_tot == 0.0) {
            (true, _) => 1.0,
            (false, true) => 0.0,
            _ => 1.0 - ss_res / ss_tot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_stored_before_exact_sums_still_read() {
        let mut now = RegressionMetrics::new();
        for (y, y_hat) in [(1.0, 2.0), (3.0, 3.0), (5.0, 2.0), (10.0, 9.5)] {
            now.update(y, y_hat);
        }
        // The old form: plain sums, and Welford's mean and m2 of y instead of its sums.
        let old = r#"{"n":4,"abs_err":4.5,"sq_err":10.25,"pct_err":1.65,"err":-2.5,"y_mean":4.75,"y_m2":44.75,"nonfinite":0}"#;
        let back: RegressionMetrics = serde_json::from_str(old).unwrap();
        assert_eq!((back.mae().unwrap(), back.rmse().unwrap()), (now.mae().unwrap(), now.rmse().unwrap()));
        assert!((back.r2().unwrap() - now.r2().unwrap()).abs() < 1e-12);
        let json = serde_json::to_string(&now).unwrap();
        assert!(json.contains("\"y_sum\":19.0") && !json.contains("y_mean"), "{json}");
        assert_eq!(serde_json::from_str::<RegressionMetrics>(&json).unwrap(), now);
    }
}
