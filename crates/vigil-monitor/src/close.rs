//! Closing a window, as a pure function: merged partials, references and policy state in;
//! rows, policy checks, remediations and the state changes they justify out. No I/O, so the
//! closing task can store the rows and checks, then publish the remediations, and only then
//! [`PolicyState::commit`] the streaks and decided windows: a failed insert leaves nothing
//! decided, and the retry computes the same verdicts again.

use std::collections::{BTreeMap, HashMap, HashSet};

use vigil_events::{Evidence, RemediationEvent};
use vigil_stats::DriftPolicy;
use vigil_store::{FeatureDriftRow, PolicyCheckRow, ReferenceRow, WindowMetricsRow, WindowPerformanceRow};

use crate::drift::FeatureDrift;
use crate::performance::PerformanceSummary;
use crate::policy::{self, Escalation, Judgement, PolicyBook, Streaks, Verdict};
use crate::rows;
use crate::window::{StateCodecError, WindowState};
use crate::windowing::{Window, Windowing};

/// (model, version, segment) -> the window's state merged from its panes' partials.
pub type Merged = BTreeMap<(String, String, String), WindowState>;

/// What every close shares: the configuration.
#[derive(Debug, Clone)]
pub struct CloseSettings {
    pub config_hash: String,
    pub positive_label: String,
    pub drift_policy: DriftPolicy,
    pub policies: PolicyBook,
    pub windows: Windowing,
    pub baseline_min_events: u64,
}

/// One window of one model version (all segments).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowKey {
    pub model_id: String,
    pub model_version: String,
    pub window_start: u32,
}

/// A verdict to record in the streaks once its check is stored.
#[derive(Debug, Clone, PartialEq)]
struct Decision {
    model_id: String,
    model_version: String,
    policy: String,
    window_start: u32,
    verdict: Verdict,
}

/// Everything a close produced, in the order it must become durable: baselines, then rows and
/// checks, then remediations; then [`PolicyState::commit`].
#[derive(Debug, Default)]
pub struct ClosedWindow {
    pub baselines: Vec<ReferenceRow>,
    pub metrics: Vec<WindowMetricsRow>,
    pub drift: Vec<FeatureDriftRow>,
    pub performance: Vec<WindowPerformanceRow>,
    pub checks: Vec<PolicyCheckRow>,
    pub remediations: Vec<RemediationEvent>,
    /// Versions with traffic in this window but no reference yet, with their events.
    pub without_reference: Vec<(String, String, u64)>,
    /// Drift tests run and features found drifted (for the counters).
    pub drift_tests: u64,
    pub features_drifted: u64,
    decisions: Vec<Decision>,
    decided_performance: Vec<WindowKey>,
    reference_performance: Vec<(String, PerformanceSummary)>,
    new_references: Vec<((String, String), (String, WindowState))>,
    traffic: Vec<((String, String), Traffic)>,
}

/// Where and until when a version last had traffic (for the no-traffic policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub partition: i32,
    /// End (s) of the newest window with events.
    pub until_s: u64,
}

/// What closing remembers between windows. Changed only by [`PolicyState::commit`] and the
/// loaders, never while a close is computed.
#[derive(Debug, Default)]
pub struct PolicyState {
    /// Reference per (model, version): its id and state.
    pub references: HashMap<(String, String), (String, WindowState)>,
    pub streaks: Streaks,
    /// Windows whose performance was judged (they had enough outcomes).
    pub performance_decided: HashSet<WindowKey>,
    /// Performance of each baseline reference window, by reference id: the yardstick for the
    /// accuracy drop.
    pub reference_performance: HashMap<String, PerformanceSummary>,
    /// Newest window with events per (model, version).
    pub traffic: HashMap<(String, String), Traffic>,
    /// Versions the lifecycle retired or rolled back: no traffic is expected of them.
    pub retired: HashSet<(String, String)>,
}

