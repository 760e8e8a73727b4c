//! `[monitor.policy]` (feature drift), `[monitor.performance_policy]`, `[monitor.latency_policy]`
//! and per-model replacements in `[monitor.models.<model id>]`. What each policy decides is in
//! `crates/vigil-monitor/src/policy.rs`.

use serde::Deserialize;
use vigil_events::{RemediationAction, Severity};
use vigil_monitor::{
    DriftPolicySettings, Escalation, LatencyPolicySettings, NoTrafficPolicySettings,
    PerformancePolicySettings, Policies, PolicyBook,
};

use super::MonitorSection;

/// The feature-drift policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// Windows with fewer events are "insufficient data", neither healthy nor failed.
    pub min_events: u64,
    /// Breach when at least this many features drift in a window.
    pub min_drifted_features: usize,
    /// Breaches in a row before a remediation is sent.
    pub consecutive_windows: u32,
    /// Family-wise false alarm rate per window (Bonferroni over the features tested).
    pub family_alpha: f64,
    /// alert, hold_promotion, rollback or retrain (a request to the [[lifecycle.retrain]] pipelines).
    pub action: String,
    /// info, warning or critical.
    pub severity: String,
}

impl Default for PolicySection {
    fn default() -> Self {
        let d = DriftPolicySettings::default();
        Self {
            min_events: d.min_events,
            min_drifted_features: d.min_drifted_features,
            consecutive_windows: d.escalation.consecutive_windows,
            family_alpha: d.family_alpha,
            action: "alert".into(),
            severity: "warning".into(),
        }
    }
}

/// Accuracy and error budgets, judged once a window has `min_labeled` outcomes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformancePolicySection {
    pub min_labeled: u64,
    /// Breach below this accuracy; 0 (the default) never breaches.
    pub min_accuracy: f64,
    /// Breach when accuracy is more than this below the reference window's; 1 turns it off.
    pub max_accuracy_drop: f64,
    /// ... and a one-sided two-proportion Z-test finds the window worse at this level.
    pub drop_alpha: f64,
    /// Breach when the mean absolute error (regression) is above this; unset by default.
    pub max_mae: Option<f64>,
    pub consecutive_windows: u32,
    pub action: String,
    pub severity: String,
}

impl Default for PerformancePolicySection {
    fn default() -> Self {
        let d = PerformancePolicySettings::default();
        Self {
            min_labeled: d.min_labeled,
            min_accuracy: 0.0,
            max_accuracy_drop: d.max_accuracy_drop.unwrap_or(1.0),
            drop_alpha: d.drop_alpha,
            max_mae: d.max_mae,
            consecutive_windows: d.escalation.consecutive_windows,
            action: "alert".into(),
            severity: "warning".into(),
        }
    }
}

/// The serving latency budget, judged at window close.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyPolicySection {
    pub min_events: u64,
    /// Breach when a window's p99 serving latency is above this; unset (off) by default.
    pub max_p99_ms: Option<f64>,
    pub consecutive_windows: u32,
    pub action: String,
    pub severity: String,
}

impl Default for LatencyPolicySection {
    fn default() -> Self {
        let d = LatencyPolicySettings::default();
        Self {
            min_events: d.min_events,
            max_p99_ms: d.max_p99_ms,
            consecutive_windows: d.escalation.consecutive_windows,
            action: "alert".into(),
            severity: "warning".into(),
        }
    }
}

/// A version that had traffic and then none for `windows` whole windows breaches `no_traffic`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoTrafficPolicySection {
    /// Silent windows before the breach; unset (off) by default.
    pub windows: Option<u32>,
    pub action: String,
    pub severity: String,
}

impl Default for NoTrafficPolicySection {
    fn default() -> Self {
        Self { windows: None, action: "alert".into(), severity: "warning".into() }
    }
}

/// One model's windows and thresholds; what is not set comes from `[monitor]` and the sections
/// above. `action` and `severity` apply to every policy of the model (e.g. `rollback`/`critical`
/// for a model in a canary rollout).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPolicySection {
    /// This model's window length (see `monitor.window_seconds`).
    pub window_seconds: Option<u32>,
    /// A window starts every this many seconds (see `monitor.slide_seconds`).
    pub slide_seconds: Option<u32>,
    pub min_drifted_features: Option<usize>,
    pub family_alpha: Option<f64>,
    pub min_accuracy: Option<f64>,
    pub max_accuracy_drop: Option<f64>,
    pub max_mae: Option<f64>,
    pub max_p99_ms: Option<f64>,
    /// Silent windows before `no_traffic` breaches for this model's versions; 0 turns it off.
    pub no_traffic_windows: Option<u32>,
    pub action: Option<String>,
    pub severity: Option<String>,
}

