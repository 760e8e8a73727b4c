use std::sync::OnceLock;

use crate::codec::{Reader, Writer};
use crate::error::{CodecError, ValidationError};
use crate::schema::{cached, AvroRecord, REMEDIATION_SCHEMA, REMEDIATION_SCHEMA_1};
use crate::validate::non_empty;

/// A policy breach at window close (`schemas/remediation.avsc`).
#[derive(Debug, Clone, PartialEq)]
pub struct RemediationEvent {
    pub remediation_id: String,
    pub model_id: String,
    pub model_version: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub severity: Severity,
    pub action: RemediationAction,
    pub policy: String,
    pub evidence: Vec<Evidence>,
    pub reference_id: Option<String>,
    pub config_hash: String,
    pub created_at_ms: i64,
}

/// Enum symbols in schema order: the index is what goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemediationAction {
    Alert,
    HoldPromotion,
    Rollback,
    /// Ask the configured training pipelines to retrain the model (revision 2).
    Retrain,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub feature: Option<String>,
}

const SEVERITIES: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];
const ACTIONS: [RemediationAction; 4] = [
    RemediationAction::Alert,
    RemediationAction::HoldPromotion,
    RemediationAction::Rollback,
    RemediationAction::Retrain,
];
/// Revision 1 knew the first three actions.
const ACTIONS_1: usize = 3;

impl AvroRecord for RemediationEvent {
    const FULL_NAME: &'static str = "vigil.v1.RemediationEvent";
    const SCHEMA_JSON: &'static str = REMEDIATION_SCHEMA;

    fn fingerprint() -> u64 {
        static FP: OnceLock<u64> = OnceLock::new();
        cached(&FP, REMEDIATION_SCHEMA)
    }

    fn encode_body(&self, w: &mut Writer) {
        w.string(&self.remediation_id);
        w.string(&self.model_id);
        w.string(&self.model_version);
        w.long(self.window_start_ms);
        w.long(self.window_end_ms);
        w.long(self.severity as i64);
        w.long(self.action as i64);
        w.string(&self.policy);
        w.block_start(self.evidence.len());
        for e in &self.evidence {
            w.string(&e.metric);
            w.double(e.value);
            w.double(e.threshold);
            w.optional(e.feature.as_deref(), Writer::string);
        }
        w.end_blocks();
        w.optional(self.reference_id.as_deref(), Writer::string);
        w.string(&self.config_hash);
        w.long(self.created_at_ms);
    }

    fn older_fingerprints() -> Vec<u64> {
        static FP: OnceLock<u64> = OnceLock::new();
        vec![cached(&FP, REMEDIATION_SCHEMA_1)]
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        decode_with_actions(r, ACTIONS.len())
    }

    fn decode_older(fingerprint: u64, r: &mut Reader<'_>) -> Option<Result<Self, CodecError>> {
        Self::older_fingerprints().contains(&fingerprint).then(|| decode_with_actions(r, ACTIONS_1))
    }

    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("remediation_id", &self.remediation_id)?;
        non_empty("model_id", &self.model_id)
    }
}

/// The body, with the first `actions` symbols of the action enum known to its writer.
fn decode_with_actions(r: &mut Reader<'_>, actions: usize) -> Result<RemediationEvent, CodecError> {
    let remediation_id = r.string()?;
    let model_id = r.string()?;
    let model_version = r.string()?;
    let window_start_ms = r.long()?;
    let window_end_ms = r.long()?;
    let severity = SEVERITIES[r.index(SEVERITIES.len())?];
    let action = ACTIONS[r.index(actions)?];
    let policy = r.string()?;
    let mut evidence = Vec::new();
    r.blocks(|r| {
        evidence.push(Evidence {
            metric: r.string()?,
            value: r.double()?,
            threshold: r.double()?,
            feature: r.optional(Reader::string)?,
        });
        Ok(())
    })?;
    Ok(RemediationEvent {
        remediation_id,
        model_id,
        model_version,
        window_start_ms,
        window_end_ms,
        severity,
        action,
        policy,
        evidence,
        reference_id: r.optional(Reader::string)?,
        config_hash: r.string()?,
        created_at_ms: r.long()?,
    })
}
