//! What the lifecycle consumer does about a remediation or a canary analysis window: the events
//! to publish, as a pure function of the registry, the input and the policy.
//!
//! Event ids are derived from the input (`<remediation id>:<STAGE>:<version>`, or
//! `canary:<model>:<version>:<window end>:<STAGE>`), so deciding twice on the same input yields
//! the same ids, which the registry folds once: idempotent by construction.

use vigil_events::{LifecycleEvent, RemediationAction, RemediationEvent, Severity, Stage};

use super::canary::CanaryStep;
use super::policy::LifecyclePolicy;
use super::{Registry, AUTOMATION_ACTOR};
use crate::stage_name;

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    /// To publish, in order; empty when nothing changes or a human has to approve first.
    pub events: Vec<LifecycleEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The input asks for nothing the registry does (an alert, an unknown or finished version).
    NoAction {
        why: &'static str,
    },
    /// The log already holds this remediation's decision.
    Duplicate,
    RolledBackCanary {
        version: String,
    },
    RolledBackProduction {
        from: String,
        to: String,
    },
    /// Production failed critically but no earlier good version exists: nothing changes, and
    /// someone has to be told.
    NoRollbackTarget {
        version: String,
    },
    HeldPromotion {
        version: String,
    },
    /// A retraining request went to the training pipelines (recorded as a `RETRAIN_REQUESTED`
    /// event, after any rollback a critical severity asked for).
    RetrainRequested {
        version: String,
    },
    CanaryWeight {
        version: String,
        weight: f64,
    },
    Promoted {
        version: String,
    },
    /// A manual gate: these events wait for a human, who publishes them under their own name.
    AwaitingApproval {
        proposed: Vec<LifecycleEvent>,
    },
}

impl Decision {
    fn nothing(outcome: Outcome) -> Self {
        Self { outcome, events: Vec::new() }
    }
}

/// Decides what a remediation does to the registry.
///
/// A `ROLLBACK` action, or any `CRITICAL` one, rolls back the version it names: a canary is
/// rolled back alone; production is rolled back and its last good version
/// ([`Registry::rollback_target`]) returns. `HOLD_PROMOTION` holds a canary's promotion.
/// `ALERT` is for the alert webhooks and changes nothing here.
pub fn decide(
    registry: &Registry,
    remediation: &RemediationEvent,
    policy: &LifecyclePolicy,
    now_ms: i64,
) -> Decision {
    if registry.acted_on(&remediation.remediation_id) {
        return Decision::nothing(Outcome::Duplicate);
    }
    let (model_id, version) = (&remediation.model_id, &remediation.model_version);
    let Some(state) = registry.version(model_id, version) else {
        return Decision::nothing(Outcome::NoAction { why: "the model version is not in the registry" });
    };
    if remediation.action == RemediationAction::Retrain {
        return retrain(registry, remediation, policy, now_ms, state.stage);
    }
    let rollback =
        remediation.action == RemediationAction::Rollback || remediation.severity == Severity::Critical;
    let hold = remediation.action == RemediationAction::HoldPromotion;
    let cause = describe(remediation);
    let by = Cause {
        id_prefix: &remediation.remediation_id,
        actor: AUTOMATION_ACTOR,
        remediation_id: Some(&remediation.remediation_id),
        why: &cause,
    };
    // A version that serves no traffic falls through to "nothing to do" below.
    if let Some(decision) =
        rollback.then(|| rollback_events(registry, model_id, version, &by, now_ms)).flatten()
    {
        return match decision.outcome {
            Outcome::NoRollbackTarget { .. } => decision,
            _ if policy.for_model(model_id).manual_rollback => {
                Decision::nothing(Outcome::AwaitingApproval { proposed: decision.events })
            }
            _ => decision,
        };
    }
    let event =
        |stage: Stage, event_version: &str, traffic_weight: Option<f64>, reason: String| LifecycleEvent {
            event_id: format!("{}:{}:{}", remediation.remediation_id, stage_name(stage), event_version),
            model_id: model_id.clone(),
            model_version: event_version.to_owned(),
            stage,
            traffic_weight,
            reason,
            actor: AUTOMATION_ACTOR.to_owned(),
            remediation_id: Some(remediation.remediation_id.clone()),
            event_time_ms: now_ms,
            kind: vigil_events::EventKind::StageChange,
            lineage: None,
        };
    match state.stage {
        Stage::Canary if hold && state.held_by.is_none() => Decision {
            outcome: Outcome::HeldPromotion { version: version.clone() },
            events: vec![event(
                Stage::Canary,
                version,
                state.traffic_weight,
                format!("promotion held: {cause}"),
            )],
        },
        Stage::Canary if hold => {
            Decision::nothing(Outcome::NoAction { why: "the canary's promotion is already held" })
        }
        _ if !rollback && !hold => Decision::nothing(Outcome::NoAction { why: "an alert changes no stage" }),
        Stage::Candidate => Decision::nothing(Outcome::NoAction { why: "a candidate serves no traffic" }),
        Stage::Production => {
            Decision::nothing(Outcome::NoAction { why: "production has no promotion to hold" })
        }
        Stage::Canary => Decision::nothing(Outcome::NoAction { why: "nothing to do for this canary" }),
        Stage::Retired | Stage::RolledBack => {
            Decision::nothing(Outcome::NoAction { why: "the version no longer serves traffic" })
        }
    }
}