fn action(key: &str, value: &str, errors: &mut Vec<String>) -> RemediationAction {
    match value {
        "alert" => RemediationAction::Alert,
        "hold_promotion" => RemediationAction::HoldPromotion,
        "rollback" => RemediationAction::Rollback,
        "retrain" => RemediationAction::Retrain,
        _ => {
            errors.push(format!("{key}: {value:?} must be alert, hold_promotion, rollback or retrain"));
            RemediationAction::Alert
        }
    }
}

fn severity(key: &str, value: &str, errors: &mut Vec<String>) -> Severity {
    match value {
        "info" => Severity::Info,
        "warning" => Severity::Warning,
        "critical" => Severity::Critical,
        _ => {
            errors.push(format!("{key}: {value:?} must be info, warning or critical"));
            Severity::Warning
        }
    }
}

/// Builds the policy book, collecting every invalid value (with its key) in `errors`.
fn build(m: &MonitorSection, errors: &mut Vec<String>) -> PolicyBook {
    let (d, p, l, q) = (&m.policy, &m.performance_policy, &m.latency_policy, &m.no_traffic_policy);
    let escalation =
        |name: &str, section: &str, consecutive_windows: u32, a: &str, s: &str, errors: &mut Vec<String>| {
            if consecutive_windows == 0 {
                errors.push(format!("monitor.{section}.consecutive_windows: must be at least 1"));
            }
            Escalation {
                name: name.to_owned(),
                action: action(&format!("monitor.{section}.action"), a, errors),
                severity: severity(&format!("monitor.{section}.severity"), s, errors),
                consecutive_windows,
            }
        };
    let default = Policies {
        drift: DriftPolicySettings {
            escalation: escalation(
                "feature_drift",
                "policy",
                d.consecutive_windows,
                &d.action,
                &d.severity,
                errors,
            ),
            min_events: d.min_events,
            min_drifted_features: d.min_drifted_features,
            family_alpha: d.family_alpha,
        },
        performance: PerformancePolicySettings {
            escalation: escalation(
                "performance",
                "performance_policy",
                p.consecutive_windows,
                &p.action,
                &p.severity,
                errors,
            ),
            min_labeled: p.min_labeled,
            min_accuracy: (p.min_accuracy > 0.0).then_some(p.min_accuracy),
            max_accuracy_drop: (p.max_accuracy_drop < 1.0).then_some(p.max_accuracy_drop),
            drop_alpha: p.drop_alpha,
            max_mae: p.max_mae,
        },
        latency: LatencyPolicySettings {
            escalation: escalation(
                "latency",
                "latency_policy",
                l.consecutive_windows,
                &l.action,
                &l.severity,
                errors,
            ),
            min_events: l.min_events,
            max_p99_ms: l.max_p99_ms,
        },
        no_traffic: NoTrafficPolicySettings {
            escalation: escalation("no_traffic", "no_traffic_policy", 1, &q.action, &q.severity, errors),
            windows: q.windows,
        },
    };
    if q.windows == Some(0) {
        errors.push(
            "monitor.no_traffic_policy.windows: must be at least 1 (leave it unset to turn the policy off)"
                .into(),
        );
    }
    check_thresholds("monitor.policy", Some(d.family_alpha), Some(d.min_drifted_features), errors);
    check_fraction("monitor.performance_policy.min_accuracy", Some(p.min_accuracy), errors);
    check_fraction("monitor.performance_policy.max_accuracy_drop", Some(p.max_accuracy_drop), errors);
    if !(p.drop_alpha > 0.0 && p.drop_alpha < 1.0) {
        errors.push(format!(
            "monitor.performance_policy.drop_alpha: {} must be in (0, 1), e.g. 0.01",
            p.drop_alpha
        ));
    }
    check_positive("monitor.performance_policy.max_mae", p.max_mae, errors);
    check_positive("monitor.latency_policy.max_p99_ms", l.max_p99_ms, errors);
    let mut per_model = std::collections::HashMap::new();
    for (model, o) in &m.models {
        let key = format!("monitor.models.{model}");
        check_thresholds(&key, o.family_alpha, o.min_drifted_features, errors);
        check_fraction(&format!("{key}.min_accuracy"), o.min_accuracy, errors);
        check_fraction(&format!("{key}.max_accuracy_drop"), o.max_accuracy_drop, errors);
        check_positive(&format!("{key}.max_mae"), o.max_mae, errors);
        check_positive(&format!("{key}.max_p99_ms"), o.max_p99_ms, errors);
        let mut policies = default.clone();
        policies.drift.min_drifted_features =
            o.min_drifted_features.unwrap_or(policies.drift.min_drifted_features);
        policies.drift.family_alpha = o.family_alpha.unwrap_or(policies.drift.family_alpha);
        policies.performance.min_accuracy = o.min_accuracy.or(policies.performance.min_accuracy);
        policies.performance.max_accuracy_drop =
            o.max_accuracy_drop.or(policies.performance.max_accuracy_drop);
        policies.performance.max_mae = o.max_mae.or(policies.performance.max_mae);
        policies.latency.max_p99_ms = o.max_p99_ms.or(policies.latency.max_p99_ms);
        match o.no_traffic_windows {
            Some(0) => policies.no_traffic.windows = None,
            Some(windows) => policies.no_traffic.windows = Some(windows),
            None => {}
        }
        let model_action = o.action.as_deref().map(|a| action(&format!("{key}.action"), a, errors));
        let model_severity = o.severity.as_deref().map(|s| severity(&format!("{key}.severity"), s, errors));
        for escalation in [
            &mut policies.drift.escalation,
            &mut policies.performance.escalation,
            &mut policies.latency.escalation,
            &mut policies.no_traffic.escalation,
        ] {
            escalation.action = model_action.unwrap_or(escalation.action);
            escalation.severity = model_severity.unwrap_or(escalation.severity);
        }
        per_model.insert(model.clone(), policies);
    }
    PolicyBook { default, per_model }
}

