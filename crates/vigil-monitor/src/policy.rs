//! Turning a closed window's drift verdicts into a decision.
//!
//! Testing 20 features every window multiplies false alarms, so verdicts are corrected for the
//! family of tests: a p-value test counts as drifted only when `p < family_alpha / m` (Bonferroni
//! over the `m` features tested in that window), which keeps the chance that a window without any
//! drift is flagged at or under `family_alpha`. Distance tests (normed Wasserstein,
//! Jensen-Shannon) have no p-value; they keep their threshold, which is an effect size, not a
//! probability. A window with fewer than `min_events` events is "insufficient data": neither
//! healthy nor failed. A breach must repeat over `consecutive_windows` windows (hysteresis)
//! before it becomes a remediation.
//!
//! Two budget policies sit next to it: **performance** (accuracy at least a floor, no more than a
//! given drop below the reference window's accuracy, MAE at most a ceiling), judged once a window
//! has `min_labeled` outcomes, and **latency** (p99 serving latency at most a ceiling), judged at
//! close. Every threshold can be set per model.

use std::collections::HashMap;

use vigil_events::{Evidence, RemediationAction, Severity};

use crate::drift::FeatureDrift;
use crate::performance::PerformanceSummary;

/// What a breach asks for, shared by every policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub name: String,
    pub action: RemediationAction,
    pub severity: Severity,
    /// Breaches in a row (hysteresis) before a remediation is sent.
    pub consecutive_windows: u32,
}

/// Accuracy and error budgets; a `None` threshold is not checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PerformancePolicySettings {
    pub escalation: Escalation,
    /// Windows with fewer outcomes so far are "insufficient data".
    pub min_labeled: u64,
    pub min_accuracy: Option<f64>,
    /// Largest allowed `reference accuracy - window accuracy`.
    pub max_accuracy_drop: Option<f64>,
    /// A drop only counts when a one-sided two-proportion Z-test says the window is worse than
    /// the reference at this level: a few dozen outcomes wander by more than 5 points.
    pub drop_alpha: f64,
    pub max_mae: Option<f64>,
}

impl Default for PerformancePolicySettings {
    fn default() -> Self {
        Self {
            escalation: Escalation {
                name: "performance".into(),
                action: RemediationAction::Alert,
                severity: Severity::Warning,
                consecutive_windows: 2,
            },
            min_labeled: 100,
            min_accuracy: None,
            max_accuracy_drop: Some(0.05),
            drop_alpha: 0.01,
            max_mae: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LatencyPolicySettings {
    pub escalation: Escalation,
    pub min_events: u64,
    pub max_p99_ms: Option<f64>,
}

impl Default for LatencyPolicySettings {
    fn default() -> Self {
        Self {
            escalation: Escalation {
                name: "latency".into(),
                action: RemediationAction::Alert,
                severity: Severity::Warning,
                consecutive_windows: 2,
            },
            min_events: 100,
            max_p99_ms: None,
        }
    }
}

/// A version that had traffic and then none for `windows` whole windows breaches (off when
/// `None`): the quiet model is one an operator must hear about.
#[derive(Debug, Clone, PartialEq)]
pub struct NoTrafficPolicySettings {
    pub escalation: Escalation,
    pub windows: Option<u32>,
}

impl Default for NoTrafficPolicySettings {
    fn default() -> Self {
        Self {
            escalation: Escalation {
                name: "no_traffic".into(),
                action: RemediationAction::Alert,
                severity: Severity::Warning,
                consecutive_windows: 1,
            },
            windows: None,
        }
    }
}

/// Every policy a model is held to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    pub drift: DriftPolicySettings,
    pub performance: PerformancePolicySettings,
    pub latency: LatencyPolicySettings,
    pub no_traffic: NoTrafficPolicySettings,
}

/// The default policies and per-model replacements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyBook {
    pub default: Policies,
    pub per_model: HashMap<String, Policies>,
}

impl PolicyBook {
    pub fn for_model(&self, model_id: &str) -> &Policies {
        self.per_model.get(model_id).unwrap_or(&self.default)
    }