impl PolicyState {
    fn reference_id(&self, model_id: &str, model_version: &str) -> String {
        self.references
            .get(&(model_id.to_owned(), model_version.to_owned()))
            .map(|(id, _)| id.clone())
            .unwrap_or_default()
    }

    /// Closes `window` of `partition` from its merged partials: metrics, drift and performance
    /// rows for every (model, version, segment) with events, and the policy checks of each
    /// version's all-traffic row. A version without a reference whose window is big enough
    /// makes it its baseline.
    pub fn close(
        &self,
        settings: &CloseSettings,
        partition: i32,
        window: Window,
        merged: &Merged,
        now: u32,
    ) -> Result<ClosedWindow, StateCodecError> {
        let mut closed = ClosedWindow::default();
        let window_start = window.start;
        let ctx = rows::RowContext {
            window_seconds: window.length,
            config_hash: &settings.config_hash,
            positive_label: &settings.positive_label,
            drift_policy: &settings.drift_policy,
            computed_at: now,
        };
        let mut budget_inputs = Vec::new();
        let mut policy_inputs = Vec::new();
        for ((model_id, model_version, segment), state) in merged {
            if state.events == 0 {
                // Only outcomes so far (their predictions' partials are elsewhere or not yet
                // stored): nothing to report until the predictions close this window.
                continue;
            }
            let version = (model_id.clone(), model_version.clone());
            if segment.is_empty() {
                let traffic = Traffic { partition, until_s: window.end() };
                closed.traffic.push((version.clone(), traffic));
            }
            let mut reference = self.references.get(&version).cloned();
            if reference.is_none() && segment.is_empty() && state.events >= settings.baseline_min_events {
                let (row, id, baseline) = baseline(model_id, model_version, window_start, state, now)?;
                closed.baselines.push(row);
                closed.new_references.push((version.clone(), (id.clone(), baseline.clone())));
                reference = Some((id, baseline));
            } else if reference.is_none() {
                reference = closed.new_references.iter().find(|(v, _)| *v == version).map(|(_, r)| r.clone());
            }
            let key = rows::RowKey {
                model_id: model_id.clone(),
                model_version: model_version.clone(),
                segment: segment.clone(),
                window_start,
            };
            let reference_id = match &reference {
                Some((id, reference_state)) => {
                    let (results, drift_rows, skipped) =
                        rows::drift(&ctx, &key, state, &rows::ReferenceRef { id, state: reference_state });
                    for (feature, error) in skipped {
                        tracing::debug!(%error, feature, model_id = %key.model_id, "drift test skipped");
                    }
                    closed.drift_tests += results.len() as u64;
                    closed.features_drifted += results.iter().filter(|r| r.result.drifted).count() as u64;
                    if segment.is_empty() && !results.is_empty() {
                        policy_inputs.push((version.clone(), id.clone(), state.events, results));
                    }
                    closed.drift.extend(drift_rows);
                    id.clone()
                }
                None => {
                    if segment.is_empty() {
                        closed.without_reference.push((
                            model_id.clone(),
                            model_version.clone(),
                            state.events,
                        ));
                    }
                    String::new()
                }
            };
            let metrics_row = rows::metrics(&ctx, &key, state, &reference_id, partition as u32);
            closed.performance.push(rows::performance(&ctx, &key, state, &reference_id));
            if segment.is_empty() {
                let performance = state
                    .performance
                    .as_ref()
                    .map(|p| p.summary(&settings.positive_label))
                    .unwrap_or_default();
                let key = WindowKey {
                    model_id: model_id.clone(),
                    model_version: model_version.clone(),
                    window_start,
                };
                budget_inputs.push((
                    key,
                    reference_id.clone(),
                    state.events,
                    metrics_row.latency_p99_ms,
                    performance,
                ));
            }
            closed.metrics.push(metrics_row);
        }
        let mut checks = Checks { state: self, settings, closed: &mut closed, now };
        for ((model_id, model_version), reference_id, events, results) in policy_inputs {
            let key = WindowKey { model_id, model_version, window_start };
            checks.drift(&key, &reference_id, events, &results);
        }
        for (key, reference_id, events, p99, performance) in budget_inputs {
            checks.latency(&key, events, p99);
            checks.note_reference_performance(&key, &reference_id, &performance);
            checks.performance(&key, &reference_id, &performance);
        }
        Ok(closed)
    }