/// Who takes a version out of service and why: the events' ids are
/// `<id_prefix>:<STAGE>:<version>`, and each records the actor, the remediation (if any) and
/// `why` in its reason.
#[derive(Debug, Clone, Copy)]
pub struct Cause<'a> {
    pub id_prefix: &'a str,
    pub actor: &'a str,
    pub remediation_id: Option<&'a str>,
    pub why: &'a str,
}

/// The events that take `version` out of service: a canary is rolled back alone; production is
/// rolled back and its last good version ([`Registry::rollback_target`]) returns, or, without
/// one, nothing happens (`Outcome::NoRollbackTarget`). `None` when the version is not a canary
/// or production (a candidate serves no traffic; retired and rolled-back versions none any
/// more). Used for remediations and for a human's rollback alike.
pub fn rollback_events(
    registry: &Registry,
    model_id: &str,
    version: &str,
    by: &Cause<'_>,
    now_ms: i64,
) -> Option<Decision> {
    let state = registry.version(model_id, version)?;
    let event = |stage: Stage, event_version: &str, reason: String| LifecycleEvent {
        event_id: format!("{}:{}:{event_version}", by.id_prefix, stage_name(stage)),
        model_id: model_id.to_owned(),
        model_version: event_version.to_owned(),
        stage,
        traffic_weight: None,
        reason,
        actor: by.actor.to_owned(),
        remediation_id: by.remediation_id.map(str::to_owned),
        event_time_ms: now_ms,
        kind: vigil_events::EventKind::StageChange,
        lineage: None,
    };
    let why = by.why;
    Some(match state.stage {
        Stage::Canary => Decision {
            outcome: Outcome::RolledBackCanary { version: version.to_owned() },
            events: vec![event(Stage::RolledBack, version, format!("canary rolled back: {why}"))],
        },
        Stage::Production => match registry.rollback_target(model_id) {
            None => Decision::nothing(Outcome::NoRollbackTarget { version: version.to_owned() }),
            Some(target) => Decision {
                outcome: Outcome::RolledBackProduction { from: version.to_owned(), to: target.to_owned() },
                events: vec![
                    event(Stage::RolledBack, version, format!("production rolled back: {why}")),
                    event(
                        Stage::Production,
                        target,
                        format!("restored as last good version after {version} failed: {why}"),
                    ),
                ],
            },
        },
        Stage::Candidate | Stage::Retired | Stage::RolledBack => return None,
    })
}

/// Turns one canary analysis step into events. `window_end_ms` identifies the window, so the
/// same window judged twice yields the same ids. A held canary neither advances nor promotes.
pub fn decide_canary(
    registry: &Registry,
    model_id: &str,
    version: &str,
    window_end_ms: i64,
    step: CanaryStep,
    policy: &LifecyclePolicy,
    now_ms: i64,
) -> Decision {
    let Some(state) = registry.version(model_id, version).filter(|s| s.stage == Stage::Canary) else {
        return Decision::nothing(Outcome::NoAction { why: "the version is not a canary" });
    };
    let event = |stage: Stage, traffic_weight: Option<f64>, reason: String| LifecycleEvent {
        event_id: format!("canary:{model_id}:{version}:{window_end_ms}:{}", stage_name(stage)),
        model_id: model_id.to_owned(),
        model_version: version.to_owned(),
        stage,
        traffic_weight,
        reason,
        actor: AUTOMATION_ACTOR.to_owned(),
        remediation_id: None,
        event_time_ms: now_ms,
        kind: vigil_events::EventKind::StageChange,
        lineage: None,
    };
    if registry.contains_event(&event(Stage::Canary, None, String::new()).event_id)
        || registry.contains_event(&event(Stage::Production, None, String::new()).event_id)
        || registry.contains_event(&event(Stage::RolledBack, None, String::new()).event_id)
    {
        return Decision::nothing(Outcome::Duplicate);
    }
    let held = state.held_by.is_some();
    let model_policy = policy.for_model(model_id);
    match step {
        CanaryStep::Hold => Decision::nothing(Outcome::NoAction { why: "the analysis holds" }),
        CanaryStep::Advance { .. } | CanaryStep::Promote if held => {
            Decision::nothing(Outcome::NoAction { why: "the canary's promotion is held by a remediation" })
        }
        CanaryStep::Advance { weight } => Decision {
            outcome: Outcome::CanaryWeight { version: version.to_owned(), weight },
            events: vec![event(
                Stage::Canary,
                Some(weight),
                format!("canary analysis healthy at window end {window_end_ms}: weight {weight}"),
            )],
        },
        CanaryStep::Promote => {
            let events = vec![event(
                Stage::Production,
                None,
                format!("canary analysis passed at window end {window_end_ms}"),
            )];
            if model_policy.manual_promotion {
                Decision::nothing(Outcome::AwaitingApproval { proposed: events })
            } else {
                Decision { outcome: Outcome::Promoted { version: version.to_owned() }, events }
            }
        }
        CanaryStep::RollBack => {
            let events = vec![event(
                Stage::RolledBack,
                None,
                format!(
                    "canary analysis failed {} checks at window end {window_end_ms}",
                    model_policy.canary.failed_check_threshold
                ),
            )];
            if model_policy.manual_rollback {
                Decision::nothing(Outcome::AwaitingApproval { proposed: events })
            } else {
                Decision { outcome: Outcome::RolledBackCanary { version: version.to_owned() }, events }
            }
        }
    }
}