    /// A description that is the same for the same settings (models in name order), for the
    /// configuration hash.
    pub fn canonical(&self) -> String {
        let models: std::collections::BTreeMap<_, _> = self.per_model.iter().collect();
        format!("{:?};{models:?}", self.default)
    }
}

/// A budget policy's verdict on one window, with what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// The number compared (the worst one on a breach); NaN without data.
    pub value: f64,
    pub threshold: f64,
    /// One entry per threshold crossed.
    pub evidence: Vec<Evidence>,
}

impl Judgement {
    fn insufficient() -> Self {
        Self { verdict: Verdict::InsufficientData, value: f64::NAN, threshold: f64::NAN, evidence: vec![] }
    }
}

/// Judges a window's performance against the budgets and, for the drop, the reference window's
/// accuracy (when the reference has enough outcomes itself).
pub fn check_performance(
    settings: &PerformancePolicySettings,
    window: &PerformanceSummary,
    reference: Option<&PerformanceSummary>,
) -> Judgement {
    if window.labeled < settings.min_labeled {
        return Judgement::insufficient();
    }
    let mut checks: Vec<(&str, f64, f64, bool)> = Vec::new();
    if let (Some(floor), Some(accuracy)) = (settings.min_accuracy, window.accuracy) {
        checks.push(("performance.accuracy", accuracy, floor, accuracy < floor));
    }
    let reference = reference.filter(|r| r.labeled >= settings.min_labeled);
    if let (Some(max_drop), Some(accuracy), Some((reference_accuracy, reference_labeled))) =
        (settings.max_accuracy_drop, window.accuracy, reference.and_then(|r| Some((r.accuracy?, r.labeled))))
    {
        let drop = reference_accuracy - accuracy;
        let correct = |accuracy: f64, n: u64| (accuracy * n as f64).round() as u64;
        // One-sided: half the two-sided p-value when the window is the worse one.
        let significant = vigil_stats::drift::ztest::z_test_counts(
            correct(reference_accuracy, reference_labeled),
            reference_labeled,
            correct(accuracy, window.labeled),
            window.labeled,
        )
        .ok()
        .and_then(|z| Some(z.statistic > 0.0 && z.p_value? / 2.0 < settings.drop_alpha))
        .unwrap_or(false);
        checks.push(("performance.accuracy_drop", drop, max_drop, drop > max_drop && significant));
    }
    if let (Some(ceiling), Some(mae)) = (settings.max_mae, window.mae) {
        checks.push(("performance.mae", mae, ceiling, mae > ceiling));
    }
    judge(checks)
}

pub fn check_latency(settings: &LatencyPolicySettings, events: u64, p99_ms: Option<f64>) -> Judgement {
    match (settings.max_p99_ms, p99_ms) {
        (Some(ceiling), Some(p99)) if events >= settings.min_events => {
            judge(vec![("latency.p99_ms", p99, ceiling, p99 > ceiling)])
        }
        _ => Judgement::insufficient(),
    }
}

