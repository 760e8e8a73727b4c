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

use vigil_events::{RemediationAction, Severity};

use crate::drift::FeatureDrift;

#[derive(Debug, Clone, PartialEq)]
pub struct DriftPolicySettings {
    pub name: String,
    /// What a remediation asks the lifecycle consumer to do, and how urgent it is.
    pub action: RemediationAction,
    pub severity: Severity,
    pub min_events: u64,
    /// Breach when at least this many features drift in one window.
    pub min_drifted_features: usize,
    pub consecutive_windows: u32,
    /// Family-wise false alarm rate per window for p-value tests.
    pub family_alpha: f64,
}

impl Default for DriftPolicySettings {
    fn default() -> Self {
        Self {
            name: "feature_drift".into(),
            action: RemediationAction::Alert,
            severity: Severity::Warning,
            min_events: 100, min_drifted_features: 1,
            consecutive_windows: 2,
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
    let verdict = if drifted.len() >= settings.min_drifted_features { Verdict::Breach } else { Verdict::Healthy };
    PolicyCheck { verdict, drifted, tested, corrected_alpha }
}

/// Consecutive breaches per model version. Insufficient data neither extends nor resets a
/// streak: silence is not evidence either way.
#[derive(Debug, Default)]
pub struct Streaks(std::collections::HashMap<(String, String), u32>);

impl Streaks {
    /// Records a verdict; returns the streak length after it.
    pub fn record(&mut self, model: &str, version: &str, verdict: Verdict) -> u32 {
        let key = (model.to_owned(), version.to_owned());
        match verdict {
            Verdict::Breach => {
                let streak = self.0.entry(key).or_insert(0);
                *streak += 1;
                *streak
            }
            Verdict::Healthy => {
                self.0.remove(&key);
                0
            }
            Verdict::InsufficientData => self.0.get(&key).copied().unwrap_or(0),
        }
    }
}

/// A remediation id that only depends on what was decided, so a replay yields the same id.
pub fn remediation_id(model: &str, version: &str, window_start: u32, policy: &str, config_hash: &str) -> String {
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
                numeric_features: (0..features).map(|f| (format!("f{f:02}"), rng.normal() + if f == 0 { shift } else { 0.0 })).collect(),
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
        assert_eq!(streaks.record("m", "v", Verdict::Breach), 1);
        assert_eq!(streaks.record("m", "v", Verdict::InsufficientData), 1);
        assert_eq!(streaks.record("m", "v", Verdict::Breach), 2);
        assert_eq!(streaks.record("m", "v", Verdict::Healthy), 0);
    }

    #[test]
    fn remediation_ids_are_deterministic() {
        let a = remediation_id("m", "v1", 60, "feature_drift", "abc");
        assert_eq!(a, remediation_id("m", "v1", 60, "feature_drift", "abc"));
        assert_ne!(a, remediation_id("m", "v1", 120, "feature_drift", "abc"));
    }
}
