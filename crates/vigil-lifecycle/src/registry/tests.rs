use proptest::prelude::*;
use vigil_events::{Evidence, LifecycleEvent, RemediationAction, RemediationEvent, Severity, Stage};

use super::policy::{LifecyclePolicy, ModelPolicy};
use super::Registry;
use crate::{decide, LifecycleError, Outcome};

pub(crate) fn lifecycle(
    id: &str,
    model: &str,
    version: &str,
    stage: Stage,
    weight: Option<f64>,
) -> LifecycleEvent {
    LifecycleEvent {
        event_id: id.into(),
        model_id: model.into(),
        model_version: version.into(),
        stage,
        traffic_weight: weight,
        reason: "test".into(),
        actor: "ci".into(),
        remediation_id: None,
        event_time_ms: 1_000,
        kind: vigil_events::EventKind::StageChange,
        lineage: None,
    }
}

pub(crate) fn remediation(
    id: &str,
    model: &str,
    version: &str,
    severity: Severity,
    action: RemediationAction,
) -> RemediationEvent {
    RemediationEvent {
        remediation_id: id.into(),
        model_id: model.into(),
        model_version: version.into(),
        window_start_ms: 0,
        window_end_ms: 60_000,
        severity,
        action,
        policy: "error-rate".into(),
        evidence: vec![Evidence { metric: "error_rate".into(), value: 0.3, threshold: 0.1, feature: None }],
        reference_id: None,
        config_hash: "h".into(),
        created_at_ms: 61_000,
    }
}

/// v1 production, v2 canary at 10%.
fn two_versions() -> Registry {
    Registry::replay(&[
        lifecycle("e1", "fraud", "v1", Stage::Production, None),
        lifecycle("e2", "fraud", "v2", Stage::Candidate, None),
        lifecycle("e3", "fraud", "v2", Stage::Canary, Some(0.1)),
    ])
    .unwrap()
}

fn apply_all(registry: &mut Registry, events: &[LifecycleEvent]) {
    for event in events {
        registry.apply(event).unwrap();
    }
}

#[test]
fn illegal_transitions_are_rejected_with_the_reason() {
    let mut registry = two_versions();
    let before = registry.clone();
    let err = registry.apply(&lifecycle("x1", "fraud", "v3", Stage::Canary, Some(0.2))).unwrap_err();
    assert!(err.to_string().contains("already has another canary"), "{err}");
    let err = registry.apply(&lifecycle("x2", "fraud", "v9", Stage::RolledBack, None)).unwrap_err();
    assert!(
        matches!(err, LifecycleError::IllegalTransition { from: "NEW", to: Stage::RolledBack, .. }),
        "{err}"
    );
    let err = registry.apply(&lifecycle("x3", "fraud", "v2", Stage::Canary, Some(1.5))).unwrap_err();
    assert!(matches!(err, LifecycleError::InvalidEvent { .. }), "{err}");
    let err = registry.apply(&lifecycle("x4", "fraud", "v2", Stage::Canary, None)).unwrap_err();
    assert!(err.to_string().contains("traffic_weight"), "{err}");
    registry.apply(&lifecycle("x5", "fraud", "v2", Stage::RolledBack, None)).unwrap();
    let err = registry.apply(&lifecycle("x6", "fraud", "v2", Stage::Production, None)).unwrap_err();
    assert!(err.to_string().contains("rolled-back version is final"), "{err}");
    assert!(!err.is_retryable());
    assert_ne!(registry, before);
}

#[test]
fn promotion_retires_the_old_production_which_becomes_the_rollback_target() {
    let mut registry = two_versions();
    registry.apply(&lifecycle("e4", "fraud", "v2", Stage::Production, None)).unwrap();
    let model = registry.model("fraud").unwrap();
    assert_eq!(model.production.as_deref(), Some("v2"));
    assert_eq!(model.canary, None);
    assert_eq!(registry.version("fraud", "v1").unwrap().stage, Stage::Retired);
    assert_eq!(registry.rollback_target("fraud"), Some("v1"));
}

