//! What a window knows about its predictions' outcomes so far: mergeable accumulators from
//! vigil-stats, filled by the outcome join and stored inside the window's partial states, so a
//! late outcome only adds to its prediction's window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_stats::perf::{ConfusionMatrix, ProbabilityMetrics, RegressionMetrics, ScoreHistogram};
use vigil_stats::StatsError;

use crate::window::{add_capped, count_capped, CATEGORY_CAP, OTHER};

/// AUC from 100 fixed score bins: the binned value is within `sum pos_b neg_b / (2PN)` of the
/// exact one (vigil-stats), small for a calibrated model.
const AUC_BINS: usize = 100;

/// What the model said, kept by the join until the outcome arrives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Predicted {
    pub label: Option<std::sync::Arc<str>>,
    pub score: Option<f64>,
    pub value: Option<f64>,
}

/// What actually happened.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    pub label: Option<String>,
    pub value: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerformanceState {
    /// Predictions of the window with an outcome.
    pub labeled: u64,
    /// True label -> predicted label -> count, labels capped like categorical features.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
    /// Positive-class scores split by outcome, for AUC.
    pub scores: Option<ScoreHistogram>,
    /// Brier score, log loss and calibration of the positive-class score.
    pub probability: Option<ProbabilityMetrics>,
    pub regression: Option<RegressionMetrics>,
}

/// The numbers reported for a window; `None` where a metric does not apply or is undefined
/// (AUC with one class present).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerformanceSummary {
    pub labeled: u64,
    pub accuracy: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub auc: Option<f64>,
    pub brier: Option<f64>,
    pub log_loss: Option<f64>,
    pub ece: Option<f64>,
    pub mae: Option<f64>,
    pub rmse: Option<f64>,
    pub mean_error: Option<f64>,
}

impl PerformanceState {
    /// Adds one joined pair. `positive_label` is the class the score is the probability of.
    pub fn add(&mut self, predicted: &Predicted, observed: &Observed, positive_label: &str) {
        self.labeled += 1;
        if let Some(truth) = &observed.label {
            if let Some(label) = &predicted.label {
                count_capped(confusion_row(&mut self.confusion, truth), label);
            }
            if let Some(score) = predicted.score.filter(|s| (0.0..=1.0).contains(s)) {
                let positive = truth == positive_label;
                self.scores.get_or_insert_with(new_score_histogram).update(score, positive);
                // In range, so the update cannot fail.
                let _ = self.probability.get_or_insert_with(ProbabilityMetrics::new).update(score, positive);
            }
        }
        if let (Some(y), Some(y_hat)) = (observed.value, predicted.value) {
            self.regression.get_or_insert_with(RegressionMetrics::new).update(y, y_hat);
        }
    }

    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        self.labeled += other.labeled;
        for (truth, row) in &other.confusion {
            let mine = confusion_row(&mut self.confusion, truth);
            for (label, n) in row {
                add_capped(mine, label, *n);
            }
        }
        match (&mut self.scores, &other.scores) {
            (Some(mine), Some(theirs)) => mine.merge(theirs)?,
            (None, Some(theirs)) => self.scores = Some(theirs.clone()),
            _ => {}
        }
        match (&mut self.probability, &other.probability) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.probability = Some(theirs.clone()),
            _ => {}
        }
        match (&mut self.regression, &other.regression) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.regression = Some(theirs.clone()),
            _ => {}
        }
        Ok(())
    }

    /// Accuracy over all classes. Precision, recall and F1 are those of `positive_label` when the
    /// labels are binary and include it (scikit-learn's `average="binary"`), else macro averages.
    pub fn summary(&self, positive_label: &str) -> PerformanceSummary {
        let mut summary = PerformanceSummary { labeled: self.labeled, ..Default::default() };
        if let Some(matrix) = self.confusion_matrix() {
            let (classes, matrix) = matrix;
            summary.accuracy = matrix.accuracy().ok();
            let averages = match classes.iter().position(|c| c == positive_label) {
                Some(p) if classes.len() == 2 => {
                    let m = matrix.class(p);
                    (m.precision, m.recall, m.f1)
                }
                _ => {
                    let m = matrix.macro_avg();
                    (m.precision, m.recall, m.f1)
                }
            };
            (summary.precision, summary.recall, summary.f1) =
                (Some(averages.0), Some(averages.1), Some(averages.2));
        }
        summary.auc = self.scores.as_ref().and_then(|s| s.roc_auc().ok()).map(|b| b.value);
        if let Some(p) = &self.probability {
            summary.brier = p.brier().ok();
            summary.log_loss = p.log_loss().ok();
            summary.ece = p.expected_calibration_error().ok();
        }
        if let Some(r) = &self.regression {
            summary.mae = r.mae().ok();
            summary.rmse = r.rmse().ok();
            summary.mean_error = r.mean_error().ok();
        }
        summary
    }

    /// The confusion counts over the sorted union of true and predicted labels; `None` before
    /// any labelled classification outcome (or with a single class overall).
    fn confusion_matrix(&self) -> Option<(Vec<String>, ConfusionMatrix)> {
        let mut classes: Vec<String> = self.confusion.keys().cloned().collect();
        classes.extend(self.confusion.values().flat_map(|row| row.keys().cloned()));
        classes.sort();
        classes.dedup();
        let index = |c: &str| classes.binary_search_by(|x| x.as_str().cmp(c)).expect("collected above");
        // One class seen so far: count it against a placeholder so accuracy is still defined.
        let n = classes.len().max(2);
        let mut matrix = ConfusionMatrix::new(n).ok()?;
        let mut any = false;
        for (truth, row) in &self.confusion {
            for (predicted, count) in row {
                matrix.add(index(truth), index(predicted), *count).ok()?;
                any |= *count > 0;
            }
        }
        any.then_some((classes, matrix))
    }
}

