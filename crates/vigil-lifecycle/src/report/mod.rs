//! `vigil audit report`: one model's governance record over a period, for an auditor. The
//! lineage of every version, its stage history with the subjects and reasons, every remediation
//! with its evidence (window, policy value and threshold, the drift test of every feature) and
//! what the lifecycle did about it, approvals and who gave them, alert and pipeline deliveries,
//! the KPIs, and drift and performance over time. As JSON ([`AuditReport`]) or one
//! self-contained HTML file with charts ([`html::render`]), both carrying a SHA-256 of the
//! content ([`AuditReport::seal`]).

pub mod html;
pub mod store;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::kpi::Kpis;
use crate::view::{EventView, VersionView};

/// The report's format revision.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub report_version: u32,
    pub model_id: String,
    /// Only this version's records, when given.
    pub model_version: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    /// When the report was made; not part of the content hash.
    pub generated_at_ms: i64,
    /// Every version (or the one asked for) with its lineage.
    pub versions: Vec<VersionView>,
    /// Lifecycle events of the period, oldest first.
    pub stage_history: Vec<EventView>,
    pub remediations: Vec<RemediationEntry>,
    pub approvals: Vec<ApprovalEntry>,
    pub deliveries: Vec<DeliveryEntry>,
    pub kpis: Kpis,
    pub series: Series,
    /// Hex SHA-256 of the report's JSON with this field empty and `generated_at_ms` 0.
    pub content_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationEntry {
    pub remediation_id: String,
    pub model_version: String,
    pub policy: String,
    pub window_start_ms: i64,
    pub verdict: String,
    pub value: f64,
    pub threshold: f64,
    pub streak: u32,
    /// What the verdict rests on, as the monitor stored it (JSON).
    pub detail: serde_json::Value,
    pub reference_id: String,
    pub config_hash: String,
    pub computed_at_ms: i64,
    /// The drift test of every feature in that window.
    pub features: Vec<FeatureEvidence>,
    /// What the lifecycle did about it.
    pub lifecycle: Vec<EventView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureEvidence {
    pub feature: String,
    pub test: String,
    pub statistic: f64,
    pub p_value: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
}

/// A person's answer to a pending decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalEntry {
    pub event_id: String,
    pub model_version: String,
    /// `approved` or `rejected`.
    pub decision: String,
    pub approver: String,
    pub stage: String,
    pub reason: String,
    pub remediation_id: Option<String>,
    pub event_time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryEntry {
    pub receiver: String,
    /// `firing`, `resolved`, `traffic` or `retrain`.
    pub state: String,
    pub severity: String,
    pub model_version: String,
    pub policy: String,
    pub remediation_id: Option<String>,
    pub attempt: u32,
    pub outcome: String,
    pub http_status: u16,
    pub at_ms: i64,
}

/// The charts' data: one point per closed window and version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub drift: Vec<Point>,
    pub performance: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub model_version: String,
    pub t_ms: i64,
    /// Drift: features drifted in the window; performance: accuracy.
    pub value: f64,
}

impl AuditReport {
    /// The SHA-256 of the content: the report's JSON with `content_sha256` empty and
    /// `generated_at_ms` 0, written compactly with every object's keys sorted ([`canonical`]),
    /// so anyone can recompute it from the JSON file.
    pub fn content_hash(&self) -> String {
        let mut content = self.clone();
        content.content_sha256 = String::new();
        content.generated_at_ms = 0;
        let value = serde_json::to_value(&content).unwrap_or_default();
        let mut text = String::new();
        canonical(&value, &mut text);
        Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Sets [`AuditReport::content_sha256`].
    pub fn seal(mut self) -> Self {
        self.content_sha256 = self.content_hash();
        self
    }
}

/// Compact JSON with every object's keys in byte order (as Python's
/// `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes it for the
/// values a report holds).
pub fn canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A person's answers among `events`: events about a remediation by someone else than vigil.
pub fn approvals(events: &[EventView]) -> Vec<ApprovalEntry> {
    events
        .iter()
        .filter(|e| e.actor != crate::AUTOMATION_ACTOR && e.remediation_id.is_some())
        .map(|e| ApprovalEntry {
            event_id: e.event_id.clone(),
            model_version: e.model_version.clone(),
            decision: if e.reason.contains("; approved by ") { "approved" } else { "rejected" }.into(),
            approver: e.actor.clone(),
            stage: e.stage.clone(),
            reason: e.reason.clone(),
            remediation_id: e.remediation_id.clone(),
            event_time_ms: e.event_time_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn report() -> AuditReport {
        AuditReport {
            report_version: REPORT_VERSION,
            model_id: "fraud".into(),
            model_version: None,
            from_ms: 0,
            to_ms: 86_400_000,
            generated_at_ms: 5,
            versions: vec![],
            stage_history: vec![],
            remediations: vec![],
            approvals: vec![],
            deliveries: vec![],
            kpis: Kpis::default(),
            series: Series {
                drift: vec![Point { model_version: "v1".into(), t_ms: 0, value: 2.0 }],
                performance: vec![Point { model_version: "v1".into(), t_ms: 0, value: 0.8 }],
            },
            content_sha256: String::new(),
        }
        .seal()
    }

    #[test]
    fn the_hash_covers_the_content_not_the_time_it_was_made() {
        let a = report();
        assert_eq!(a.content_sha256.len(), 64);
        let later = AuditReport { generated_at_ms: 99, ..a.clone() }.seal();
        assert_eq!(later.content_sha256, a.content_sha256);
        let mut changed = a.clone();
        changed.series.drift[0].value = 3.0;
        assert_ne!(changed.seal().content_sha256, a.content_sha256);
        assert_eq!(a.content_hash(), a.content_sha256, "a sealed report verifies");
    }
}