#[test]
fn critical_remediation_on_a_canary_rolls_it_back_once() {
    let mut registry = two_versions();
    let policy = LifecyclePolicy::default();
    let r = remediation("r1", "fraud", "v2", Severity::Critical, RemediationAction::Alert);
    let decision = decide(&registry, &r, &policy, 5_000);
    assert_eq!(decision.outcome, Outcome::RolledBackCanary { version: "v2".into() });
    assert_eq!(decision.events.len(), 1);
    let event = &decision.events[0];
    assert_eq!((event.stage, event.event_id.as_str()), (Stage::RolledBack, "r1:ROLLED_BACK:v2"));
    assert_eq!(
        (event.actor.as_str(), event.remediation_id.as_deref(), event.event_time_ms),
        ("vigil", Some("r1"), 5_000)
    );
    assert!(
        event.reason.contains("error-rate") && event.reason.contains("error_rate = 0.3"),
        "{}",
        event.reason
    );
    apply_all(&mut registry, &decision.events);
    assert_eq!(decide(&registry, &r, &policy, 6_000).outcome, Outcome::Duplicate);
    // Another policy firing on the same window finds the canary already gone.
    let other = remediation("r2", "fraud", "v2", Severity::Critical, RemediationAction::Rollback);
    assert!(decide(&registry, &other, &policy, 6_000).events.is_empty());
}

#[test]
fn production_rolls_back_to_the_last_good_version_skipping_failed_ones() {
    // v1 production, v2 canary rolled back, v3 promoted: a failing v3 returns to v1, not v2.
    let mut registry = two_versions();
    apply_all(
        &mut registry,
        &[
            lifecycle("e4", "fraud", "v2", Stage::RolledBack, None),
            lifecycle("e5", "fraud", "v3", Stage::Canary, Some(0.2)),
            lifecycle("e6", "fraud", "v3", Stage::Production, None),
        ],
    );
    let r = remediation("r1", "fraud", "v3", Severity::Warning, RemediationAction::Rollback);
    let decision = decide(&registry, &r, &LifecyclePolicy::default(), 0);
    assert_eq!(decision.outcome, Outcome::RolledBackProduction { from: "v3".into(), to: "v1".into() });
    apply_all(&mut registry, &decision.events);
    let model = registry.model("fraud").unwrap();
    assert_eq!(model.production.as_deref(), Some("v1"));
    assert_eq!(registry.version("fraud", "v3").unwrap().stage, Stage::RolledBack);
    // v1 failing now has nowhere to go.
    let r = remediation("r2", "fraud", "v1", Severity::Critical, RemediationAction::Rollback);
    assert_eq!(
        decide(&registry, &r, &LifecyclePolicy::default(), 0).outcome,
        Outcome::NoRollbackTarget { version: "v1".into() }
    );
}

/// Rollbacks of model "fraud" wait for a human.
pub(crate) fn manual_rollback_for_fraud() -> LifecyclePolicy {
    let mut policy = LifecyclePolicy::default();
    policy.models.insert("fraud".into(), ModelPolicy { manual_rollback: true, ..ModelPolicy::default() });
    policy
}

#[test]
fn manual_rollback_gate_proposes_and_approval_applies_once() {
    let registry = two_versions();
    let policy = manual_rollback_for_fraud();
    let r = remediation("r1", "fraud", "v2", Severity::Critical, RemediationAction::Rollback);
    let decision = decide(&registry, &r, &policy, 0);
    assert!(decision.events.is_empty());
    let Outcome::AwaitingApproval { proposed } = decision.outcome else {
        panic!("expected a gate: {decision:?}")
    };
    let approved = crate::approve(&proposed, "bob", "drift confirmed", 9_000);
    let mut registry = registry;
    apply_all(&mut registry, &approved);
    apply_all(&mut registry, &approved);
    let state = registry.version("fraud", "v2").unwrap();
    assert_eq!((state.stage, state.last_actor.as_str(), state.updated_ms), (Stage::RolledBack, "bob", 9_000));
    assert!(state.last_reason.ends_with("; approved by bob: drift confirmed"), "{}", state.last_reason);
    assert_eq!(registry.model("fraud").unwrap().history.len(), 4, "three deployments and the approval");
}