/// The row of true label `truth`, or of [`OTHER`] once [`CATEGORY_CAP`] labels have rows.
fn confusion_row<'m>(
    confusion: &'m mut BTreeMap<String, BTreeMap<String, u64>>,
    truth: &str,
) -> &'m mut BTreeMap<String, u64> {
    let key = if confusion.contains_key(truth) || confusion.len() < CATEGORY_CAP { truth } else { OTHER };
    if !confusion.contains_key(key) {
        confusion.insert(key.to_owned(), BTreeMap::new());
    }
    confusion.get_mut(key).expect("inserted above")
}

fn new_score_histogram() -> ScoreHistogram {
    ScoreHistogram::new(AUC_BINS).expect("constant bins are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(predicted: &str, score: f64, truth: &str) -> (Predicted, Observed) {
        (
            Predicted { label: Some(predicted.into()), score: Some(score), value: None },
            Observed { label: Some(truth.into()), value: None },
        )
    }

    fn state_of(pairs: &[(Predicted, Observed)]) -> PerformanceState {
        let mut state = PerformanceState::default();
        for (p, o) in pairs {
            state.add(p, o, "1");
        }
        state
    }

    // y_true = [1,1,0,0,1,0,1,0], y_pred = [1,0,0,1,1,0,1,0], scores as below. scikit-learn 1.9.1:
    // accuracy_score 0.75, precision_score 0.75, recall_score 0.75, f1_score 0.75,
    // roc_auc_score 0.9375, brier_score_loss 0.125.
    fn golden_pairs() -> Vec<(Predicted, Observed)> {
        let truth = ["1", "1", "0", "0", "1", "0", "1", "0"];
        let predicted = ["1", "0", "0", "1", "1", "0", "1", "0"];
        let scores = [0.9, 0.4, 0.2, 0.6, 0.8, 0.1, 0.7, 0.3];
        (0..8).map(|i| pair(predicted[i], scores[i], truth[i])).collect()
    }

    #[test]
    fn binary_metrics_match_scikit_learn() {
        let s = state_of(&golden_pairs()).summary("1");
        assert_eq!(s.labeled, 8);
        assert_eq!(s.accuracy, Some(0.75));
        assert_eq!((s.precision, s.recall, s.f1), (Some(0.75), Some(0.75), Some(0.75)));
        // Positives score 0.9, 0.4, 0.8, 0.7; negatives 0.2, 0.6, 0.1, 0.3: 15 of 16 pairs ordered.
        assert!((s.auc.unwrap() - 0.9375).abs() < 1e-12);
        // mean((p - y)^2) = (0.01 + 0.36 + 0.04 + 0.36 + 0.04 + 0.01 + 0.09 + 0.09) / 8
        assert!((s.brier.unwrap() - 1.0 / 8.0).abs() < 1e-12, "{:?}", s.brier);
        assert_eq!((s.mae, s.rmse), (None, None), "no regression outcomes");
    }

    #[test]
    fn merged_partials_equal_one_state() {
        let pairs = golden_pairs();
        let whole = state_of(&pairs);
        let mut merged = state_of(&pairs[..3]);
        merged.merge(&state_of(&pairs[3..])).unwrap();
        let (m, w) = (merged.summary("1"), whole.summary("1"));
        assert_eq!((m.labeled, m.accuracy, m.f1, m.auc, m.ece), (w.labeled, w.accuracy, w.f1, w.auc, w.ece));
        // Sums are exact: another grouping gives the same bits, and the same encoded state.
        assert_eq!((m.brier, m.log_loss), (w.brier, w.log_loss));
        let json = serde_json::to_string(&merged).unwrap();
        assert_eq!(json, serde_json::to_string(&whole).unwrap());
        assert_eq!(serde_json::from_str::<PerformanceState>(&json).unwrap(), merged);
    }

    #[test]
    fn multiclass_uses_macro_averages() {
        let pairs: Vec<_> =
            [("a", "a"), ("b", "a"), ("c", "c"), ("c", "b")].iter().map(|(p, t)| pair(p, 2.0, t)).collect();
        let s = state_of(&pairs).summary("1");
        assert_eq!(s.accuracy, Some(0.5));
        // Precision per class a 1/1, b 0/1, c 1/2; recall a 1/2, b 0/1, c 1/1: sklearn macro.
        assert!((s.precision.unwrap() - 0.5).abs() < 1e-12);
        assert!((s.recall.unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(s.auc, None, "scores outside [0, 1] are not probabilities");
    }

    #[test]
    fn regression_outcomes_give_errors() {
        let mut state = PerformanceState::default();
        for (y_hat, y) in [(1.0, 2.0), (3.0, 3.0), (5.0, 2.0)] {
            state.add(
                &Predicted { value: Some(y_hat), ..Default::default() },
                &Observed { value: Some(y), label: None },
                "1",
            );
        }
        let s = state.summary("1");
        assert_eq!(s.mae, Some(4.0 / 3.0));
        assert!((s.rmse.unwrap() - (10.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(s.mean_error, Some(2.0 / 3.0));
        assert_eq!(s.accuracy, None);
    }
}