/// Healthy when every check passes, a breach when any fails; nothing to check is insufficient.
fn judge(checks: Vec<(&str, f64, f64, bool)>) -> Judgement {
    let Some(&(_, first_value, first_threshold, _)) = checks.first() else {
        return Judgement::insufficient();
    };
    let failed: Vec<_> = checks.iter().filter(|c| c.3).collect();
    let (value, threshold) = failed.first().map_or((first_value, first_threshold), |c| (c.1, c.2));
    Judgement {
        verdict: if failed.is_empty() { Verdict::Healthy } else { Verdict::Breach },
        value,
        threshold,
        evidence: failed
            .iter()
            .map(|(metric, value, threshold, _)| Evidence {
                metric: (*metric).to_owned(),
                value: *value,
                threshold: *threshold,
                feature: None,
            })
            .collect(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DriftPolicySettings {
    pub escalation: Escalation,
    pub min_events: u64,
    /// Breach when at least this many features drift in one window.
    pub min_drifted_features: usize,
    /// Family-wise false alarm rate per window for p-value tests.
    pub family_alpha: f64,
}

impl Default for DriftPolicySettings {
    fn default() -> Self {
        Self {
            escalation: Escalation {
                name: "feature_drift".into(),
                action: RemediationAction::Alert,
                severity: Severity::Warning,
                consecutive_windows: 2,
            },
            min_events: 100,
            min_drifted_features: 1,
            family_alpha: 0.05,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    InsufficientData,
    Healthy,
    Breach,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::InsufficientData => "insufficient_data",
            Verdict::Healthy => "healthy",
            Verdict::Breach => "breach",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyCheck {
    pub verdict: Verdict,
    /// Features drifted after the correction.
    pub drifted: Vec<String>,
    pub tested: usize,
    /// The per-test significance level after the correction (p-value tests).
    pub corrected_alpha: f64,
}

/// One window's check, without memory of earlier windows.
pub fn check(settings: &DriftPolicySettings, events: u64, results: &[FeatureDrift]) -> PolicyCheck {
    let tested = results.len();
    let corrected_alpha = settings.family_alpha / tested.max(1) as f64;
    if events < settings.min_events || tested == 0 {
        return PolicyCheck { verdict: Verdict::InsufficientData, drifted: vec![], tested, corrected_alpha };
    }
    let drifted: Vec<String> = results
        .iter()
        .filter(|r| match r.result.p_value {
            Some(p) if r.result.test.uses_p_value() => p < corrected_alpha,
            _ => r.result.drifted,
        })
        .map(|r| r.feature.clone())
        .collect();
    let verdict =
        if drifted.len() >= settings.min_drifted_features { Verdict::Breach } else { Verdict::Healthy };
    PolicyCheck { verdict, drifted, tested, corrected_alpha }
}

/// Consecutive breaches per model version and policy. Insufficient data neither extends nor
/// resets a streak: silence is not evidence either way. Restored from `policy_checks` after a
/// restart.
#[derive(Debug, Default)]
pub struct Streaks {
    streaks: HashMap<(String, String, String), u32>,
    /// The newest window each (model, version, policy) has a verdict on.
    decided_up_to: HashMap<(String, String, String), u32>,
}

impl Streaks {
    /// Continues a streak stored before a restart, decided up to `window_start`.
    pub fn restore(&mut self, model: &str, version: &str, policy: &str, window_start: u32, streak: u32) {
        let key = (model.to_owned(), version.to_owned(), policy.to_owned());
        if streak > 0 {
            self.streaks.insert(key.clone(), streak);
        }
        self.decided_up_to.insert(key, window_start);
    }

    pub fn current(&self, model: &str, version: &str, policy: &str) -> u32 {
        self.streaks.get(&(model.to_owned(), version.to_owned(), policy.to_owned())).copied().unwrap_or(0)
    }

    /// Whether `window_start` is at or before the newest window this policy decided: a window
    /// closed again (late events, another group member, a restart) keeps its first verdict,
    /// and an old window does not re-enter a streak that has moved on.
    pub fn decided(&self, model: &str, version: &str, policy: &str, window_start: u32) -> bool {
        self.decided_up_to
            .get(&(model.to_owned(), version.to_owned(), policy.to_owned()))
            .is_some_and(|w| window_start <= *w)
    }

    /// The streak length a verdict would make, without recording it.
    pub fn preview(&self, model: &str, version: &str, policy: &str, verdict: Verdict) -> u32 {
        match verdict {
            Verdict::Breach => self.current(model, version, policy) + 1,
            Verdict::Healthy => 0,
            Verdict::InsufficientData => self.current(model, version, policy),
        }
    }

    /// Records a verdict on `window_start`; returns the streak length after it.
    pub fn record(
        &mut self,
        model: &str,
        version: &str,
        policy: &str,
        window_start: u32,
        verdict: Verdict,
    ) -> u32 {
        let key = (model.to_owned(), version.to_owned(), policy.to_owned());
        if verdict != Verdict::InsufficientData {
            let up_to = self.decided_up_to.entry(key.clone()).or_insert(window_start);
            *up_to = (*up_to).max(window_start);
        }
        match verdict {
            Verdict::Breach => {
                let streak = self.streaks.entry(key).or_insert(0);
                *streak += 1;
                *streak
            }
            Verdict::Healthy => {
                self.streaks.remove(&key);
                0
            }
            Verdict::InsufficientData => self.streaks.get(&key).copied().unwrap_or(0),
        }
    }
}

/// A remediation id that only depends on what was decided, so a replay yields the same id.
pub fn remediation_id(
    model: &str,
    version: &str,
    window_start: u32,
    policy: &str,
    config_hash: &str,
) -> String {
    let text = format!("{model}\u{1f}{version}\u{1f}{window_start}\u{1f}{policy}\u{1f}{config_hash}");
    format!("rem-{:016x}", vigil_events::fnv1a64(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::numeric_drift;
    use crate::window::WindowState;
    use vigil_events::{decode_prediction_view, encode, PredictionEvent};
    use vigil_stats::DriftPolicy;

    struct Lcg(u64);
    impl Lcg {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u1, u2) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
    }

    fn window(rng: &mut Lcg, events: usize, features: usize, shift: f64) -> WindowState {
        let mut state = WindowState::default();
        for _ in 0..events {
            let e = PredictionEvent {
                prediction_id: "p".into(),
                model_id: "m".into(),
                model_version: "v".into(),
                numeric_features: (0..features)
                    .map(|f| (format!("f{f:02}"), rng.normal() + if f == 0 { shift } else { 0.0 }))
                    .collect(),
                ..Default::default()
            };
            state.add(&decode_prediction_view(&encode(&e)).unwrap(), false);
        }
        state
    }

    /// 1,000 windows without drift, 20 features each: the share of windows flagged stays at or
    /// under the configured family-wise level.
    #[test]
    fn false_alarms_stay_under_the_family_level_without_drift() {
        let mut rng = Lcg(42);
        let settings = DriftPolicySettings::default();
        let reference = window(&mut rng, 2_000, 20, 0.0);
        let windows = 1_000;
        let mut flagged = 0;
        let mut uncorrected = 0;
        for _ in 0..windows {
            let current = window(&mut rng, 200, 20, 0.0);
            let (results, _) = numeric_drift(&reference, &current, &DriftPolicy::default());
            if check(&settings, current.events, &results).verdict == Verdict::Breach {
                flagged += 1;
            }
            uncorrected += usize::from(results.iter().any(|r| r.result.drifted));
        }
        let rate = flagged as f64 / windows as f64;
        eprintln!("false alarm rate {rate} (uncorrected {})", uncorrected as f64 / windows as f64);
        assert!(rate <= settings.family_alpha, "false alarm rate {rate} above {}", settings.family_alpha);
        assert!(uncorrected > flagged, "the correction is what keeps the rate down");
    }

    #[test]
    fn a_real_shift_is_still_caught_after_the_correction() {
        let mut rng = Lcg(7);
        let reference = window(&mut rng, 2_000, 20, 0.0);
        let current = window(&mut rng, 200, 20, 0.8);
        let (results, _) = numeric_drift(&reference, &current, &DriftPolicy::default());
        let check = check(&DriftPolicySettings::default(), current.events, &results);
        assert_eq!(check.verdict, Verdict::Breach);
        assert_eq!(check.drifted, vec!["f00".to_owned()]);
    }

    #[test]
    fn small_windows_are_insufficient_data_and_do_not_break_a_streak() {
        let settings = DriftPolicySettings::default();
        assert_eq!(check(&settings, 10, &[]).verdict, Verdict::InsufficientData);
        let mut streaks = Streaks::default();
        assert_eq!(streaks.record("m", "v", "p", 0, Verdict::Breach), 1);
        assert_eq!(streaks.record("m", "v", "p", 60, Verdict::InsufficientData), 1);
        assert!(!streaks.decided("m", "v", "p", 60), "insufficient data decides nothing");
        assert_eq!(streaks.record("m", "v", "other", 60, Verdict::Breach), 1, "streaks are per policy");
        assert_eq!(streaks.record("m", "v", "p", 120, Verdict::Breach), 2);
        assert!(streaks.decided("m", "v", "p", 120) && streaks.decided("m", "v", "p", 0));
        assert!(!streaks.decided("m", "v", "p", 180));
        assert_eq!(streaks.record("m", "v", "p", 180, Verdict::Healthy), 0);
        streaks.restore("m", "v", "p", 600, 4);
        assert!(streaks.decided("m", "v", "p", 600), "restored with the window it was decided up to");
        assert_eq!(streaks.record("m", "v", "p", 660, Verdict::Breach), 5, "a restored streak continues");
    }

    fn summary(labeled: u64, accuracy: f64) -> PerformanceSummary {
        PerformanceSummary { labeled, accuracy: Some(accuracy), ..Default::default() }
    }

    #[test]
    fn performance_is_judged_against_floor_and_reference_once_labelled_enough() {
        let settings = PerformancePolicySettings { min_accuracy: Some(0.7), ..Default::default() };
        let reference = summary(500, 0.85);
        assert_eq!(
            check_performance(&settings, &summary(99, 0.1), Some(&reference)).verdict,
            Verdict::InsufficientData
        );
        let healthy = check_performance(&settings, &summary(200, 0.82), Some(&reference));
        assert_eq!((healthy.verdict, healthy.evidence.len()), (Verdict::Healthy, 0));
        let dropped = check_performance(&settings, &summary(400, 0.75), Some(&reference));
        assert_eq!(dropped.verdict, Verdict::Breach);
        assert_eq!(
            dropped.evidence.iter().map(|e| e.metric.as_str()).collect::<Vec<_>>(),
            vec!["performance.accuracy_drop"]
        );
        assert!((dropped.value - 0.10).abs() < 1e-12 && dropped.threshold == 0.05);
        let both = check_performance(&settings, &summary(200, 0.6), Some(&reference));
        assert_eq!(both.evidence.len(), 2, "floor and drop");
        // 38 outcomes at 0.71 against 42 at 0.81 (a drop of 10 points) is noise: p = 0.15.
        let noisy = check_performance(
            &PerformancePolicySettings { min_labeled: 20, ..Default::default() },
            &summary(38, 0.71),
            Some(&summary(42, 0.81)),
        );
        assert_eq!(noisy.verdict, Verdict::Healthy, "{noisy:?}");
        // A reference without enough outcomes of its own is no yardstick.
        assert_eq!(
            check_performance(&settings, &summary(200, 0.75), Some(&summary(20, 0.99))).verdict,
            Verdict::Healthy
        );
        let no_thresholds = PerformancePolicySettings { max_accuracy_drop: None, ..Default::default() };
        assert_eq!(
            check_performance(&no_thresholds, &summary(200, 0.1), None).verdict,
            Verdict::InsufficientData
        );
    }

    #[test]
    fn latency_budget_needs_a_ceiling_and_enough_events() {
        let settings = LatencyPolicySettings { max_p99_ms: Some(50.0), ..Default::default() };
        assert_eq!(check_latency(&settings, 1_000, Some(40.0)).verdict, Verdict::Healthy);
        assert_eq!(check_latency(&settings, 1_000, Some(60.0)).verdict, Verdict::Breach);
        assert_eq!(check_latency(&settings, 10, Some(60.0)).verdict, Verdict::InsufficientData);
        assert_eq!(
            check_latency(&LatencyPolicySettings::default(), 1_000, Some(1e9)).verdict,
            Verdict::InsufficientData
        );
    }

    #[test]
    fn per_model_policies_replace_the_default() {
        let mut book = PolicyBook::default();
        let strict = Policies {
            latency: LatencyPolicySettings { max_p99_ms: Some(5.0), ..Default::default() },
            ..Default::default()
        };
        book.per_model.insert("fraud".into(), strict.clone());
        assert_eq!(book.for_model("fraud"), &strict);
        assert_eq!(book.for_model("churn"), &Policies::default());
    }

    #[test]
    fn remediation_ids_are_deterministic() {
        let a = remediation_id("m", "v1", 60, "feature_drift", "abc");
        assert_eq!(a, remediation_id("m", "v1", 60, "feature_drift", "abc"));
        assert_ne!(a, remediation_id("m", "v1", 120, "feature_drift", "abc"));
    }
}
