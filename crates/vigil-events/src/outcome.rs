use std::sync::OnceLock;

use crate::codec::{Reader, Writer};
use crate::error::{CodecError, ValidationError};
use crate::schema::{cached, AvroRecord, OUTCOME_SCHEMA};
use crate::validate::{event_time, finite, non_empty};

/// The ground truth for a prediction (`schemas/outcome.avsc`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutcomeEvent {
    pub event_id: String,
    pub prediction_id: String,
    pub model_id: String,
    pub event_time_ms: i64,
    pub label: Option<String>,
    pub value: Option<f64>,
}

impl AvroRecord for OutcomeEvent {
    const FULL_NAME: &'static str = "vigil.v1.OutcomeEvent";
    const SCHEMA_JSON: &'static str = OUTCOME_SCHEMA;

    fn fingerprint() -> u64 {
        static FP: OnceLock<u64> = OnceLock::new();
        cached(&FP, OUTCOME_SCHEMA)
    }

    fn encode_body(&self, w: &mut Writer) {
        w.string(&self.event_id);
        w.string(&self.prediction_id);
        w.string(&self.model_id);
        w.long(self.event_time_ms);
        w.optional(self.label.as_deref(), Writer::string);
        w.optional(self.value.as_ref(), |w, v| w.double(*v));
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            event_id: r.string()?,
            prediction_id: r.string()?,
            model_id: r.string()?,
            event_time_ms: r.long()?,
            label: r.optional(Reader::string)?,
            value: r.optional(Reader::double)?,
        })
    }

    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("model_id", &self.model_id)?;
        non_empty("prediction_id", &self.prediction_id)?;
        event_time("event_time_ms", self.event_time_ms)?;
        finite("value", self.value)?;
        if self.label.is_none() && self.value.is_none() {
            return Err(ValidationError::Empty { field: "label or value" });
        }
        Ok(())
    }
}
