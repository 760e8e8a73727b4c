//! Canary analysis fed by the monitor's stored windows. For every model whose policy has
//! `canary.analysis = true` and that has both a canary and a production version, `vigil
//! lifecycle` polls ClickHouse for the windows both versions have policy checks for, and judges
//! each window: the canary's own checks (a breach fails it, insufficient data holds), and every
//! configured [`RelativeCheck`] comparing the canary's metric with production's over the same
//! window (`window_metrics` for latency and score, `window_performance` for accuracy and the
//! like). The verdicts drive [`CanaryAnalysis`]; a step that changes something goes to the
//! consumer task as a command, which decides it with `decide_canary` (event ids
//! `canary:<model>:<version>:<window end ms>:<STAGE>`), publishes it, or files it for approval
//! under a manual gate.
//!
//! The analysis state is rebuilt from the stored windows: after a restart the same windows give
//! the same steps and the same event ids, which the registry already holds, so nothing happens
//! twice. It starts from the weight the canary was registered at.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use vigil_events::Stage;
use vigil_store::{Store, StoreError, WindowSample, WindowVerdict};

use crate::engine::Command;
use crate::kafka::{lock, Request, SharedEngine};
use crate::{
    metric_source, policy_verdict, relative_verdict, CanaryAnalysis, CanaryConfig, CanaryStep, RelativeCheck,
    Sample, Verdict,
};

/// One canary under analysis.
struct Tracked {
    analysis: CanaryAnalysis,
    /// The next window start (seconds) to judge.
    next_window: u32,
}

/// What one window of a canary is judged on: its and production's policy verdicts, and each
/// relative check's (canary, production) samples.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WindowEvidence {
    pub canary: Vec<String>,
    pub production: Vec<String>,
    pub samples: Vec<(Option<Sample>, Option<Sample>)>,
}

/// A window's verdict: the canary's own policy checks and the relative checks together. A window
/// production has no checks for is not comparable yet: insufficient data.
pub fn window_verdict(checks: &[RelativeCheck], evidence: &WindowEvidence) -> Verdict {
    if evidence.canary.is_empty() || evidence.production.is_empty() {
        return Verdict::InsufficientData;
    }
    let own = evidence.canary.iter().map(|v| policy_verdict(v));
    let relative = checks
        .iter()
        .zip(&evidence.samples)
        .map(|(check, (canary, production))| relative_verdict(check, *canary, *production));
    Verdict::combine(own.chain(relative))
}

/// Groups what ClickHouse returned by window start, oldest first.
pub fn evidence_by_window(
    canary: &str,
    verdicts: &[WindowVerdict],
    samples: &[Vec<WindowSample>],
) -> BTreeMap<u32, WindowEvidence> {
    let mut windows: BTreeMap<u32, WindowEvidence> = BTreeMap::new();
    for v in verdicts {
        let window = windows.entry(v.window_start).or_default();
        if v.model_version == canary {
            window.canary.push(v.verdict.clone());
        } else {
            window.production.push(v.verdict.clone());
        }
    }
    for window in windows.values_mut() {
        window.samples = vec![(None, None); samples.len()];
    }
    for (i, rows) in samples.iter().enumerate() {
        for row in rows {
            let Some(window) = windows.get_mut(&row.window_start) else {
                continue;
            };
            let sample = row.value.map(|value| Sample { value, samples: row.samples });
            if row.model_version == canary {
                window.samples[i].0 = sample;
            } else {
                window.samples[i].1 = sample;
            }
        }
    }
    windows
}

/// Polls every `interval` until `shutdown`. `window_seconds` is the monitor's window length
/// (a window's end identifies it in event ids).
pub async fn run(
    store: Store,
    engine: SharedEngine,
    commands: mpsc::Sender<Request>,
    interval: Duration,
    window_seconds: u32,
    shutdown: CancellationToken,
) {
    let mut tracked: HashMap<(String, String), Tracked> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let canaries = analysed_canaries(&engine);
        tracked.retain(|key, _| canaries.iter().any(|c| (&c.model_id, &c.canary) == (&key.0, &key.1)));
        for canary in canaries {
            let key = (canary.model_id.clone(), canary.canary.clone());
            let state = tracked.entry(key).or_insert_with(|| Tracked {
                analysis: CanaryAnalysis::resume(canary.start_weight),
                next_window: 0,
            });
            if state.analysis.finished {
                continue;
            }
            let steps = match judge(&store, &canary, state).await {
                Ok(steps) => steps,
                Err(error) => {
                    tracing::warn!(%error, model = %canary.model_id, "canary analysis: could not read the windows");
                    continue;
                }
            };
            for (window_start, step) in steps {
                let command = Command::CanaryStep {
                    model_id: canary.model_id.clone(),
                    version: canary.canary.clone(),
                    window_end_ms: (i64::from(window_start) + i64::from(window_seconds)) * 1000,
                    step,
                };
                let (reply, answer) = oneshot::channel();
                if commands.send(Request { command, reply }).await.is_err() {
                    return;
                }
                match answer.await {
                    Ok(Ok(events)) => {
                        tracing::info!(model = %canary.model_id, version = %canary.canary, window_start, ?step, events = events.len(), "canary analysis step")
                    }
                    Ok(Err(refused)) => {
                        tracing::warn!(model = %canary.model_id, %refused, "canary analysis step refused")
                    }
                    Err(_) => return,
                }
            }
        }
    }
}

