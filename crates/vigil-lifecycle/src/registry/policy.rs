//! Per-model lifecycle policy: manual gates and canary steps, as the `[lifecycle]` config section.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::canary::CanaryConfig;
use crate::LifecycleError;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecyclePolicy {
    /// For every model not listed in `models`.
    pub defaults: ModelPolicy,
    /// A model's entry replaces `defaults` whole (fields it omits take the built-in defaults), so
    /// what applies to a model can be read in one place.
    pub models: BTreeMap<String, ModelPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPolicy {
    /// Promotion of a healthy canary waits for a human (the proposed events are published by
    /// whoever approves, with their name as actor).
    pub manual_promotion: bool,
    /// Rollbacks wait for a human too. Off by default: a critical breach acts at once.
    pub manual_rollback: bool,
    pub canary: CanaryConfig,
}

impl LifecyclePolicy {
    pub fn for_model(&self, model_id: &str) -> &ModelPolicy {
        self.models.get(model_id).unwrap_or(&self.defaults)
    }

    /// Checks every entry and reports every problem at once, each naming its key under `prefix`
    /// (e.g. `lifecycle`).
    pub fn validate(&self, prefix: &str) -> Result<(), LifecycleError> {
        let mut problems = Vec::new();
        self.defaults.canary.check(&format!("{prefix}.defaults.canary"), &mut problems);
        for (model, policy) in &self.models {
            policy.canary.check(&format!("{prefix}.models.{model}.canary"), &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LifecycleError::Config(problems))
        }
    }
}
