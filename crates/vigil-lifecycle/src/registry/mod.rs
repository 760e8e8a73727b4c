//! The model registry as the fold of `vigil.lifecycle.v1`: pure, no I/O, no clock. Replaying the
//! same log gives the same state on any machine; an event id seen before is a no-op, so a log
//! with duplicates (a producer retry, a decision made twice) folds to the same state too.

pub mod canary;
pub mod decide;
pub mod policy;

use std::collections::{BTreeMap, BTreeSet};

use vigil_events::{EventKind, LifecycleEvent, Lineage, Stage};

use crate::{stage_name, LifecycleError};

/// Who made a decision the automation took.
pub const AUTOMATION_ACTOR: &str = "vigil";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    models: BTreeMap<String, ModelState>,
    /// Ids of every applied event: the second copy of an event changes nothing.
    applied: BTreeSet<String>,
    /// Remediations that already caused an event: a duplicate remediation decides nothing new.
    acted_on: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelState {
    pub versions: BTreeMap<String, VersionState>,
    pub production: Option<String>,
    /// At most one canary per model, as in Flagger and Argo Rollouts.
    pub canary: Option<String>,
    /// Versions in the order they became production, oldest first: rollback targets come from here.
    pub production_history: Vec<String>,
    /// Every event applied to this model, in the order applied.
    pub history: Vec<LifecycleEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VersionState {
    pub stage: Stage,
    /// Canary share of traffic; `None` outside the canary stage.
    pub traffic_weight: Option<f64>,
    /// The remediation holding this canary's promotion (see [`Registry::apply`]).
    pub held_by: Option<String>,
    pub last_event_id: String,
    pub last_reason: String,
    pub last_actor: String,
    pub updated_ms: i64,
    /// Who registered the version (the actor of its first event) and when.
    pub registered_by: String,
    pub registered_ms: i64,
    /// The lineage of the latest event that carried one (normally the registration).
    pub lineage: Option<Lineage>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds `events` in order; stops at the first one [`Registry::apply`] rejects.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a LifecycleEvent>) -> Result<Self, LifecycleError> {
        let mut registry = Self::new();
        for event in events {
            registry.apply(event)?;
        }
        Ok(registry)
    }

    pub fn model(&self, model_id: &str) -> Option<&ModelState> {
        self.models.get(model_id)
    }

    pub fn models(&self) -> impl Iterator<Item = (&str, &ModelState)> {
        self.models.iter().map(|(id, state)| (id.as_str(), state))
    }

    pub fn version(&self, model_id: &str, version: &str) -> Option<&VersionState> {
        self.models.get(model_id)?.versions.get(version)
    }

    pub fn contains_event(&self, event_id: &str) -> bool {
        self.applied.contains(event_id)
    }

    /// Whether an event in the log already carries this remediation id.
    pub fn acted_on(&self, remediation_id: &str) -> bool {
        self.acted_on.contains(remediation_id)
    }

    /// The version production returns to when it fails: the most recent earlier production
    /// version that was never rolled back. `None` when there is none to go back to.
    pub fn rollback_target(&self, model_id: &str) -> Option<&str> {
        let model = self.models.get(model_id)?;
        model
            .production_history
            .iter()
            .rev()
            .filter(|v| model.production.as_ref() != Some(*v))
            .find(|v| model.versions.get(*v).is_some_and(|s| s.stage == Stage::Retired))
            .map(String::as_str)
    }

    /// Applies one event, or rejects it with the reason and leaves the state as it was.
    ///
    /// Legal moves: a new version enters as candidate, canary or production; candidate ->
    /// canary -> production; a canary changes weight; candidate, canary and production can be
    /// rolled back or retired; a retired version that was production before can return to
    /// production (that is what a rollback does). A rolled-back version is final. Making a
    /// version production retires the previous one; a canary event that carries a remediation id
    /// holds the canary's promotion, one without releases it. A production event for the
    /// production version is a decision to keep it (a rejected rollback): it must carry the
    /// remediation it answers, and changes nothing but the record.
    pub fn apply(&mut self, event: &LifecycleEvent) -> Result<(), LifecycleError> {
        if self.applied.contains(&event.event_id) {
            return Ok(());
        }
        check_fields(event)?;
        if event.kind == EventKind::RetrainRequested {
            return self.record_retrain(event);
        }
        let model = self.models.get(&event.model_id);
        let current = model.and_then(|m| m.versions.get(&event.model_version));
        let illegal = |from: &'static str, why: &'static str| LifecycleError::IllegalTransition {
            model_id: event.model_id.clone(),
            version: event.model_version.clone(),
            from,
            to: event.stage,
            why,
        };
        let from = current.map_or("NEW", |v| stage_name(v.stage));
        match (current.map(|v| v.stage), event.stage) {
            (Some(Stage::RolledBack), _) => {
                return Err(illegal(from, "a rolled-back version is final; publish a new version"))
            }
            (None, Stage::RolledBack | Stage::Retired) => {
                return Err(illegal(from, "the version is not in the registry"))
            }
            (Some(Stage::Retired), Stage::Production)
                if !model.is_some_and(|m| m.production_history.contains(&event.model_version)) =>
            {
                return Err(illegal(from, "only a version that was production before can return to it"));
            }
            (Some(Stage::Retired), Stage::Production) => {}
            (Some(Stage::Retired), _) => {
                return Err(illegal(from, "a retired version can only return to production"))
            }
            (Some(Stage::Production), Stage::Production) if event.remediation_id.is_some() => {}
            (Some(Stage::Production), Stage::Production | Stage::Candidate | Stage::Canary) => {
                return Err(illegal(from, "the version is already in production"));
            }
            (Some(Stage::Canary), Stage::Candidate) | (Some(Stage::Candidate), Stage::Candidate) => {
                return Err(illegal(from, "a version cannot go back to candidate"));
            }
            (None | Some(Stage::Candidate) | Some(Stage::Canary), Stage::Canary) => {
                let other = model.and_then(|m| m.canary.as_ref()).filter(|c| **c != event.model_version);
                if other.is_some() {
                    return Err(illegal(
                        from,
                        "the model already has another canary; promote, roll back or retire it first",
                    ));
                }
            }
            _ => {}
        }
        self.commit(event, current.map(|v| v.stage));
        Ok(())
    }

    /// A retraining request: recorded in the history without changing any stage; the version
    /// must exist. The remediation is not marked acted on: a rollback it asks for may still wait
    /// for approval (its own event id keeps the request from repeating).
    fn record_retrain(&mut self, event: &LifecycleEvent) -> Result<(), LifecycleError> {
        let Some(model) = self.models.get_mut(&event.model_id) else {
            return Err(LifecycleError::InvalidEvent {
                event_id: event.event_id.clone(),
                reason: format!(
                    "retrain requested for model {:?}, which is not in the registry",
                    event.model_id
                ),
            });
        };
        model.history.push(event.clone());
        self.applied.insert(event.event_id.clone());
        Ok(())
    }

    /// The state change of an event `apply` accepted.
    fn commit(&mut self, event: &LifecycleEvent, previous: Option<Stage>) {
        let version = event.model_version.clone();
        let model = self.models.entry(event.model_id.clone()).or_default();
        let held_by = match event.stage {
            Stage::Canary => event.remediation_id.clone(),
            _ => None,
        };
        match event.stage {
            Stage::Canary => model.canary = Some(version.clone()),
            // Kept in production (a rejected rollback): only the record changes.
            Stage::Production if previous == Some(Stage::Production) => {}
            Stage::Production => {
                if let Some(old) = model.production.take().and_then(|p| model.versions.get_mut(&p)) {
                    old.stage = Stage::Retired;
                    old.traffic_weight = None;
                }
                model.production = Some(version.clone());
                model.production_history.push(version.clone());
            }
            Stage::Candidate | Stage::Retired | Stage::RolledBack => {}
        }
        if event.stage != Stage::Canary && model.canary.as_ref() == Some(&version) {
            model.canary = None;
        }
        if matches!(event.stage, Stage::Retired | Stage::RolledBack)
            && model.production.as_ref() == Some(&version)
        {
            model.production = None;
        }
        debug_assert!(previous != Some(Stage::RolledBack));
        let earlier = model.versions.get(&version);
        let registered_by = earlier.map_or_else(|| event.actor.clone(), |v| v.registered_by.clone());
        let registered_ms = earlier.map_or(event.event_time_ms, |v| v.registered_ms);
        let lineage = match &event.lineage {
            Some(l) => Some((**l).clone()),
            None => earlier.and_then(|v| v.lineage.clone()),
        };
        model.versions.insert(
            version,
            VersionState {
                registered_by,
                registered_ms,
                lineage,
                stage: event.stage,
                traffic_weight: if event.stage == Stage::Canary { event.traffic_weight } else { None },
                held_by,
                last_event_id: event.event_id.clone(),
                last_reason: event.reason.clone(),
                last_actor: event.actor.clone(),
                updated_ms: event.event_time_ms,
            },
        );
        model.history.push(event.clone());
        self.applied.insert(event.event_id.clone());
        if let Some(remediation) = &event.remediation_id {
            self.acted_on.insert(remediation.clone());
        }
    }
}

fn check_fields(event: &LifecycleEvent) -> Result<(), LifecycleError> {
    let invalid = |reason: &str| LifecycleError::InvalidEvent {
        event_id: event.event_id.clone(),
        reason: reason.to_owned(),
    };
    if event.event_id.is_empty() {
        return Err(invalid("event_id is empty"));
    }
    if event.model_id.is_empty() || event.model_version.is_empty() {
        return Err(invalid("model_id and model_version must not be empty"));
    }
    match (event.stage, event.traffic_weight) {
        (Stage::Canary, Some(w)) if w.is_finite() && w > 0.0 && w <= 1.0 => Ok(()),
        (Stage::Canary, _) => Err(invalid("a canary event needs traffic_weight in (0, 1]")),
        (_, Some(w)) if !w.is_finite() || !(0.0..=1.0).contains(&w) => {
            Err(invalid("traffic_weight must be in [0, 1]"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests;