#[test]
fn a_rejected_rollback_keeps_production_and_answers_the_remediation() {
    let mut registry = two_versions();
    let by = crate::Cause { id_prefix: "r9", actor: "carol", remediation_id: Some("r9"), why: "false alarm" };
    let keep = crate::reject(&registry, "fraud", "v1", &by, 5_000).unwrap();
    assert_eq!((keep.event_id.as_str(), keep.stage), ("r9:REJECTED:v1", Stage::Production));
    let before = registry.model("fraud").unwrap().production_history.clone();
    registry.apply(&keep).unwrap();
    let model = registry.model("fraud").unwrap();
    assert_eq!(model.production.as_deref(), Some("v1"));
    assert_eq!(model.production_history, before, "keeping production is not a new deployment");
    assert_eq!(registry.version("fraud", "v1").unwrap().last_actor, "carol");
    let again = remediation("r9", "fraud", "v1", Severity::Critical, RemediationAction::Rollback);
    assert_eq!(decide(&registry, &again, &LifecyclePolicy::default(), 6_000).outcome, Outcome::Duplicate);
    // Without a remediation, a production event for the production version is still illegal.
    let mut bare = keep.clone();
    bare.event_id = "x".into();
    bare.remediation_id = None;
    assert!(registry.apply(&bare).is_err());

    // A rejected canary rollback keeps its weight and holds its promotion.
    let keep = crate::reject(
        &registry,
        "fraud",
        "v2",
        &crate::Cause { id_prefix: "r8", remediation_id: Some("r8"), ..by },
        7_000,
    )
    .unwrap();
    registry.apply(&keep).unwrap();
    let v2 = registry.version("fraud", "v2").unwrap();
    assert_eq!((v2.stage, v2.traffic_weight, v2.held_by.as_deref()), (Stage::Canary, Some(0.1), Some("r8")));
}

#[test]
fn a_human_rollback_of_production_restores_the_last_good_version() {
    let mut registry = two_versions();
    registry.apply(&lifecycle("e4", "fraud", "v2", Stage::Production, None)).unwrap();
    let by =
        crate::Cause { id_prefix: "manual:fraud:7", actor: "dave", remediation_id: None, why: "latency" };
    let decision = crate::rollback_events(&registry, "fraud", "v2", &by, 7).unwrap();
    assert_eq!(decision.outcome, Outcome::RolledBackProduction { from: "v2".into(), to: "v1".into() });
    let ids: Vec<_> = decision.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["manual:fraud:7:ROLLED_BACK:v2", "manual:fraud:7:PRODUCTION:v1"]);
    apply_all(&mut registry, &decision.events);
    assert_eq!(registry.model("fraud").unwrap().production.as_deref(), Some("v1"));
    assert!(crate::rollback_events(&registry, "fraud", "v2", &by, 8).is_none(), "rolled back is final");
}

