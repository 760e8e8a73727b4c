//! The `[lifecycle]` section: the lifecycle consumer's group, replay bound and per-model policy.
//! `[alerts]` is `vigil_alerts::AlertsConfig` as it is.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use vigil_lifecycle::{LifecycleError, LifecyclePolicy, ModelPolicy};

/// `defaults` and `models` are spelled out rather than a flattened `LifecyclePolicy`, because
/// `#[serde(flatten)]` would switch off `deny_unknown_fields`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleSection {
    /// Consumer group for remediations; the lifecycle log itself is always read whole.
    pub group_id: String,
    /// Longest time the start-up replay of the lifecycle log may take.
    pub replay_timeout_ms: u64,
    /// For every model not listed in `models`.
    pub defaults: ModelPolicy,
    /// A model's entry replaces `defaults` whole.
    pub models: BTreeMap<String, ModelPolicy>,
}

impl Default for LifecycleSection {
    fn default() -> Self {
        Self { group_id: "vigil-lifecycle".into(), replay_timeout_ms: 60_000, defaults: ModelPolicy::default(), models: BTreeMap::new() }
    }
}

impl LifecycleSection {
    pub fn policy(&self) -> LifecyclePolicy {
        LifecyclePolicy { defaults: self.defaults.clone(), models: self.models.clone() }
    }

    pub fn replay_timeout(&self) -> Duration {
        Duration::from_millis(self.replay_timeout_ms)
    }

    /// Adds every problem to `errors`, each naming its key (`lifecycle.models.fraud.canary.max_weight`).
    pub fn check(&self, errors: &mut Vec<String>) {
        if self.group_id.trim().is_empty() {
            errors.push("lifecycle.group_id: must not be empty".into());
        }
        if !(1_000..=3_600_000).contains(&self.replay_timeout_ms) {
            errors.push(format!("lifecycle.replay_timeout_ms: {} must be between 1000 and 3600000", self.replay_timeout_ms));
        }
        match self.policy().validate("lifecycle") {
            Err(LifecycleError::Config(problems)) => errors.extend(problems),
            Err(other) => errors.push(other.to_string()),
            Ok(()) => {}
        }
    }
}

/// Adds every problem of `[alerts]` to `errors`; no receivers is valid (alerting is off).
pub fn check_alerts(alerts: &vigil_alerts::AlertsConfig, errors: &mut Vec<String>) {
    match alerts.validate("alerts") {
        Err(vigil_alerts::AlertError::Config(problems)) => errors.extend(problems),
        Err(other) => errors.push(other.to_string()),
        Ok(()) => {}
    }
}
