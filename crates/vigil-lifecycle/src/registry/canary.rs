//! Canary analysis as a pure state machine over one verdict per analysis window, after Flagger
//! and Argo Rollouts: a healthy window moves the weight up by `step_weight` until `max_weight`;
//! at `max_weight`, `promote_after_healthy_windows` consecutive healthy windows promote; every
//! failed window counts, and `failed_check_threshold` of them roll back; a window without enough
//! data pauses and never advances.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Failed,
    /// Too few samples (or none) to judge: the analysis waits.
    InsufficientData,
}

impl Verdict {
    /// One window's verdict from all its checks: any failure fails it; otherwise any missing
    /// data makes it inconclusive; an empty set of checks is inconclusive too.
    pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut combined = None;
        for verdict in verdicts {
            combined = Some(match (combined, verdict) {
                (_, Verdict::Failed) | (Some(Verdict::Failed), _) => Verdict::Failed,
                (_, Verdict::InsufficientData) | (Some(Verdict::InsufficientData), _) => {
                    Verdict::InsufficientData
                }
                _ => Verdict::Healthy,
            });
        }
        combined.unwrap_or(Verdict::InsufficientData)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryConfig {
    /// Judge the canary window by window from what the monitor stored (its policy checks, and
    /// `checks` against production) and step, promote or roll back by this state machine. Off:
    /// a canary moves only by hand or by a remediation.
    pub analysis: bool,
    /// Canary-against-production checks on each window's metrics (see [`WINDOW_METRICS`]).
    pub checks: Vec<RelativeCheck>,
    /// Traffic added per healthy window, and the weight a canary starts at.
    pub step_weight: f64,
    pub max_weight: f64,
    /// Failed windows (not necessarily consecutive) that roll the canary back.
    pub failed_check_threshold: u32,
    /// Consecutive healthy windows at `max_weight` before promotion.
    pub promote_after_healthy_windows: u32,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        // Flagger's documented example: 10% steps to 50%, five failed checks.
        Self {
            analysis: false,
            checks: Vec::new(),
            step_weight: 0.1,
            max_weight: 0.5,
            failed_check_threshold: 5,
            promote_after_healthy_windows: 1,
        }
    }
}

impl CanaryConfig {
    pub(crate) fn check(&self, key: &str, problems: &mut Vec<String>) {
        if !(self.step_weight > 0.0 && self.step_weight <= 1.0) {
            problems.push(format!("{key}.step_weight must be in (0, 1], got {}", self.step_weight));
        }
        if !(self.max_weight > 0.0 && self.max_weight <= 1.0) {
            problems.push(format!("{key}.max_weight must be in (0, 1], got {}", self.max_weight));
        } else if self.step_weight > self.max_weight {
            problems.push(format!(
                "{key}.step_weight ({}) must not exceed max_weight ({})",
                self.step_weight, self.max_weight
            ));
        }
        if self.failed_check_threshold == 0 {
            problems.push(format!("{key}.failed_check_threshold must be at least 1"));
        }
        if self.promote_after_healthy_windows == 0 {
            problems.push(format!("{key}.promote_after_healthy_windows must be at least 1"));
        }
        for (i, check) in self.checks.iter().enumerate() {
            if metric_source(&check.metric).is_none() {
                let known: Vec<&str> = WINDOW_METRICS.iter().map(|m| m.0).collect();
                problems.push(format!(
                    "{key}.checks[{i}].metric {:?} is not a window metric; one of {}",
                    check.metric,
                    known.join(", ")
                ));
            }
            let at_least_zero = |x: f64| x.is_finite() && x >= 0.0;
            if !at_least_zero(check.max_relative_degradation) || !at_least_zero(check.absolute_tolerance) {
                problems.push(format!(
                    "{key}.checks[{i}]: max_relative_degradation and absolute_tolerance must be finite and at least 0"
                ));
            }
        }
    }
}

/// The metrics a relative check can compare, as the monitor stores them per closed window:
/// (metric, table, column holding the number of samples behind it). Latency and score come from
/// `window_metrics` (all the window's events), performance from `window_performance` (the
/// predictions with an outcome so far).
pub const WINDOW_METRICS: [(&str, &str, &str); 14] = [
    ("latency_p50_ms", "window_metrics", "events"),
    ("latency_p95_ms", "window_metrics", "events"),
    ("latency_p99_ms", "window_metrics", "events"),
    ("score_mean", "window_metrics", "events"),
    ("accuracy", "window_performance", "labeled"),
    ("precision", "window_performance", "labeled"),
    ("recall", "window_performance", "labeled"),
    ("f1", "window_performance", "labeled"),
    ("auc", "window_performance", "labeled"),
    ("brier", "window_performance", "labeled"),
    ("log_loss", "window_performance", "labeled"),
    ("ece", "window_performance", "labeled"),
    ("mae", "window_performance", "labeled"),
    ("rmse", "window_performance", "labeled"),
];

