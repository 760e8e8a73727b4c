//! A closed window's rows, computed from its merged state and reference: pure, so the monitor
//! and `vigil replay` compute them the same way.

use vigil_stats::DriftPolicy;
use vigil_store::{FeatureDriftRow, WindowMetricsRow, WindowPerformanceRow};

use crate::drift::{categorical_drift, numeric_drift, FeatureDrift};
use crate::window::WindowState;

/// The drift tests the monitor runs: vigil-stats' default choice with the two-sample
/// chi-square for small categorical windows, since both sides of a window comparison are samples
/// (the goodness-of-fit form treats a small reference as exact and over-alarms).
pub fn drift_policy() -> DriftPolicy {
    DriftPolicy {
        categorical_small: vigil_stats::TestChoice::of(vigil_stats::DriftTest::ChiSquare2Samp),
        ..Default::default()
    }
}

/// What the rows of every window share.
#[derive(Debug, Clone)]
pub struct RowContext<'a> {
    pub window_seconds: u32,
    pub config_hash: &'a str,
    pub positive_label: &'a str,
    pub drift_policy: &'a DriftPolicy,
    pub computed_at: u32,
}

/// (model, version, segment) and the window start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey {
    pub model_id: String,
    pub model_version: String,
    pub segment: String,
    pub window_start: u32,
}

/// The reference a window is compared with.
pub struct ReferenceRef<'a> {
    pub id: &'a str,
    pub state: &'a WindowState,
}

impl ReferenceRef<'_> {
    /// A baseline window is its own reference: it is not tested against itself.
    pub fn is_window(&self, window_start: u32) -> bool {
        self.id.strip_prefix("baseline:").is_some_and(|rest| rest.ends_with(&format!(":{window_start}")))
    }
}

/// The drift test of every feature against the reference (none for the reference window itself),
/// as results for the policy and rows for `feature_drift`. Features whose test could not run are
/// returned by name with the reason.
pub fn drift(
    ctx: &RowContext<'_>,
    key: &RowKey,
    state: &WindowState,
    reference: &ReferenceRef<'_>,
) -> (Vec<FeatureDrift>, Vec<FeatureDriftRow>, Vec<(String, String)>) {
    if reference.is_window(key.window_start) {
        return (vec![], vec![], vec![]);
    }
    let (mut results, mut skipped) = numeric_drift(reference.state, state, ctx.drift_policy);
    let (categorical, categorical_skipped) = categorical_drift(reference.state, state, ctx.drift_policy);
    results.extend(categorical);
    skipped.extend(categorical_skipped);
    let rows = results
        .iter()
        .map(|r| FeatureDriftRow {
            model_id: key.model_id.clone(),
            model_version: key.model_version.clone(),
            segment: key.segment.clone(),
            window_start: key.window_start,
            feature: r.feature.clone(),
            test: r.result.test.name().to_owned(),
            statistic: r.result.statistic,
            p_value: r.result.p_value,
            error_bound: r.result.error_bound,
            threshold: r.result.threshold,
            drifted: u8::from(r.result.drifted),
            current_count: r.current_count,
            events: state.events,
            reference_id: reference.id.to_owned(),
            config_hash: ctx.config_hash.to_owned(),
            computed_at: ctx.computed_at,
        })
        .collect();
    let skipped = skipped.into_iter().map(|(feature, error)| (feature, error.to_string())).collect();
    (results, rows, skipped)
}

pub fn metrics(
    ctx: &RowContext<'_>,
    key: &RowKey,
    state: &WindowState,
    reference_id: &str,
    source_partition: u32,
) -> WindowMetricsRow {
    let summary = state.summary();
    let [p50, p95, p99] = summary.latency_ms.map_or([None; 3], |l| l.map(Some));
    WindowMetricsRow {
        model_id: key.model_id.clone(),
        model_version: key.model_version.clone(),
        segment: key.segment.clone(),
        window_start: key.window_start,
        window_seconds: ctx.window_seconds,
        events: state.events,
        late_events: state.late_events,
        latency_p50_ms: p50,
        latency_p95_ms: p95,
        latency_p99_ms: p99,
        score_mean: summary.score_mean,
        predicted_labels: serde_json::to_string(&summary.predicted_labels).unwrap_or_default(),
        feature_means: serde_json::to_string(&summary.feature_means).unwrap_or_default(),
        features_missing: summary.features_missing,
        reference_id: reference_id.to_owned(),
        config_hash: ctx.config_hash.to_owned(),
        source_partition,
        computed_at: ctx.computed_at,
    }
}

pub fn performance(
    ctx: &RowContext<'_>,
    key: &RowKey,
    state: &WindowState,
    reference_id: &str,
) -> WindowPerformanceRow {
    let summary = state.performance.as_ref().map(|p| p.summary(ctx.positive_label)).unwrap_or_default();
    WindowPerformanceRow {
        model_id: key.model_id.clone(),
        model_version: key.model_version.clone(),
        segment: key.segment.clone(),
        window_start: key.window_start,
        window_seconds: ctx.window_seconds,
        predictions: state.events,
        labeled: summary.labeled,
        coverage: if state.events == 0 { 0.0 } else { summary.labeled as f64 / state.events as f64 },
        accuracy: summary.accuracy,
        precision: summary.precision,
        recall: summary.recall,
        f1: summary.f1,
        auc: summary.auc,
        brier: summary.brier,
        log_loss: summary.log_loss,
        ece: summary.ece,
        mae: summary.mae,
        rmse: summary.rmse,
        mean_error: summary.mean_error,
        revision: state.events + summary.labeled,
        reference_id: reference_id.to_owned(),
        config_hash: ctx.config_hash.to_owned(),
        computed_at: ctx.computed_at,
    }
}