    /// Outcomes reached a window closed before: recompute its performance rows and, if it was
    /// not judged yet, its performance check. Its drift and other verdicts stand.
    pub fn close_performance(
        &self,
        settings: &CloseSettings,
        window: Window,
        merged: &Merged,
        now: u32,
    ) -> ClosedWindow {
        let mut closed = ClosedWindow::default();
        let ctx = rows::RowContext {
            window_seconds: window.length,
            config_hash: &settings.config_hash,
            positive_label: &settings.positive_label,
            drift_policy: &settings.drift_policy,
            computed_at: now,
        };
        let mut judged = Vec::new();
        for ((model_id, model_version, segment), state) in merged.iter().filter(|(_, s)| s.events > 0) {
            let reference_id = self.reference_id(model_id, model_version);
            let key = rows::RowKey {
                model_id: model_id.clone(),
                model_version: model_version.clone(),
                segment: segment.clone(),
                window_start: window.start,
            };
            closed.performance.push(rows::performance(&ctx, &key, state, &reference_id));
            if segment.is_empty() {
                let summary = state
                    .performance
                    .as_ref()
                    .map(|p| p.summary(&settings.positive_label))
                    .unwrap_or_default();
                let key = WindowKey {
                    model_id: model_id.clone(),
                    model_version: model_version.clone(),
                    window_start: window.start,
                };
                judged.push((key, reference_id, summary));
            }
        }
        let mut checks = Checks { state: self, settings, closed: &mut closed, now };
        for (key, reference_id, summary) in judged {
            checks.note_reference_performance(&key, &reference_id, &summary);
            checks.performance(&key, &reference_id, &summary);
        }
        closed
    }

    /// The no-traffic policy: a version that had traffic and whose partition's watermark has
    /// since passed `windows` whole windows without any event for it breaches once per silence
    /// (its check is on the last of those silent windows). Versions the lifecycle retired are
    /// expected to be quiet.
    pub fn no_traffic(&self, settings: &CloseSettings, watermarks: &[(i32, u64)], now: u32) -> ClosedWindow {
        let mut closed = ClosedWindow::default();
        let watermark_of: HashMap<i32, u64> = watermarks.iter().copied().collect();
        let mut checks = Checks { state: self, settings, closed: &mut closed, now };
        let mut quiet: Vec<_> = self.traffic.iter().collect();
        quiet.sort_by(|a, b| a.0.cmp(b.0));
        for ((model_id, model_version), traffic) in quiet {
            let policies = settings.policies.for_model(model_id);
            let Some(windows) = policies.no_traffic.windows else { continue };
            if self.retired.contains(&(model_id.clone(), model_version.clone())) {
                continue;
            }
            let Some(&watermark) = watermark_of.get(&traffic.partition) else { continue };
            let spec = settings.windows.for_model(model_id);
            // The silent windows start where the traffic ended, one slide apart.
            let last_silent_start = traffic.until_s + u64::from(spec.slide) * u64::from(windows - 1);
            let last_silent_end = last_silent_start + u64::from(spec.length);
            if watermark < last_silent_end {
                continue;
            }
            let key = WindowKey {
                model_id: model_id.clone(),
                model_version: model_version.clone(),
                window_start: u32::try_from(last_silent_start).unwrap_or(u32::MAX),
            };
            let escalation = &policies.no_traffic.escalation;
            if self.streaks.decided(model_id, model_version, &escalation.name, key.window_start) {
                continue;
            }
            let judgement = Judgement {
                verdict: Verdict::Breach,
                value: 0.0,
                threshold: f64::from(windows),
                evidence: vec![Evidence {
                    metric: "no_traffic.silent_windows".into(),
                    value: f64::from(windows),
                    threshold: f64::from(windows),
                    feature: None,
                }],
            };
            let detail = format!(
                "{{\"silent_windows\":{windows},\"traffic_until\":{},\"watermark\":{watermark}}}",
                traffic.until_s
            );
            checks.decide(&key, escalation, judgement, detail, "", 0);
        }
        closed
    }