/// A canary to analyse, as the registry has it now.
struct Canary {
    model_id: String,
    canary: String,
    production: String,
    config: CanaryConfig,
    /// The weight of its first canary event.
    start_weight: f64,
}

fn analysed_canaries(engine: &SharedEngine) -> Vec<Canary> {
    let engine = lock(engine);
    engine
        .registry
        .models()
        .filter_map(|(model_id, model)| {
            let config = &engine.policy.for_model(model_id).canary;
            let (canary, production) = (model.canary.as_ref()?, model.production.as_ref()?);
            let start_weight = model
                .history
                .iter()
                .find(|e| &e.model_version == canary && e.stage == Stage::Canary)
                .and_then(|e| e.traffic_weight)
                .unwrap_or(config.step_weight);
            config.analysis.then(|| Canary {
                model_id: model_id.to_owned(),
                canary: canary.clone(),
                production: production.clone(),
                config: config.clone(),
                start_weight,
            })
        })
        .collect()
}

/// Steps the analysis through the windows not judged yet; the steps that change something.
async fn judge(
    store: &Store,
    canary: &Canary,
    state: &mut Tracked,
) -> Result<Vec<(u32, CanaryStep)>, StoreError> {
    let versions = [canary.canary.as_str(), canary.production.as_str()];
    let verdicts = store.window_verdicts(&canary.model_id, versions, state.next_window).await?;
    let mut samples = Vec::with_capacity(canary.config.checks.len());
    for check in &canary.config.checks {
        // Validated with the configuration.
        let Some((table, count)) = metric_source(&check.metric) else {
            samples.push(Vec::new());
            continue;
        };
        samples.push(
            store
                .window_samples((table, &check.metric, count), &canary.model_id, versions, state.next_window)
                .await?,
        );
    }
    // The monitor stores a window's policy checks before its metrics: a window is judged once
    // both versions' metrics rows are there, or its samples could still be missing.
    let complete: std::collections::HashSet<(String, u32)> =
        store.closed_windows_of(&canary.model_id, versions, state.next_window).await?.into_iter().collect();
    let mut steps = Vec::new();
    for (window_start, evidence) in evidence_by_window(&canary.canary, &verdicts, &samples) {
        // A window production has not been checked for yet may still get its checks.
        if evidence.production.is_empty() || evidence.canary.is_empty() {
            break;
        }
        if !versions.iter().all(|v| complete.contains(&((*v).to_owned(), window_start))) {
            break;
        }
        let verdict = window_verdict(&canary.config.checks, &evidence);
        state.next_window = window_start + 1;
        let step = state.analysis.step(&canary.config, verdict);
        tracing::debug!(model = %canary.model_id, version = %canary.canary, window_start, ?verdict, ?step, "canary window judged");
        if step != CanaryStep::Hold {
            steps.push((window_start, step));
        }
        if state.analysis.finished {
            break;
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Direction;

    fn verdict(version: &str, window_start: u32, verdict: &str) -> WindowVerdict {
        WindowVerdict {
            model_version: version.into(),
            window_start,
            policy: "feature_drift".into(),
            verdict: verdict.into(),
        }
    }

    fn sample(version: &str, window_start: u32, value: f64) -> WindowSample {
        WindowSample { model_version: version.into(), window_start, value: Some(value), samples: 500 }
    }

    #[test]
    fn windows_are_judged_on_own_checks_and_against_production() {
        let latency = RelativeCheck {
            metric: "latency_p99_ms".into(),
            direction: Direction::LowerIsBetter,
            max_relative_degradation: 0.2,
            absolute_tolerance: 0.0,
            min_samples: 100,
        };
        let verdicts = [
            verdict("v1", 60, "healthy"),
            verdict("v2", 60, "healthy"),
            verdict("v1", 120, "healthy"),
            verdict("v2", 120, "healthy"),
            verdict("v1", 180, "healthy"),
            verdict("v2", 180, "breach"),
            verdict("v2", 240, "healthy"),
        ];
        let samples = vec![vec![
            sample("v1", 60, 10.0),
            sample("v2", 60, 11.0),
            sample("v1", 120, 10.0),
            sample("v2", 120, 15.0),
            sample("v1", 180, 10.0),
            sample("v2", 180, 10.0),
        ]];
        let windows = evidence_by_window("v2", &verdicts, &samples);
        let judged: Vec<(u32, Verdict)> =
            windows.iter().map(|(w, e)| (*w, window_verdict(std::slice::from_ref(&latency), e))).collect();
        assert_eq!(
            judged,
            [
                (60, Verdict::Healthy),
                (120, Verdict::Failed),
                (180, Verdict::Failed),
                (240, Verdict::InsufficientData),
            ],
            "within 20%; 50% slower; its own breach; production not checked yet"
        );
    }
}
