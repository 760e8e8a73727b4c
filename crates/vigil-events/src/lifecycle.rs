use std::sync::OnceLock;

use crate::codec::{Reader, Writer};
use crate::error::{CodecError, ValidationError};
use crate::schema::{cached, AvroRecord, LIFECYCLE_SCHEMA};
use crate::validate::{finite, non_empty};

/// One stage change of a model version (`schemas/lifecycle.avsc`).
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleEvent {
    pub event_id: String,
    pub model_id: String,
    pub model_version: String,
    pub stage: Stage,
    pub traffic_weight: Option<f64>,
    pub reason: String,
    pub actor: String,
    pub remediation_id: Option<String>,
    pub event_time_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Candidate,
    Canary,
    Production,
    Retired,
    RolledBack,
}

const STAGES: [Stage; 5] =
    [Stage::Candidate, Stage::Canary, Stage::Production, Stage::Retired, Stage::RolledBack];

impl AvroRecord for LifecycleEvent {
    const FULL_NAME: &'static str = "vigil.v1.LifecycleEvent";
    const SCHEMA_JSON: &'static str = LIFECYCLE_SCHEMA;

    fn fingerprint() -> u64 {
        static FP: OnceLock<u64> = OnceLock::new();
        cached(&FP, LIFECYCLE_SCHEMA)
    }

    fn encode_body(&self, w: &mut Writer) {
        w.string(&self.event_id);
        w.string(&self.model_id);
        w.string(&self.model_version);
        w.long(self.stage as i64);
        w.optional(self.traffic_weight.as_ref(), |w, v| w.double(*v));
        w.string(&self.reason);
        w.string(&self.actor);
        w.optional(self.remediation_id.as_deref(), Writer::string);
        w.long(self.event_time_ms);
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            event_id: r.string()?,
            model_id: r.string()?,
            model_version: r.string()?,
            stage: STAGES[r.index(STAGES.len())?],
            traffic_weight: r.optional(Reader::double)?,
            reason: r.string()?,
            actor: r.string()?,
            remediation_id: r.optional(Reader::string)?,
            event_time_ms: r.long()?,
        })
    }

    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("model_id", &self.model_id)?;
        non_empty("model_version", &self.model_version)?;
        finite("traffic_weight", self.traffic_weight)
    }
}