    /// Applies what a close decided, once its rows, checks and remediations are durable.
    pub fn commit(&mut self, closed: ClosedWindow) {
        for d in closed.decisions {
            self.streaks.record(&d.model_id, &d.model_version, &d.policy, d.window_start, d.verdict);
        }
        self.performance_decided.extend(closed.decided_performance);
        self.reference_performance.extend(closed.reference_performance);
        self.references.extend(closed.new_references);
        for (version, traffic) in closed.traffic {
            let entry = self.traffic.entry(version).or_insert(traffic);
            if traffic.until_s >= entry.until_s {
                *entry = traffic;
            }
        }
    }
}

/// Builds one close's checks against a fixed [`PolicyState`].
struct Checks<'a> {
    state: &'a PolicyState,
    settings: &'a CloseSettings,
    closed: &'a mut ClosedWindow,
    now: u32,
}

impl Checks<'_> {
    /// The drift policy for one closed window, unless an earlier close decided it.
    fn drift(&mut self, window: &WindowKey, reference_id: &str, events: u64, results: &[FeatureDrift]) {
        let settings = &self.settings.policies.for_model(&window.model_id).drift;
        if self.state.streaks.decided(
            &window.model_id,
            &window.model_version,
            &settings.escalation.name,
            window.window_start,
        ) {
            return;
        }
        let check = policy::check(settings, events, results);
        let evidence = results
            .iter()
            .filter(|r| check.drifted.contains(&r.feature))
            .map(|r| Evidence {
                metric: format!("drift.{}", r.result.test.name()),
                value: r.result.p_value.unwrap_or(r.result.statistic),
                threshold: if r.result.p_value.is_some() {
                    check.corrected_alpha
                } else {
                    r.result.threshold
                },
                feature: Some(r.feature.clone()),
            })
            .collect();
        let detail = format!(
            "{{\"drifted\":{},\"tested\":{},\"corrected_alpha\":{}}}",
            serde_json::to_string(&check.drifted).unwrap_or_else(|_| "[]".into()),
            check.tested,
            check.corrected_alpha
        );
        let judgement = Judgement {
            verdict: check.verdict,
            value: check.drifted.len() as f64,
            threshold: settings.min_drifted_features as f64,
            evidence,
        };
        self.decide(window, &settings.escalation, judgement, detail, reference_id, events);
    }

    fn latency(&mut self, window: &WindowKey, events: u64, p99_ms: Option<f64>) {
        let settings = &self.settings.policies.for_model(&window.model_id).latency;
        if settings.max_p99_ms.is_none()
            || self.state.streaks.decided(
                &window.model_id,
                &window.model_version,
                &settings.escalation.name,
                window.window_start,
            )
        {
            return;
        }
        let judgement = policy::check_latency(settings, events, p99_ms);
        let detail = format!("{{\"p99_ms\":{},\"events\":{events}}}", json_number(p99_ms));
        self.decide(window, &settings.escalation, judgement, detail, "", events);
    }

    /// Keeps the performance of a version's baseline window as the yardstick for later ones.
    fn note_reference_performance(
        &mut self,
        window: &WindowKey,
        reference_id: &str,
        summary: &PerformanceSummary,
    ) {
        if !reference_id.is_empty() && reference_id.ends_with(&format!(":{}", window.window_start)) {
            self.closed.reference_performance.push((reference_id.to_owned(), summary.clone()));
        }
    }

    fn reference_performance(&self, reference_id: &str) -> Option<&PerformanceSummary> {
        self.closed
            .reference_performance
            .iter()
            .rev()
            .find(|(id, _)| id == reference_id)
            .map(|(_, s)| s)
            .or_else(|| self.state.reference_performance.get(reference_id))
    }

    /// Judges a window's performance once it has enough outcomes: a window is decided once (the
    /// first time it has `min_labeled`), so late outcomes do not re-run its streak. Before that,
    /// its check is stored as insufficient data. `events` on performance checks counts outcomes.
    fn performance(&mut self, window: &WindowKey, reference_id: &str, summary: &PerformanceSummary) {
        if self.state.performance_decided.contains(window) {
            return;
        }
        let settings = &self.settings.policies.for_model(&window.model_id).performance;
        let reference = self.reference_performance(reference_id).cloned();
        let judgement = policy::check_performance(settings, summary, reference.as_ref());
        if judgement.verdict == Verdict::InsufficientData {
            let detail =
                format!("{{\"labeled\":{},\"min_labeled\":{}}}", summary.labeled, settings.min_labeled);
            let streak = self.state.streaks.current(
                &window.model_id,
                &window.model_version,
                &settings.escalation.name,
            );
            let row = self.row(
                window,
                &settings.escalation.name,
                Verdict::InsufficientData,
                detail,
                reference_id,
                summary.labeled,
                streak,
            );
            self.closed.checks.push(PolicyCheckRow { value: 0.0, threshold: 0.0, ..row });
            return;
        }
        self.closed.decided_performance.push(window.clone());
        let detail = format!(
            "{{\"labeled\":{},\"accuracy\":{},\"reference_accuracy\":{}}}",
            summary.labeled,
            json_number(summary.accuracy),
            json_number(reference.and_then(|r| r.accuracy))
        );
        self.decide(window, &settings.escalation, judgement, detail, reference_id, summary.labeled);
    }

    /// One policy's verdict on a window: the streak it makes and, on a breach that lasted the
    /// configured windows, a remediation with the evidence. The streak is recorded at commit.
    fn decide(
        &mut self,
        window: &WindowKey,
        escalation: &Escalation,
        judgement: Judgement,
        detail: String,
        reference_id: &str,
        events: u64,
    ) {
        let WindowKey { model_id, model_version, window_start } = window;
        let streak = self.state.streaks.preview(model_id, model_version, &escalation.name, judgement.verdict);
        self.closed.decisions.push(Decision {
            model_id: model_id.clone(),
            model_version: model_version.clone(),
            policy: escalation.name.clone(),
            window_start: *window_start,
            verdict: judgement.verdict,
        });
        let mut remediation_id = String::new();
        if judgement.verdict == Verdict::Breach && streak >= escalation.consecutive_windows {
            remediation_id = policy::remediation_id(
                model_id,
                model_version,
                *window_start,
                &escalation.name,
                &self.settings.config_hash,
            );
            let length = self.settings.windows.for_model(model_id).length;
            self.closed.remediations.push(RemediationEvent {
                remediation_id: remediation_id.clone(),
                model_id: model_id.clone(),
                model_version: model_version.clone(),
                window_start_ms: i64::from(*window_start) * 1000,
                window_end_ms: (i64::from(*window_start) + i64::from(length)) * 1000,
                severity: escalation.severity,
                action: escalation.action,
                policy: escalation.name.clone(),
                evidence: judgement.evidence,
                reference_id: (!reference_id.is_empty()).then(|| reference_id.to_owned()),
                config_hash: self.settings.config_hash.clone(),
                created_at_ms: i64::from(self.now) * 1000,
            });
        }
        let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
        let row = self.row(window, &escalation.name, judgement.verdict, detail, reference_id, events, streak);
        self.closed.checks.push(PolicyCheckRow {
            value: finite(judgement.value),
            threshold: finite(judgement.threshold),
            remediation_id,
            ..row
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        window: &WindowKey,
        policy: &str,
        verdict: Verdict,
        detail: String,
        reference_id: &str,
        events: u64,
        streak: u32,
    ) -> PolicyCheckRow {
        PolicyCheckRow {
            model_id: window.model_id.clone(),
            model_version: window.model_version.clone(),
            window_start: window.window_start,
            policy: policy.to_owned(),
            verdict: verdict.name().to_owned(),
            value: 0.0,
            threshold: 0.0,
            detail,
            streak,
            remediation_id: String::new(),
            events,
            reference_id: reference_id.to_owned(),
            config_hash: self.settings.config_hash.clone(),
            computed_at: self.now,
        }
    }
}

/// A version's first closed window with enough events as its reference: the row to store, its
/// id and the state drift is tested against (the events only: the outcomes joined by then depend
/// on arrival timing; the baseline's accuracy is its window_performance row).
fn baseline(
    model_id: &str,
    model_version: &str,
    window_start: u32,
    state: &WindowState,
    now: u32,
) -> Result<(ReferenceRow, String, WindowState), StateCodecError> {
    let state = WindowState { performance: None, ..state.clone() };
    let reference_id = format!("baseline:{model_id}:{model_version}:{window_start}");
    let row = ReferenceRow {
        model_id: model_id.to_owned(),
        model_version: model_version.to_owned(),
        reference_id: reference_id.clone(),
        content_hash: crate::reference::state_content_hash(&state)?,
        source: format!("live baseline: window {window_start}, {} events", state.events),
        events: state.events,
        state: state.encode()?,
        created_at: now,
    };
    Ok((row, reference_id, state))
}

fn json_number(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite()).map_or_else(|| "null".to_owned(), |x| x.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_events::{decode_prediction_view, encode, Prediction, PredictionEvent};

    const T0: u32 = 1_764_000_000;

    fn settings(policies: crate::policy::Policies) -> CloseSettings {
        CloseSettings {
            config_hash: "cfg".into(),
            positive_label: "1".into(),
            drift_policy: rows::drift_policy(),
            policies: PolicyBook { default: policies, per_model: HashMap::new() },
            windows: Windowing::tumbling(60),
            baseline_min_events: 1_000_000,
        }
    }

    /// A breach of the latency budget in every window with 10 events.
    fn slow() -> crate::policy::Policies {
        let mut policies = crate::policy::Policies::default();
        policies.latency.max_p99_ms = Some(1.0);
        policies.latency.min_events = 10;
        policies.latency.escalation.consecutive_windows = 2;
        policies
    }

    fn window_of(events: usize) -> Merged {
        let mut state = WindowState::default();
        for i in 0..events {
            let bytes = encode(&PredictionEvent {
                prediction_id: format!("p{i}"),
                model_id: "m".into(),
                model_version: "v1".into(),
                event_time_ms: i64::from(T0) * 1000,
                prediction: Prediction { label: Some("1".into()), ..Default::default() },
                serving_latency_ms: Some(50.0),
                ..Default::default()
            });
            state.add(&decode_prediction_view(&bytes).unwrap(), false);
        }
        [(("m".to_owned(), "v1".to_owned(), String::new()), state)].into()
    }

    fn window(n: u32) -> Window {
        Window { start: T0 + n * 60, length: 60 }
    }

    fn latency_checks(closed: &ClosedWindow) -> Vec<(u32, String, u32)> {
        closed
            .checks
            .iter()
            .filter(|c| c.policy == "latency")
            .map(|c| (c.window_start, c.verdict.clone(), c.streak))
            .collect()
    }

    #[test]
    fn nothing_is_decided_until_the_close_is_committed() {
        let settings = settings(slow());
        let mut state = PolicyState::default();
        let first = state.close(&settings, 0, window(0), &window_of(20), 0).unwrap();
        assert_eq!(latency_checks(&first), vec![(T0, "breach".into(), 1)]);
        // The insert failed: nothing was committed, so the retry computes the same check.
        let retry = state.close(&settings, 0, window(0), &window_of(20), 0).unwrap();
        assert_eq!(latency_checks(&retry), latency_checks(&first));
        assert!(retry.remediations.is_empty(), "one breach is not yet two in a row");
        state.commit(retry);
        // Committed: closing the same window again decides nothing new.
        let again = state.close(&settings, 0, window(0), &window_of(20), 0).unwrap();
        assert!(latency_checks(&again).is_empty());
        // The next window continues the streak and sends the remediation.
        let second = state.close(&settings, 0, window(1), &window_of(20), 0).unwrap();
        assert_eq!(latency_checks(&second), vec![(T0 + 60, "breach".into(), 2)]);
        assert_eq!(second.remediations.len(), 1);
        assert_eq!(second.checks.iter().filter(|c| !c.remediation_id.is_empty()).count(), 1);
        assert_eq!(
            second.remediations[0].remediation_id,
            second.checks.iter().find(|c| c.policy == "latency").unwrap().remediation_id
        );
    }

    #[test]
    fn a_small_window_is_insufficient_data_and_keeps_the_streak() {
        let settings = settings(slow());
        let mut state = PolicyState::default();
        let closed = state.close(&settings, 0, window(0), &window_of(20), 0).unwrap();
        state.commit(closed);
        let small = state.close(&settings, 0, window(1), &window_of(3), 0).unwrap();
        assert_eq!(latency_checks(&small), vec![(T0 + 60, "insufficient_data".into(), 1)]);
    }

    #[test]
    fn a_version_silent_for_the_configured_windows_breaches_no_traffic_once() {
        let mut policies = crate::policy::Policies::default();
        policies.no_traffic.windows = Some(2);
        let settings = settings(policies);
        let mut state = PolicyState::default();
        let closed = state.close(&settings, 4, window(0), &window_of(5), 0).unwrap();
        state.commit(closed);
        let traffic_end = u64::from(T0 + 60);
        // One silent window has passed, the second has not ended yet.
        assert!(state.no_traffic(&settings, &[(4, traffic_end + 119)], 0).checks.is_empty());
        // Another partition's watermark says nothing about this version.
        assert!(state.no_traffic(&settings, &[(5, traffic_end + 500)], 0).checks.is_empty());
        let breach = state.no_traffic(&settings, &[(4, traffic_end + 120)], 0);
        let checks: Vec<_> =
            breach.checks.iter().map(|c| (c.policy.as_str(), c.verdict.as_str(), c.window_start)).collect();
        assert_eq!(
            checks,
            vec![("no_traffic", "breach", T0 + 120)],
            "the check sits on the last silent window"
        );
        assert_eq!(breach.remediations.len(), 1);
        state.commit(breach);
        assert!(
            state.no_traffic(&settings, &[(4, traffic_end + 600)], 0).checks.is_empty(),
            "once per silence"
        );
        // Traffic again, then silence again: a new breach.
        let closed = state.close(&settings, 4, window(10), &window_of(5), 0).unwrap();
        state.commit(closed);
        let later = state.no_traffic(&settings, &[(4, u64::from(T0 + 11 * 60 + 120))], 0);
        assert_eq!(later.checks.len(), 1);
    }

    #[test]
    fn a_retired_version_is_not_expected_to_have_traffic() {
        let mut policies = crate::policy::Policies::default();
        policies.no_traffic.windows = Some(1);
        let settings = settings(policies);
        let mut state = PolicyState::default();
        let closed = state.close(&settings, 0, window(0), &window_of(5), 0).unwrap();
        state.commit(closed);
        state.retired.insert(("m".into(), "v1".into()));
        assert!(state.no_traffic(&settings, &[(0, u64::from(T0) + 1_000)], 0).checks.is_empty());
    }

    #[test]
    fn the_no_traffic_policy_is_off_by_default() {
        let settings = settings(crate::policy::Policies::default());
        let mut state = PolicyState::default();
        let closed = state.close(&settings, 0, window(0), &window_of(5), 0).unwrap();
        state.commit(closed);
        assert!(state.no_traffic(&settings, &[(0, u64::from(T0) + 100_000)], 0).checks.is_empty());
    }
}
