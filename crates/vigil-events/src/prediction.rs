use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::codec::{Reader, Writer};
use crate::error::{CodecError, ValidationError};
use crate::schema::{cached, AvroRecord, PREDICTION_SCHEMA};
use crate::validate::{event_time, finite, non_empty};

/// One model prediction (`schemas/prediction.avsc`). Maps are ordered so the encoding is
/// deterministic.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PredictionEvent {
    pub event_id: String,
    pub prediction_id: String,
    pub model_id: String,
    pub model_version: String,
    pub event_time_ms: i64,
    pub segment: BTreeMap<String, String>,
    pub numeric_features: BTreeMap<String, f64>,
    pub categorical_features: BTreeMap<String, String>,
    pub prediction: Prediction,
    pub serving_latency_ms: Option<f64>,
}

/// What the model returned; a classifier sets `label` and/or `probabilities` or `score`, a
/// regressor sets `value`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prediction {
    pub label: Option<String>,
    pub probabilities: Option<BTreeMap<String, f64>>,
    pub score: Option<f64>,
    pub value: Option<f64>,
}

impl AvroRecord for PredictionEvent {
    const FULL_NAME: &'static str = "vigil.v1.PredictionEvent";
    const SCHEMA_JSON: &'static str = PREDICTION_SCHEMA;

    fn fingerprint() -> u64 {
        static FP: OnceLock<u64> = OnceLock::new();
        cached(&FP, PREDICTION_SCHEMA)
    }

    fn encode_body(&self, w: &mut Writer) {
        w.string(&self.event_id);
        w.string(&self.prediction_id);
        w.string(&self.model_id);
        w.string(&self.model_version);
        w.long(self.event_time_ms);
        w.map(&self.segment, |w, v| w.string(v));
        w.map(&self.numeric_features, |w, v| w.double(*v));
        w.map(&self.categorical_features, |w, v| w.string(v));
        let p = &self.prediction;
        w.optional(p.label.as_deref(), Writer::string);
        w.optional(p.probabilities.as_ref(), |w, m| w.map(m, |w, v| w.double(*v)));
        w.optional(p.score.as_ref(), |w, v| w.double(*v));
        w.optional(p.value.as_ref(), |w, v| w.double(*v));
        w.optional(self.serving_latency_ms.as_ref(), |w, v| w.double(*v));
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            event_id: r.string()?,
            prediction_id: r.string()?,
            model_id: r.string()?,
            model_version: r.string()?,
            event_time_ms: r.long()?,
            segment: r.map(Reader::string)?,
            numeric_features: r.map(Reader::double)?,
            categorical_features: r.map(Reader::string)?,
            prediction: Prediction {
                label: r.optional(Reader::string)?,
                probabilities: r.optional(|r| r.map(Reader::double))?,
                score: r.optional(Reader::double)?,
                value: r.optional(Reader::double)?,
            },
            serving_latency_ms: r.optional(Reader::double)?,
        })
    }

    /// Feature values may be NaN (a missing value the statistics count apart); what the model
    /// returned and its latency must be finite.
    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("model_id", &self.model_id)?;
        non_empty("model_version", &self.model_version)?;
        non_empty("prediction_id", &self.prediction_id)?;
        event_time("event_time_ms", self.event_time_ms)?;
        let p = &self.prediction;
        finite("prediction.score", p.score)?;
        finite("prediction.value", p.value)?;
        finite("serving_latency_ms", self.serving_latency_ms)?;
        for (class, probability) in p.probabilities.iter().flatten() {
            if !(0.0..=1.0).contains(probability) {
                return Err(ValidationError::OutOfRange {
                    field: format!("prediction.probabilities[{class}]"),
                    detail: format!("{probability} is not in [0, 1]"),
                });
            }
        }
        Ok(())
    }
}
