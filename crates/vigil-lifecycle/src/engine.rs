//! The registry with what the lifecycle consumer keeps beside it (the proposals waiting for a
//! human), and the commands people send through the HTTP API. No Kafka here: every method turns
//! an input into events already applied to the registry, which the caller publishes.

use vigil_events::{LifecycleEvent, RemediationEvent, Stage};

use crate::approvals::{Approvals, Pending};
use crate::view::{event_view, to_event};
use crate::{
    approve, decide, decide_canary, reject, rollback_events, stage_name, CanaryStep, Cause, Decision,
    LifecyclePolicy, Outcome, Registry, AUTOMATION_ACTOR,
};

/// A change a person asks for. Every one names its actor and reason, which the events record
/// together with the time.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Adds a version as candidate, canary or production, or moves it along.
    Register {
        model_id: String,
        version: String,
        stage: Stage,
        /// A canary's share; defaults to the model's `canary.step_weight`.
        traffic_weight: Option<f64>,
        actor: String,
        reason: Option<String>,
        /// Where the version came from; none is allowed (and counted by the KPIs).
        lineage: Option<Box<vigil_events::Lineage>>,
    },
    /// Takes a canary or production version out of service (production returns to its last
    /// good version). A person's rollback needs no approval: they are the approval.
    Rollback {
        model_id: String,
        version: String,
        actor: String,
        reason: String,
    },
    Approve {
        id: String,
        actor: String,
        reason: String,
    },
    Reject {
        id: String,
        actor: String,
        reason: String,
    },
    /// One canary analysis window's step (from [`crate::analysis`]), by `vigil`.
    CanaryStep {
        model_id: String,
        version: String,
        window_end_ms: i64,
        step: CanaryStep,
    },
}