#[test]
fn hold_promotion_holds_a_canary_and_blocks_its_advance() {
    let mut registry = two_versions();
    let policy = LifecyclePolicy::default();
    let r = remediation("r1", "fraud", "v2", Severity::Warning, RemediationAction::HoldPromotion);
    let decision = decide(&registry, &r, &policy, 0);
    assert_eq!(decision.outcome, Outcome::HeldPromotion { version: "v2".into() });
    assert_eq!(decision.events[0].traffic_weight, Some(0.1));
    apply_all(&mut registry, &decision.events);
    assert_eq!(registry.version("fraud", "v2").unwrap().held_by.as_deref(), Some("r1"));
    let step = crate::CanaryStep::Promote;
    assert!(crate::decide_canary(&registry, "fraud", "v2", 120_000, step, &policy, 0).events.is_empty());
    // A human releases the hold with a canary event without remediation id.
    registry.apply(&lifecycle("e9", "fraud", "v2", Stage::Canary, Some(0.1))).unwrap();
    let decision = crate::decide_canary(&registry, "fraud", "v2", 120_000, step, &policy, 0);
    assert_eq!(decision.outcome, Outcome::Promoted { version: "v2".into() });
    apply_all(&mut registry, &decision.events);
    assert_eq!(
        crate::decide_canary(&registry, "fraud", "v2", 120_000, step, &policy, 0).outcome,
        Outcome::NoAction { why: "the version is not a canary" }
    );
}

#[test]
fn manual_promotion_gate_waits() {
    let registry = two_versions();
    let mut policy = LifecyclePolicy::default();
    policy.defaults.manual_promotion = true;
    let decision =
        crate::decide_canary(&registry, "fraud", "v2", 60_000, crate::CanaryStep::Promote, &policy, 0);
    assert!(
        matches!(decision.outcome, Outcome::AwaitingApproval { ref proposed } if proposed[0].stage == Stage::Production)
    );
    assert!(decision.events.is_empty());
}

#[test]
fn policy_validation_lists_every_problem_with_its_key() {
    let mut policy = LifecyclePolicy::default();
    policy.defaults.canary.step_weight = 0.0;
    let mut bad = ModelPolicy::default();
    bad.canary.max_weight = 2.0;
    bad.canary.failed_check_threshold = 0;
    policy.models.insert("fraud".into(), bad);
    let LifecycleError::Config(problems) = policy.validate("lifecycle").unwrap_err() else { panic!() };
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("lifecycle.defaults.canary.step_weight"));
    assert!(problems.iter().any(|p| p.starts_with("lifecycle.models.fraud.canary.failed_check_threshold")));
    assert!(LifecyclePolicy::default().validate("lifecycle").is_ok());
}

const MODELS: [&str; 2] = ["m1", "m2"];
const VERSIONS: [&str; 4] = ["v1", "v2", "v3", "v4"];
const STAGES: [Stage; 5] =
    [Stage::Candidate, Stage::Canary, Stage::Production, Stage::Retired, Stage::RolledBack];

/// Random proposals filtered through `apply`: what is left is a valid log, and so is each of
/// its prefixes.
fn valid_log() -> impl Strategy<Value = Vec<LifecycleEvent>> {
    prop::collection::vec((0..2usize, 0..4usize, 0..5usize, 1..=10u32), 0..60).prop_map(|proposals| {
        let mut registry = Registry::new();
        let mut log = Vec::new();
        for (i, (m, v, s, w)) in proposals.into_iter().enumerate() {
            let weight = (STAGES[s] == Stage::Canary).then_some(f64::from(w) / 10.0);
            let event = lifecycle(&format!("e{i}"), MODELS[m], VERSIONS[v], STAGES[s], weight);
            if registry.apply(&event).is_ok() {
                log.push(event);
            }
        }
        log
    })
}