fn check_thresholds(
    key: &str,
    family_alpha: Option<f64>,
    min_drifted_features: Option<usize>,
    errors: &mut Vec<String>,
) {
    if let Some(alpha) = family_alpha.filter(|a| !(*a > 0.0 && *a < 1.0)) {
        errors.push(format!("{key}.family_alpha: {alpha} must be in (0, 1), e.g. 0.05"));
    }
    if min_drifted_features == Some(0) {
        errors.push(format!("{key}.min_drifted_features: must be at least 1"));
    }
}

fn check_fraction(key: &str, value: Option<f64>, errors: &mut Vec<String>) {
    if let Some(v) = value.filter(|v| !(0.0..=1.0).contains(v)) {
        errors.push(format!("{key}: {v} must be between 0 and 1"));
    }
}

fn check_positive(key: &str, value: Option<f64>, errors: &mut Vec<String>) {
    if let Some(v) = value.filter(|v| !(*v > 0.0 && v.is_finite())) {
        errors.push(format!("{key}: {v} must be a positive number"));
    }
}

/// Reports every invalid policy value.
pub(super) fn check(m: &MonitorSection, errors: &mut Vec<String>) {
    build(m, errors);
}

/// The validated policies (after [`check`] passed).
pub(super) fn book(m: &MonitorSection) -> PolicyBook {
    build(m, &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_model_sections_replace_only_what_they_set() {
        let mut m = MonitorSection::default();
        m.latency_policy.max_p99_ms = Some(250.0);
        m.models.insert(
            "fraud".into(),
            ModelPolicySection {
                max_p99_ms: Some(50.0),
                min_accuracy: Some(0.9),
                action: Some("rollback".into()),
                ..Default::default()
            },
        );
        let mut errors = Vec::new();
        let book = build(&m, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let fraud = book.for_model("fraud");
        assert_eq!(fraud.latency.max_p99_ms, Some(50.0));
        assert_eq!(fraud.performance.min_accuracy, Some(0.9));
        assert_eq!(fraud.drift.escalation.action, RemediationAction::Rollback);
        assert_eq!(fraud.performance.max_accuracy_drop, Some(0.05), "the default drop budget stays");
        let other = book.for_model("churn");
        assert_eq!((other.latency.max_p99_ms, other.performance.min_accuracy), (Some(250.0), None));
        assert_eq!(other.drift.escalation.action, RemediationAction::Alert);
    }

    #[test]
    fn every_bad_value_is_named_by_its_key() {
        let mut m = MonitorSection::default();
        m.performance_policy.max_accuracy_drop = 1.5;
        m.latency_policy.action = "page".into();
        m.models.insert(
            "fraud".into(),
            ModelPolicySection {
                max_p99_ms: Some(-1.0),
                severity: Some("loud".into()),
                ..Default::default()
            },
        );
        let mut errors = Vec::new();
        build(&m, &mut errors);
        let keys: Vec<&str> = errors.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            vec![
                "monitor.latency_policy.action",
                "monitor.performance_policy.max_accuracy_drop",
                "monitor.models.fraud.max_p99_ms",
                "monitor.models.fraud.severity",
            ],
            "{errors:?}"
        );
    }
}