impl Command {
    /// For metrics: bounded.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Register { .. } => "register",
            Command::Rollback { .. } => "rollback",
            Command::Approve { .. } => "approve",
            Command::Reject { .. } => "reject",
            Command::CanaryStep { .. } => "canary_step",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandErrorKind {
    /// The request is malformed (an empty actor, a weight out of range).
    Invalid,
    /// No such model, version or proposal.
    NotFound,
    /// Well-formed but illegal now (the registry refuses the move, the proposal went stale).
    Conflict,
    /// The change could not be published; nothing was done.
    Unavailable,
    /// The actor may not do this (four eyes: approving a change they registered or asked for).
    Forbidden,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub kind: CommandErrorKind,
    pub message: String,
}

impl CommandError {
    pub fn new(kind: CommandErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

pub struct Engine {
    pub registry: Registry,
    pub approvals: Approvals,
    pub policy: LifecyclePolicy,
}

impl Engine {
    /// Drops the proposals the registry has answered meanwhile (approved or rejected elsewhere,
    /// or from a log replayed after the file was written).
    pub fn new(registry: Registry, mut approvals: Approvals, policy: LifecyclePolicy) -> Self {
        let dropped = approvals.retain(|p| p.remediation_id.as_deref().is_none_or(|r| !registry.acted_on(r)));
        if !dropped.is_empty() {
            tracing::info!(?dropped, "pending approvals already answered in the log");
        }
        Self { registry, approvals, policy }
    }

    /// Decides on a remediation and applies the decision; a manual gate's proposal joins the
    /// pending approvals. The events in the decision are applied, not yet published.
    pub fn remediation(&mut self, remediation: &RemediationEvent, now_ms: i64) -> Decision {
        let mut decision = decide(&self.registry, remediation, &self.policy, now_ms);
        if let Err(error) = apply_all(&mut self.registry, &decision.events) {
            // A decision the registry rejects is a bug in `decide`; never publish it.
            tracing::error!(%error, remediation = %remediation.remediation_id, "decided events rejected by the registry");
            decision.events.clear();
        }
        if let Outcome::AwaitingApproval { proposed } = &decision.outcome {
            self.propose(
                &remediation.remediation_id,
                &remediation.model_version,
                Some(&remediation.remediation_id),
                proposed,
                now_ms,
            );
        }
        decision
    }

    /// Adds a manual gate's proposal to the pending approvals.
    fn propose(
        &mut self,
        id: &str,
        version: &str,
        remediation_id: Option<&str>,
        proposed: &[LifecycleEvent],
        now_ms: i64,
    ) {
        let Some(model_id) = proposed.first().map(|e| e.model_id.clone()) else {
            return;
        };
        let summary = proposed
            .iter()
            .map(|e| format!("{} {}", e.model_version, stage_name(e.stage)))
            .collect::<Vec<_>>()
            .join(", ");
        self.approvals.insert(Pending {
            id: id.to_owned(),
            summary: format!("{model_id}: {summary}"),
            model_id,
            model_version: version.to_owned(),
            remediation_id: remediation_id.map(str::to_owned),
            proposed: proposed.iter().map(event_view).collect(),
            created_ms: now_ms,
            requested_by: None,
        });
    }

    /// Carries out a command: the events are checked together against the registry, then
    /// applied; on any error nothing changes.
    pub fn command(&mut self, command: &Command, now_ms: i64) -> Result<Vec<LifecycleEvent>, CommandError> {
        use CommandErrorKind::{Conflict, Invalid, NotFound};
        let (actor, reason) = match command {
            Command::Register { actor, reason, .. } => (actor.as_str(), reason.as_deref().unwrap_or("-")),
            Command::Rollback { actor, reason, .. }
            | Command::Approve { actor, reason, .. }
            | Command::Reject { actor, reason, .. } => (actor.as_str(), reason.as_str()),
            Command::CanaryStep { .. } => (AUTOMATION_ACTOR, "canary analysis"),
        };
        if actor.trim().is_empty() || reason.trim().is_empty() {
            return Err(CommandError::new(Invalid, "actor and reason must not be empty"));
        }
        let events = match command {
            Command::Register { model_id, version, stage, traffic_weight, actor, reason, lineage } => {
                let mut event =
                    self.register_event(model_id, version, *stage, *traffic_weight, actor, reason, now_ms)?;
                event.lineage = lineage.clone();
                vec![event]
            }
            Command::Rollback { model_id, version, actor, reason } => {
                let prefix = format!("manual:{model_id}:{now_ms}");
                let by = Cause {
                    id_prefix: &prefix,
                    actor,
                    remediation_id: None,
                    why: &format!("by {actor}: {reason}"),
                };
                let decision = rollback_events(&self.registry, model_id, version, &by, now_ms)
                    .ok_or_else(|| not_serving(&self.registry, model_id, version))?;
                if let Outcome::NoRollbackTarget { .. } = decision.outcome {
                    return Err(CommandError::new(
                        Conflict,
                        format!("model {model_id:?}: production {version:?} has no earlier good version to roll back to"),
                    ));
                }
                decision.events
            }
            Command::Approve { id, actor, reason } => {
                let pending = self
                    .approvals
                    .get(id)
                    .ok_or_else(|| CommandError::new(NotFound, format!("no pending approval {id:?}")))?;
                self.four_eyes(pending, actor)?;
                let proposed: Vec<LifecycleEvent> = pending.proposed.iter().filter_map(to_event).collect();
                approve(&proposed, actor, reason, now_ms)
            }
            Command::Reject { id, actor, reason } => {
                let pending = self
                    .approvals
                    .get(id)
                    .ok_or_else(|| CommandError::new(NotFound, format!("no pending approval {id:?}")))?;
                let by = Cause {
                    id_prefix: id,
                    actor,
                    remediation_id: pending.remediation_id.as_deref(),
                    why: reason,
                };
                match reject(&self.registry, &pending.model_id, &pending.model_version, &by, now_ms) {
                    Some(keep) => vec![keep],
                    None => {
                        let id = id.clone();
                        self.approvals.remove(&id);
                        return Err(CommandError::new(
                            Conflict,
                            format!("approval {id:?} is stale: its version no longer serves; dropped"),
                        ));
                    }
                }
            }
            Command::CanaryStep { model_id, version, window_end_ms, step } => {
                let decision = decide_canary(
                    &self.registry,
                    model_id,
                    version,
                    *window_end_ms,
                    *step,
                    &self.policy,
                    now_ms,
                );
                if let Outcome::AwaitingApproval { proposed } = &decision.outcome {
                    let id = format!("canary:{model_id}:{version}:{window_end_ms}");
                    self.propose(&id, version, None, proposed, now_ms);
                }
                decision.events
            }
        };
        let mut next = self.registry.clone();
        if let Err(error) = apply_all(&mut next, &events) {
            if let Command::Approve { id, .. } = command {
                self.approvals.remove(id);
                return Err(CommandError::new(
                    Conflict,
                    format!("approval {id:?} no longer applies ({error}); dropped"),
                ));
            }
            return Err(CommandError::new(Conflict, error.to_string()));
        }
        self.registry = next;
        if let Command::Approve { id, .. } | Command::Reject { id, .. } = command {
            self.approvals.remove(id);
        }
        Ok(events)
    }

    /// Nobody approves their own change: not whoever registered the version the proposal is
    /// about, nor whoever asked for it.
    fn four_eyes(&self, pending: &Pending, actor: &str) -> Result<(), CommandError> {
        let registrant = self
            .registry
            .version(&pending.model_id, &pending.model_version)
            .map(|v| v.registered_by.as_str());
        let why = if registrant == Some(actor) {
            "registered"
        } else if pending.requested_by.as_deref() == Some(actor) {
            "requested"
        } else {
            return Ok(());
        };
        Err(CommandError::new(
            CommandErrorKind::Forbidden,
            format!(
                "four eyes: {actor:?} {why} model {:?} version {:?} and may not approve {:?}; another approver must",
                pending.model_id, pending.model_version, pending.id
            ),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn register_event(
        &self,
        model_id: &str,
        version: &str,
        stage: Stage,
        traffic_weight: Option<f64>,
        actor: &str,
        reason: &Option<String>,
        now_ms: i64,
    ) -> Result<LifecycleEvent, CommandError> {
        let invalid = |m: String| CommandError::new(CommandErrorKind::Invalid, m);
        if model_id.trim().is_empty() || version.trim().is_empty() {
            return Err(invalid("model and version must not be empty".into()));
        }
        let traffic_weight = match (stage, traffic_weight) {
            (Stage::Canary, Some(w)) if w.is_finite() && w > 0.0 && w <= 1.0 => Some(w),
            (Stage::Canary, Some(w)) => return Err(invalid(format!("traffic_weight {w} must be in (0, 1]"))),
            (Stage::Canary, None) => Some(self.policy.for_model(model_id).canary.step_weight),
            (Stage::Candidate | Stage::Production, None) => None,
            (Stage::Candidate | Stage::Production, Some(_)) => {
                return Err(invalid("traffic_weight applies to the canary stage only".into()))
            }
            (Stage::Retired | Stage::RolledBack, _) => {
                return Err(invalid("register takes candidate, canary or production; use rollback to take a version out of service".into()))
            }
        };
        Ok(LifecycleEvent {
            event_id: format!("manual:{model_id}:{version}:{}:{now_ms}", stage_name(stage)),
            model_id: model_id.to_owned(),
            model_version: version.to_owned(),
            stage,
            traffic_weight,
            reason: reason.clone().unwrap_or_else(|| format!("registered by {actor}")),
            actor: actor.to_owned(),
            remediation_id: None,
            event_time_ms: now_ms,
            kind: vigil_events::EventKind::StageChange,
            lineage: None,
        })
    }
}

fn apply_all(registry: &mut Registry, events: &[LifecycleEvent]) -> Result<(), crate::LifecycleError> {
    events.iter().try_for_each(|e| registry.apply(e))
}

fn not_serving(registry: &Registry, model_id: &str, version: &str) -> CommandError {
    match registry.version(model_id, version) {
        None => CommandError::new(
            CommandErrorKind::NotFound,
            format!("model {model_id:?} has no version {version:?}"),
        ),
        Some(v) => CommandError::new(
            CommandErrorKind::Conflict,
            format!(
                "model {model_id:?} version {version:?} is {}: only a canary or production version can be rolled back",
                stage_name(v.stage)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use vigil_events::{RemediationAction, Severity};

    use super::*;
    use crate::registry::tests::{lifecycle, manual_rollback_for_fraud, remediation};

    fn gated() -> Engine {
        let registry = Registry::replay(&[
            lifecycle("e1", "fraud", "v1", Stage::Production, None),
            lifecycle("e2", "fraud", "v2", Stage::Canary, Some(0.2)),
        ])
        .unwrap();
        Engine::new(registry, Approvals::in_memory(), manual_rollback_for_fraud())
    }

    fn critical(id: &str) -> RemediationEvent {
        remediation(id, "fraud", "v2", Severity::Critical, RemediationAction::Rollback)
    }

    #[test]
    fn a_gated_rollback_waits_then_is_approved_once() {
        let mut engine = gated();
        let decision = engine.remediation(&critical("r1"), 10);
        assert!(decision.events.is_empty());
        assert_eq!(engine.approvals.list().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["r1"]);
        engine.remediation(&critical("r1"), 11);
        assert_eq!(engine.approvals.len(), 1, "a redelivery proposes the same thing");

        let approve = Command::Approve { id: "r1".into(), actor: "alice".into(), reason: "confirmed".into() };
        let events = engine.command(&approve, 20).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (e.event_id.as_str(), e.stage, e.actor.as_str(), e.remediation_id.as_deref(), e.event_time_ms),
            ("r1:ROLLED_BACK:v2", Stage::RolledBack, "alice", Some("r1"), 20)
        );
        assert!(e.reason.contains("approved by alice: confirmed"), "{}", e.reason);
        assert!(engine.approvals.is_empty());
        let again = engine.command(&approve, 21).unwrap_err();
        assert_eq!(again.kind, CommandErrorKind::NotFound);
        assert_eq!(engine.remediation(&critical("r1"), 22).outcome, Outcome::Duplicate);
    }

    #[test]
    fn a_rejection_keeps_the_canary_and_records_who_and_why() {
        let mut engine = gated();
        engine.remediation(&critical("r1"), 10);
        let events = engine
            .command(
                &Command::Reject {
                    id: "r1".into(),
                    actor: "bob".into(),
                    reason: "known seasonal shift".into(),
                },
                30,
            )
            .unwrap();
        assert_eq!((events[0].stage, events[0].traffic_weight), (Stage::Canary, Some(0.2)));
        let v2 = engine.registry.version("fraud", "v2").unwrap();
        assert_eq!(
            (v2.stage, v2.last_actor.as_str(), v2.held_by.as_deref()),
            (Stage::Canary, "bob", Some("r1"))
        );
        assert!(v2.last_reason.contains("known seasonal shift"));
        assert!(engine.approvals.is_empty());
    }

    #[test]
    fn a_stale_approval_is_refused_and_dropped_without_change() {
        let mut engine = gated();
        engine.remediation(&critical("r1"), 10);
        let rollback = Command::Rollback {
            model_id: "fraud".into(),
            version: "v2".into(),
            actor: "carol".into(),
            reason: "by hand".into(),
        };
        let events = engine.command(&rollback, 15).unwrap();
        assert_eq!(events[0].event_id, "manual:fraud:15:ROLLED_BACK:v2");
        let before = engine.registry.clone();
        let error = engine
            .command(&Command::Approve { id: "r1".into(), actor: "alice".into(), reason: "ok".into() }, 20)
            .unwrap_err();
        assert_eq!(error.kind, CommandErrorKind::Conflict, "{error}");
        assert_eq!(engine.registry, before);
        assert!(engine.approvals.is_empty());
    }

    #[test]
    fn commands_are_checked_before_anything_changes() {
        let mut engine = gated();
        let before = engine.registry.clone();
        let cases = [
            (
                Command::Register {
                    model_id: "fraud".into(),
                    version: "v1".into(),
                    stage: Stage::Canary,
                    traffic_weight: None,
                    actor: "ci".into(),
                    reason: None,
                    lineage: None,
                },
                CommandErrorKind::Conflict,
            ),
            (
                Command::Register {
                    model_id: "fraud".into(),
                    version: "v3".into(),
                    stage: Stage::Canary,
                    traffic_weight: Some(1.5),
                    actor: "ci".into(),
                    reason: None,
                    lineage: None,
                },
                CommandErrorKind::Invalid,
            ),
            (
                Command::Register {
                    model_id: "fraud".into(),
                    version: "v3".into(),
                    stage: Stage::Candidate,
                    traffic_weight: None,
                    actor: " ".into(),
                    reason: None,
                    lineage: None,
                },
                CommandErrorKind::Invalid,
            ),
            (
                Command::Rollback {
                    model_id: "fraud".into(),
                    version: "v9".into(),
                    actor: "ci".into(),
                    reason: "x".into(),
                },
                CommandErrorKind::NotFound,
            ),
            (
                Command::Rollback {
                    model_id: "fraud".into(),
                    version: "v1".into(),
                    actor: "ci".into(),
                    reason: "x".into(),
                },
                CommandErrorKind::Conflict,
            ),
        ];
        for (command, kind) in cases {
            assert_eq!(engine.command(&command, 1).unwrap_err().kind, kind, "{command:?}");
        }
        assert_eq!(engine.registry, before);
        let events = engine
            .command(
                &Command::Register {
                    model_id: "fraud".into(),
                    version: "v3".into(),
                    stage: Stage::Candidate,
                    traffic_weight: None,
                    actor: "ci".into(),
                    reason: None,
                    lineage: None,
                },
                2,
            )
            .unwrap();
        assert_eq!(
            (events[0].event_id.as_str(), events[0].reason.as_str()),
            ("manual:fraud:v3:CANDIDATE:2", "registered by ci")
        );
    }

    #[test]
    fn nobody_approves_a_change_to_a_version_they_registered() {
        let mut engine = gated();
        engine.remediation(&critical("r1"), 10);
        // `lifecycle(..)` registers as "ci".
        let own = Command::Approve { id: "r1".into(), actor: "ci".into(), reason: "fine".into() };
        let refused = engine.command(&own, 11).unwrap_err();
        assert_eq!(refused.kind, CommandErrorKind::Forbidden, "{refused}");
        assert!(refused.message.contains("four eyes") && refused.message.contains("\"ci\""), "{refused}");
        assert_eq!(engine.approvals.len(), 1, "the proposal still waits");
        let other = Command::Approve { id: "r1".into(), actor: "dana".into(), reason: "fine".into() };
        assert_eq!(engine.command(&other, 12).unwrap()[0].actor, "dana");
    }

    #[test]
    fn registration_carries_lineage_into_the_version() {
        let mut engine = gated();
        let lineage = vigil_events::Lineage { training_run_id: Some("run-9".into()), ..Default::default() };
        let register = Command::Register {
            model_id: "fraud".into(),
            version: "v3".into(),
            stage: Stage::Candidate,
            traffic_weight: None,
            actor: "erin".into(),
            reason: None,
            lineage: Some(Box::new(lineage.clone())),
        };
        let events = engine.command(&register, 5).unwrap();
        assert_eq!(events[0].lineage.as_deref(), Some(&lineage));
        let v3 = engine.registry.version("fraud", "v3").unwrap();
        assert_eq!((v3.registered_by.as_str(), v3.lineage.as_ref()), ("erin", Some(&lineage)));
    }
}