fn remediations() -> impl Strategy<Value = Vec<RemediationEvent>> {
    let severity = prop::sample::select(vec![Severity::Info, Severity::Warning, Severity::Critical]);
    let action = prop::sample::select(vec![
        RemediationAction::Alert,
        RemediationAction::HoldPromotion,
        RemediationAction::Rollback,
    ]);
    prop::collection::vec((0..6u32, 0..2usize, 0..4usize, severity, action), 1..12).prop_map(|rs| {
        rs.into_iter()
            .map(|(id, m, v, severity, action)| {
                remediation(&format!("r{id}"), MODELS[m], VERSIONS[v], severity, action)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn replaying_a_valid_log_is_deterministic_and_idempotent(log in valid_log()) {
        let once = Registry::replay(&log).unwrap();
        prop_assert_eq!(&Registry::replay(&log).unwrap(), &once);
        for end in 0..log.len() {
            prop_assert!(Registry::replay(&log[..end]).is_ok());
        }
        let doubled: Vec<_> = log.iter().chain(log.iter()).cloned().collect();
        prop_assert_eq!(&Registry::replay(&doubled).unwrap(), &once);
    }

    #[test]
    fn rollback_never_targets_a_failed_version(log in valid_log(), rs in remediations()) {
        let mut registry = Registry::replay(&log).unwrap();
        let policy = LifecyclePolicy::default();
        for r in &rs {
            if let Some(target) = registry.rollback_target(&r.model_id) {
                let state = registry.version(&r.model_id, target).unwrap();
                prop_assert_eq!(state.stage, Stage::Retired);
            }
            let decision = decide(&registry, r, &policy, 0);
            if let Outcome::RolledBackProduction { to, .. } = &decision.outcome {
                prop_assert_ne!(registry.version(&r.model_id, to).unwrap().stage, Stage::RolledBack);
                prop_assert_ne!(to, &r.model_version);
            }
            for event in &decision.events {
                prop_assert!(registry.apply(event).is_ok(), "decided event rejected: {:?}", event);
            }
        }
    }

    #[test]
    fn duplicate_remediations_emit_nothing(log in valid_log(), rs in remediations()) {
        let mut registry = Registry::replay(&log).unwrap();
        let policy = LifecyclePolicy::default();
        for r in &rs {
            let decision = decide(&registry, r, &policy, 0);
            for event in &decision.events {
                registry.apply(event).unwrap();
            }
            let after = registry.clone();
            let again = decide(&registry, r, &policy, 1);
            prop_assert!(again.events.is_empty(), "{:?}", again);
            // Even replaying the first decision's events changes nothing.
            for event in &decision.events {
                registry.apply(event).unwrap();
            }
            prop_assert_eq!(&registry, &after);
        }
    }
}

#[test]
fn a_retrain_remediation_records_one_request_and_a_critical_one_also_rolls_back() {
    let mut registry = Registry::replay(&[
        lifecycle("e1", "fraud", "v1", Stage::Production, None),
        lifecycle("e2", "fraud", "v2", Stage::Canary, Some(0.2)),
    ])
    .unwrap();
    let policy = LifecyclePolicy::default();
    let warning = remediation("r1", "fraud", "v1", Severity::Warning, RemediationAction::Retrain);
    let decision = decide(&registry, &warning, &policy, 5);
    assert_eq!(decision.outcome, Outcome::RetrainRequested { version: "v1".into() });
    assert_eq!(decision.events.len(), 1);
    let e = &decision.events[0];
    assert_eq!(
        (e.kind, e.stage, e.event_id.as_str()),
        (vigil_events::EventKind::RetrainRequested, Stage::Production, "r1:RETRAIN_REQUESTED:v1")
    );
    registry.apply(e).unwrap();
    assert_eq!(registry.version("fraud", "v1").unwrap().stage, Stage::Production, "no stage change");
    assert_eq!(decide(&registry, &warning, &policy, 6).outcome, Outcome::Duplicate);

    let critical = remediation("r2", "fraud", "v2", Severity::Critical, RemediationAction::Retrain);
    let decision = decide(&registry, &critical, &policy, 7);
    assert_eq!(decision.outcome, Outcome::RolledBackCanary { version: "v2".into() });
    let kinds: Vec<_> = decision.events.iter().map(|e| (e.stage, e.kind)).collect();
    assert_eq!(
        kinds,
        [
            (Stage::RolledBack, vigil_events::EventKind::StageChange),
            (Stage::RolledBack, vigil_events::EventKind::RetrainRequested)
        ]
    );
}