/// A `RETRAIN` remediation: a critical one first rolls back as any critical remediation does
/// (or proposes the rollback at a manual gate), and a `RETRAIN_REQUESTED` event records the
/// request the lifecycle service sends to the training pipelines at once (retraining changes no
/// traffic, so no gate holds it). Its event id makes a redelivery request nothing twice.
fn retrain(
    registry: &Registry,
    remediation: &RemediationEvent,
    policy: &LifecyclePolicy,
    now_ms: i64,
    stage: Stage,
) -> Decision {
    let event_id = format!("{}:RETRAIN_REQUESTED:{}", remediation.remediation_id, remediation.model_version);
    let already = registry.contains_event(&event_id);
    let mut decision = match remediation.severity {
        Severity::Critical => {
            let as_rollback = RemediationEvent { action: RemediationAction::Rollback, ..remediation.clone() };
            decide(registry, &as_rollback, policy, now_ms)
        }
        _ => Decision::nothing(Outcome::Duplicate),
    };
    if !already {
        let stage = decision
            .events
            .iter()
            .rev()
            .find(|e| e.model_version == remediation.model_version)
            .map_or(stage, |e| e.stage);
        decision.events.push(LifecycleEvent {
            event_id,
            model_id: remediation.model_id.clone(),
            model_version: remediation.model_version.clone(),
            stage,
            traffic_weight: None,
            reason: format!("retraining requested: {}", describe(remediation)),
            actor: AUTOMATION_ACTOR.to_owned(),
            remediation_id: Some(remediation.remediation_id.clone()),
            event_time_ms: now_ms,
            kind: vigil_events::EventKind::RetrainRequested,
            lineage: None,
        });
        if matches!(decision.outcome, Outcome::Duplicate | Outcome::NoAction { .. }) {
            decision.outcome = Outcome::RetrainRequested { version: remediation.model_version.clone() };
        }
    }
    decision
}

/// A human's approval of proposed events: same ids (approving twice is harmless), their name as
/// actor, their reason after the proposal's.
pub fn approve(proposed: &[LifecycleEvent], actor: &str, reason: &str, now_ms: i64) -> Vec<LifecycleEvent> {
    proposed
        .iter()
        .map(|e| LifecycleEvent {
            actor: actor.to_owned(),
            reason: format!("{}; approved by {actor}: {reason}", e.reason),
            event_time_ms: now_ms,
            ..e.clone()
        })
        .collect()
}

/// A human's rejection of a proposal about `version`, as the event that records it: the version
/// keeps its stage (a canary its weight, and its promotion stays held by the remediation; the
/// production version stays production). Its id is `<id_prefix>:REJECTED:<version>`, and the
/// remediation it carries counts as acted on, so a redelivery proposes nothing again. `None`
/// when the version no longer serves (nothing left to keep).
pub fn reject(
    registry: &Registry,
    model_id: &str,
    version: &str,
    by: &Cause<'_>,
    now_ms: i64,
) -> Option<LifecycleEvent> {
    let state = registry.version(model_id, version)?;
    let stage = match state.stage {
        Stage::Canary | Stage::Production => state.stage,
        Stage::Candidate | Stage::Retired | Stage::RolledBack => return None,
    };
    Some(LifecycleEvent {
        event_id: format!("{}:REJECTED:{version}", by.id_prefix),
        model_id: model_id.to_owned(),
        model_version: version.to_owned(),
        stage,
        traffic_weight: state.traffic_weight,
        reason: format!("rejected by {}: {}", by.actor, by.why),
        actor: by.actor.to_owned(),
        remediation_id: by.remediation_id.map(str::to_owned),
        event_time_ms: now_ms,
        kind: vigil_events::EventKind::StageChange,
        lineage: None,
    })
}

fn describe(r: &RemediationEvent) -> String {
    let severity = match r.severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    };
    let mut text =
        format!("policy {} ({severity}) on window [{}, {})", r.policy, r.window_start_ms, r.window_end_ms);
    for e in r.evidence.iter().take(3) {
        let feature = e.feature.as_deref().map(|f| format!("[{f}]")).unwrap_or_default();
        text.push_str(&format!("; {}{feature} = {} vs threshold {}", e.metric, e.value, e.threshold));
    }
    text
}
