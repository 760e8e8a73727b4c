use vigil_events::{EventKind, LifecycleEvent, Lineage, Stage};

use super::*;

const H: i64 = 3_600_000;

fn event(
    id: &str,
    version: &str,
    stage: Stage,
    actor: &str,
    remediation: Option<&str>,
    t: i64,
) -> LifecycleEvent {
    LifecycleEvent {
        event_id: id.into(),
        model_id: "fraud".into(),
        model_version: version.into(),
        stage,
        traffic_weight: (stage == Stage::Canary).then_some(0.1),
        reason: "test".into(),
        actor: actor.into(),
        remediation_id: remediation.map(Into::into),
        event_time_ms: t,
        kind: EventKind::StageChange,
        lineage: None,
    }
}

fn complete() -> Lineage {
    Lineage {
        training_run_id: Some("r".into()),
        datasets: vec![vigil_events::DatasetRef {
            name: "d".into(),
            version: Some("1".into()),
            sha256: None,
        }],
        code_commit: Some("c".into()),
        artifact_uri: Some("s3://a".into()),
        artifact_sha256: Some("ab".repeat(32)),
        ..Default::default()
    }
}

/// v1 straight to production (a bypassed gate), v2 canary rolled back by a remediation 2 h
/// after its breach began, v3 canary then promoted; v1 registered before the period.
fn history() -> (Vec<LifecycleEvent>, Vec<RemediationRecord>) {
    let mut v2 = event("e2", "v2", Stage::Canary, "ci", None, 10 * H);
    v2.lineage = Some(Box::new(complete()));
    let mut v3 = event("e4", "v3", Stage::Candidate, "ci", None, 20 * H);
    v3.lineage = Some(Box::new(Lineage { team: Some("risk".into()), ..Default::default() }));
    let events = vec![
        event("e0", "v1", Stage::Candidate, "ci", None, -5 * H),
        event("e1", "v1", Stage::Production, "ci", None, H),
        v2,
        event("e3", "v2", Stage::RolledBack, "vigil", Some("rem-1"), 14 * H),
        v3,
        event("e5", "v3", Stage::Canary, "ci", None, 21 * H),
        event("e6", "v3", Stage::Production, "alice", None, 30 * H),
    ];
    let remediations = vec![RemediationRecord {
        remediation_id: "rem-1".into(),
        model_id: "fraud".into(),
        model_version: "v2".into(),
        policy: "drift".into(),
        window_start_ms: 13 * H,
        first_breach_ms: 11 * H,
        remediated_ms: 13 * H + 30 * 60_000,
    }];
    (events, remediations)
}

#[test]
fn kpis_of_a_scripted_history() {
    let (events, remediations) = history();
    let input = KpiInput {
        events: &events,
        remediations: &remediations,
        from_ms: 0,
        to_ms: 48 * H,
        approval_deadline_ms: 24 * H,
        model: None,
    };
    let report = compute(&input);
    let k = &report.models[0];
    assert_eq!(report.overall.deployments, k.deployments);
    assert_eq!(k.deployments, 2, "v1 and v3 became production");
    assert_eq!(k.deployment_frequency_per_day, 1.0);
    // v1: registered at -5 h, production at 1 h (6 h); v3: 20 h -> 30 h (10 h).
    assert_eq!(
        k.lead_time,
        Durations {
            count: 2,
            mean_s: Some(8.0 * 3600.0),
            median_s: Some(8.0 * 3600.0),
            max_s: Some(36_000.0)
        }
    );
    assert_eq!((k.versions_deployed, k.versions_rolled_back, k.change_failure_rate), (3, 1, Some(1.0 / 3.0)));
    assert_eq!((k.incidents, k.incident_rate_per_day), (1, 0.5));
    assert_eq!(k.time_to_detect.median_s, Some(2.5 * 3600.0));
    assert_eq!(k.time_to_remediate.median_s, Some(0.5 * 3600.0));
    assert_eq!((k.versions_registered, k.versions_with_lineage, k.versions_with_complete_lineage), (2, 2, 1));
    assert_eq!(k.complete_lineage_share, Some(0.5));
    assert_eq!(k.exceptions, Exceptions { gates_bypassed: 1, ..Default::default() });
}

#[test]
fn exceptions_are_counted() {
    let (mut events, remediations) = history();
    // A person keeps v3 against a remediation two days late, and rolls v3 back by hand.
    events.push(event("e7", "v3", Stage::Production, "bob", Some("rem-1"), 13 * H + 30 * 60_000 + 25 * H));
    events.push(event("e8", "v3", Stage::RolledBack, "bob", None, 40 * H));
    let input = KpiInput {
        events: &events,
        remediations: &remediations,
        from_ms: 0,
        to_ms: 48 * H,
        approval_deadline_ms: 24 * H,
        model: Some("fraud"),
    };
    let k = compute(&input).overall;
    assert_eq!(
        k.exceptions,
        Exceptions { manual_overrides: 1, manual_rollbacks: 1, late_approvals: 1, gates_bypassed: 1 }
    );
}

#[test]
fn a_period_sees_only_its_own_changes() {
    let (events, remediations) = history();
    let input = KpiInput {
        events: &events,
        remediations: &remediations,
        from_ms: 24 * H,
        to_ms: 48 * H,
        approval_deadline_ms: 24 * H,
        model: None,
    };
    let k = compute(&input).overall;
    assert_eq!((k.deployments, k.versions_deployed, k.incidents, k.versions_registered), (1, 0, 0, 0));
    assert_eq!(k.change_failure_rate, None);
}

#[test]
fn streaks_start_at_the_first_breach_after_a_healthy_window() {
    let row = |w: u32, verdict: &str, rem: &str| store::CheckRow {
        model_id: "fraud".into(),
        model_version: "v2".into(),
        policy: "drift".into(),
        window_start: w,
        verdict: verdict.into(),
        remediation_id: rem.into(),
        computed_at: w + 70,
    };
    let checks = vec![
        row(0, "breach", ""),
        row(60, "healthy", ""),
        row(120, "breach", ""),
        row(180, "insufficient_data", ""),
        row(240, "breach", "rem-a"),
        row(300, "breach", "rem-a"),
    ];
    let records = remediations_from_checks(&checks);
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].first_breach_ms, records[0].remediated_ms), (120_000, 310_000));
}
