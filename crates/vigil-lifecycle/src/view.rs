//! The registry as JSON: what the HTTP API answers, `vigil lifecycle state --json` prints and the
//! approvals file keeps. Field names are the API's contract (`docs/openapi/lifecycle.json`).

use serde::{Deserialize, Serialize};
use vigil_alerts::{DatasetView, LineageView};
use vigil_events::{DatasetRef, EventKind, LifecycleEvent, Lineage, Stage};

use crate::{stage_name, ModelState, Registry};

/// A lifecycle event as JSON; `stage` is the Avro symbol. The same shape goes to the serving
/// platform.
pub use vigil_alerts::StageChange as EventView;

pub fn event_view(e: &LifecycleEvent) -> EventView {
    EventView {
        event_id: e.event_id.clone(),
        model_id: e.model_id.clone(),
        model_version: e.model_version.clone(),
        stage: stage_name(e.stage).to_owned(),
        traffic_weight: e.traffic_weight,
        reason: e.reason.clone(),
        actor: e.actor.clone(),
        remediation_id: e.remediation_id.clone(),
        event_time_ms: e.event_time_ms,
        kind: kind_name(e.kind).to_owned(),
        lineage: e.lineage.as_deref().map(lineage_view),
    }
}

/// The Avro symbol of an event kind.
pub fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::StageChange => "STAGE_CHANGE",
        EventKind::RetrainRequested => "RETRAIN_REQUESTED",
    }
}

pub fn lineage_view(l: &Lineage) -> LineageView {
    LineageView {
        training_run_id: l.training_run_id.clone(),
        training_run_uri: l.training_run_uri.clone(),
        datasets: l
            .datasets
            .iter()
            .map(|d| DatasetView {
                name: d.name.clone(),
                version: d.version.clone(),
                sha256: d.sha256.clone(),
            })
            .collect(),
        code_repository: l.code_repository.clone(),
        code_commit: l.code_commit.clone(),
        artifact_uri: l.artifact_uri.clone(),
        artifact_sha256: l.artifact_sha256.clone(),
        parent_version: l.parent_version.clone(),
        team: l.team.clone(),
        tags: l.tags.clone(),
    }
}

pub fn lineage_of(v: &LineageView) -> Lineage {
    Lineage {
        training_run_id: v.training_run_id.clone(),
        training_run_uri: v.training_run_uri.clone(),
        datasets: v
            .datasets
            .iter()
            .map(|d| DatasetRef {
                name: d.name.clone(),
                version: d.version.clone(),
                sha256: d.sha256.clone(),
            })
            .collect(),
        code_repository: v.code_repository.clone(),
        code_commit: v.code_commit.clone(),
        artifact_uri: v.artifact_uri.clone(),
        artifact_sha256: v.artifact_sha256.clone(),
        parent_version: v.parent_version.clone(),
        team: v.team.clone(),
        tags: v.tags.clone(),
    }
}

/// Back to the event; `None` for an unknown stage symbol.
pub fn to_event(view: &EventView) -> Option<LifecycleEvent> {
    Some(LifecycleEvent {
        event_id: view.event_id.clone(),
        model_id: view.model_id.clone(),
        model_version: view.model_version.clone(),
        stage: stage_from_name(&view.stage)?,
        traffic_weight: view.traffic_weight,
        reason: view.reason.clone(),
        actor: view.actor.clone(),
        remediation_id: view.remediation_id.clone(),
        event_time_ms: view.event_time_ms,
        kind: match view.kind.as_str() {
            "RETRAIN_REQUESTED" => EventKind::RetrainRequested,
            _ => EventKind::StageChange,
        },
        lineage: view.lineage.as_ref().map(|l| Box::new(lineage_of(l))),
    })
}

/// The stage of an Avro symbol (`ROLLED_BACK`), or of its lowercase form (`rolled_back`).
pub fn stage_from_name(name: &str) -> Option<Stage> {
    [Stage::Candidate, Stage::Canary, Stage::Production, Stage::Retired, Stage::RolledBack]
        .into_iter()
        .find(|s| stage_name(*s).eq_ignore_ascii_case(name))
}

/// Every model with its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateView {
    pub models: Vec<ModelView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelView {
    pub model_id: String,
    pub production: Option<String>,
    pub canary: Option<String>,
    pub versions: Vec<VersionView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    pub version: String,
    pub stage: String,
    pub traffic_weight: Option<f64>,
    /// The remediation holding this canary's promotion.
    pub held_by: Option<String>,
    pub last_event_id: String,
    pub actor: String,
    pub reason: String,
    pub updated_ms: i64,
    /// Who registered the version (the first event's actor) and when.
    pub registered_by: String,
    pub registered_ms: i64,
    /// Where the version came from; `None` when registered without lineage.
    pub lineage: Option<LineageView>,
    /// Whether the lineage names run, datasets, commit and artifact with its hash.
    pub lineage_complete: bool,
}

impl StateView {
    pub fn of(registry: &Registry) -> Self {
        Self { models: registry.models().map(|(id, model)| ModelView::of(id, model)).collect() }
    }
}

impl ModelView {
    pub fn of(model_id: &str, model: &ModelState) -> Self {
        Self {
            model_id: model_id.to_owned(),
            production: model.production.clone(),
            canary: model.canary.clone(),
            versions: model
                .versions
                .iter()
                .map(|(version, v)| VersionView {
                    version: version.clone(),
                    stage: stage_name(v.stage).to_owned(),
                    traffic_weight: v.traffic_weight,
                    held_by: v.held_by.clone(),
                    last_event_id: v.last_event_id.clone(),
                    actor: v.last_actor.clone(),
                    reason: v.last_reason.clone(),
                    updated_ms: v.updated_ms,
                    registered_by: v.registered_by.clone(),
                    registered_ms: v.registered_ms,
                    lineage: v.lineage.as_ref().map(lineage_view),
                    lineage_complete: v.lineage.as_ref().is_some_and(Lineage::is_complete),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_round_trip() {
        for stage in [Stage::Candidate, Stage::Canary, Stage::Production, Stage::Retired, Stage::RolledBack] {
            assert_eq!(stage_from_name(stage_name(stage)), Some(stage));
        }
        assert_eq!(stage_from_name("rolled_back"), Some(Stage::RolledBack));
        assert_eq!(stage_from_name("live"), None);
    }
}