/// The (table, samples column) a window metric is stored in.
pub fn metric_source(metric: &str) -> Option<(&'static str, &'static str)> {
    WINDOW_METRICS.iter().find(|m| m.0 == metric).map(|m| (m.1, m.2))
}

/// A policy check's stored verdict (`policy_checks.verdict`) as an analysis verdict.
pub fn policy_verdict(verdict: &str) -> Verdict {
    match verdict {
        "breach" => Verdict::Failed,
        "healthy" => Verdict::Healthy,
        _ => Verdict::InsufficientData,
    }
}

/// What one analysis window decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CanaryStep {
    /// Healthy below the maximum: set this weight.
    Advance {
        weight: f64,
    },
    /// Nothing changes: inconclusive data, a failure under the threshold, or healthy at the
    /// maximum but not yet long enough.
    Hold,
    Promote,
    RollBack,
}

/// The running analysis of one canary. Weight comes from the registry when a consumer restarts;
/// failure and health counts start over then (a restart errs on the side of more windows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryAnalysis {
    pub weight: f64,
    pub failed_checks: u32,
    pub healthy_at_max: u32,
    /// Set once promoted or rolled back: later windows change nothing.
    pub finished: bool,
}

/// Weights are sums of steps: compare with a tolerance so 0.1 * 3 reaches 0.3.
const WEIGHT_EPSILON: f64 = 1e-9;

impl CanaryAnalysis {
    pub fn start(config: &CanaryConfig) -> Self {
        Self::resume(config.step_weight.min(config.max_weight))
    }

    pub fn resume(weight: f64) -> Self {
        Self { weight, failed_checks: 0, healthy_at_max: 0, finished: false }
    }

    pub fn step(&mut self, config: &CanaryConfig, verdict: Verdict) -> CanaryStep {
        if self.finished {
            return CanaryStep::Hold;
        }
        match verdict {
            Verdict::InsufficientData => CanaryStep::Hold,
            Verdict::Failed => {
                self.failed_checks += 1;
                self.healthy_at_max = 0;
                if self.failed_checks >= config.failed_check_threshold {
                    self.finished = true;
                    CanaryStep::RollBack
                } else {
                    CanaryStep::Hold
                }
            }
            Verdict::Healthy if self.weight + WEIGHT_EPSILON < config.max_weight => {
                self.weight = (self.weight + config.step_weight).min(config.max_weight);
                if config.max_weight - self.weight < WEIGHT_EPSILON {
                    self.weight = config.max_weight;
                }
                CanaryStep::Advance { weight: self.weight }
            }
            Verdict::Healthy => {
                self.healthy_at_max += 1;
                if self.healthy_at_max >= config.promote_after_healthy_windows {
                    self.finished = true;
                    CanaryStep::Promote
                } else {
                    CanaryStep::Hold
                }
            }
        }
    }
}

/// Which way a metric gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Error rates, latency, drift scores.
    LowerIsBetter,
    /// Accuracy, AUC.
    HigherIsBetter,
}

/// A canary-versus-production check over the same window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelativeCheck {
    pub metric: String,
    pub direction: Direction,
    /// How much worse than production the canary may be, as a fraction of production's value
    /// (0.1: ten percent).
    pub max_relative_degradation: f64,
    /// Slack in the metric's own unit, so a production value of 0 does not forbid any change.
    #[serde(default)]
    pub absolute_tolerance: f64,
    /// Fewer samples than this on either side make the window inconclusive.
    #[serde(default)]
    pub min_samples: u64,
}

/// A metric's value in one window and how many events it summarises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub samples: u64,
}

