//! A retraining request: what a `retrain` remediation asks the configured training pipelines
//! (Airflow, Argo Workflows, Kubeflow Pipelines, a signed webhook) to do. Delivered through the
//! outbox like alerts; `idempotency_key`, derived from the remediation id, names the run each
//! pipeline creates, so a retry or a redelivered remediation starts no second run.

use serde::{Deserialize, Serialize};

use crate::LineageView;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainRequest {
    /// `vigil-retrain-<16 hex digits>`: a lowercase DNS label, valid as an Airflow run id, an
    /// Argo workflow name and a Kubeflow run name.
    pub idempotency_key: String,
    pub remediation_id: String,
    pub model_id: String,
    pub model_version: String,
    pub policy: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub evidence: Vec<RetrainEvidence>,
    /// The lineage of the version to replace (its training run, data and code), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<LineageView>,
    pub requested_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainEvidence {
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
}

/// The idempotency key of a remediation's retraining request.
pub fn retrain_key(remediation_id: &str) -> String {
    format!("vigil-retrain-{:016x}", vigil_events::fnv1a64(remediation_id.as_bytes()))
}
