//! Model performance metrics from streaming, mergeable accumulators.
//!
//! Conventions follow scikit-learn (checked against it by the golden vectors): a ratio whose
//! denominator is zero is 0 (sklearn's `zero_division=0`), metrics undefined for the input
//! (ROC AUC with one class) are errors, never NaN.

pub mod auc;
pub mod calibration;
pub mod classification;
pub mod regression;

pub use auc::{average_precision, roc_auc, ScoreHistogram, ScoreSample};
pub use calibration::{MulticlassLogLoss, ProbabilityMetrics};
pub use classification::{Averages, ClassMetrics, ConfusionMatrix};
pub use regression::RegressionMetrics;

/// `num / den`, or 0 when `den == 0`.
pub(crate) fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}