/// Judges the canary against production on one metric.
pub fn relative_verdict(
    check: &RelativeCheck,
    canary: Option<Sample>,
    production: Option<Sample>,
) -> Verdict {
    let usable =
        |s: Option<Sample>| s.filter(|s| s.value.is_finite() && s.samples >= check.min_samples.max(1));
    let (Some(canary), Some(production)) = (usable(canary), usable(production)) else {
        return Verdict::InsufficientData;
    };
    let slack = production.value.abs() * check.max_relative_degradation + check.absolute_tolerance;
    let healthy = match check.direction {
        Direction::LowerIsBetter => canary.value <= production.value + slack,
        Direction::HigherIsBetter => canary.value >= production.value - slack,
    };
    if healthy {
        Verdict::Healthy
    } else {
        Verdict::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CanaryConfig {
        CanaryConfig {
            step_weight: 0.1,
            max_weight: 0.3,
            failed_check_threshold: 2,
            promote_after_healthy_windows: 2,
            ..CanaryConfig::default()
        }
    }

    #[test]
    fn healthy_windows_step_to_max_then_promote() {
        let config = config();
        let mut analysis = CanaryAnalysis::start(&config);
        assert_eq!(analysis.weight, 0.1);
        assert_eq!(analysis.step(&config, Verdict::Healthy), CanaryStep::Advance { weight: 0.2 });
        assert_eq!(analysis.step(&config, Verdict::Healthy), CanaryStep::Advance { weight: 0.3 });
        assert_eq!(analysis.step(&config, Verdict::Healthy), CanaryStep::Hold);
        assert_eq!(analysis.step(&config, Verdict::Healthy), CanaryStep::Promote);
        assert_eq!(analysis.step(&config, Verdict::Healthy), CanaryStep::Hold, "finished analyses stay put");
    }

    #[test]
    fn insufficient_data_pauses_without_advancing_or_counting() {
        let config = config();
        let mut analysis = CanaryAnalysis::start(&config);
        for _ in 0..10 {
            assert_eq!(analysis.step(&config, Verdict::InsufficientData), CanaryStep::Hold);
        }
        assert_eq!(analysis, CanaryAnalysis::start(&config));
    }

    #[test]
    fn failed_checks_accumulate_to_rollback_and_reset_health_at_max() {
        let config = config();
        let mut analysis = CanaryAnalysis::resume(0.3);
        assert_eq!(analysis.step(&config, Verdict::Healthy), CanaryStep::Hold);
        assert_eq!(analysis.step(&config, Verdict::Failed), CanaryStep::Hold);
        assert_eq!(
            analysis.step(&config, Verdict::Healthy),
            CanaryStep::Hold,
            "the failure reset the healthy streak"
        );
        assert_eq!(analysis.step(&config, Verdict::Failed), CanaryStep::RollBack);
    }

    #[test]
    fn combined_verdicts_fail_first_then_wait() {
        use Verdict::*;
        assert_eq!(Verdict::combine([Healthy, InsufficientData, Failed]), Failed);
        assert_eq!(Verdict::combine([Healthy, InsufficientData]), InsufficientData);
        assert_eq!(Verdict::combine([Healthy, Healthy]), Healthy);
        assert_eq!(Verdict::combine([]), InsufficientData);
    }

    #[test]
    fn relative_checks_compare_canary_with_production() {
        let error_rate = RelativeCheck {
            metric: "error_rate".into(),
            direction: Direction::LowerIsBetter,
            max_relative_degradation: 0.1,
            absolute_tolerance: 0.0,
            min_samples: 100,
        };
        let s = |value, samples| Some(Sample { value, samples });
        assert_eq!(relative_verdict(&error_rate, s(0.105, 500), s(0.1, 500)), Verdict::Healthy);
        assert_eq!(relative_verdict(&error_rate, s(0.12, 500), s(0.1, 500)), Verdict::Failed);
        assert_eq!(relative_verdict(&error_rate, s(0.5, 50), s(0.1, 500)), Verdict::InsufficientData);
        assert_eq!(relative_verdict(&error_rate, None, s(0.1, 500)), Verdict::InsufficientData);
        assert_eq!(relative_verdict(&error_rate, s(f64::NAN, 500), s(0.1, 500)), Verdict::InsufficientData);
        let accuracy =
            RelativeCheck { direction: Direction::HigherIsBetter, metric: "accuracy".into(), ..error_rate };
        assert_eq!(relative_verdict(&accuracy, s(0.85, 500), s(0.9, 500)), Verdict::Healthy);
        assert_eq!(relative_verdict(&accuracy, s(0.80, 500), s(0.9, 500)), Verdict::Failed);
    }

    #[test]
    fn checks_name_stored_metrics() {
        let mut config = CanaryConfig::default();
        config.checks.push(RelativeCheck {
            metric: "latency_p99_ms".into(),
            direction: Direction::LowerIsBetter,
            max_relative_degradation: 0.2,
            absolute_tolerance: 0.0,
            min_samples: 100,
        });
        config.checks.push(RelativeCheck {
            metric: "happiness".into(),
            max_relative_degradation: -1.0,
            ..config.checks[0].clone()
        });
        let mut problems = Vec::new();
        config.check("lifecycle.defaults.canary", &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("lifecycle.defaults.canary.checks[1].metric \"happiness\""));
        assert_eq!(metric_source("accuracy"), Some(("window_performance", "labeled")));
        assert_eq!(Verdict::combine(["healthy", "breach"].map(policy_verdict)), Verdict::Failed);
        assert_eq!(policy_verdict("insufficient_data"), Verdict::InsufficientData);
    }

    #[test]
    fn absolute_tolerance_covers_a_zero_baseline() {
        let check = RelativeCheck {
            metric: "error_rate".into(),
            direction: Direction::LowerIsBetter,
            max_relative_degradation: 0.5,
            absolute_tolerance: 0.01,
            min_samples: 0,
        };
        let s = |value| Some(Sample { value, samples: 10 });
        assert_eq!(relative_verdict(&check, s(0.005), s(0.0)), Verdict::Healthy);
        assert_eq!(relative_verdict(&check, s(0.02), s(0.0)), Verdict::Failed);
    }
}
