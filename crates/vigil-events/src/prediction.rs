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
        PredictionView::read(r).map(|view| view.to_owned())
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let p = &self.prediction;
        validate(
            [&self.model_id, &self.model_version, &self.prediction_id],
            self.event_time_ms,
            [p.score, p.value, self.serving_latency_ms],
            p.probabilities.iter().flatten().map(|(k, v)| (k.as_str(), *v)),
        )
    }
}

/// A decoded prediction that borrows its strings from the message: what the monitor's hot path
/// reads, without allocating a string per feature name. Maps are in wire order (sorted by key
/// when written by vigil's SDKs).
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionView<'a> {
    pub event_id: &'a str,
    pub prediction_id: &'a str,
    pub model_id: &'a str,
    pub model_version: &'a str,
    pub event_time_ms: i64,
    pub segment: Vec<(&'a str, &'a str)>,
    pub numeric_features: Vec<(&'a str, f64)>,
    pub categorical_features: Vec<(&'a str, &'a str)>,
    pub label: Option<&'a str>,
    pub probabilities: Option<Vec<(&'a str, f64)>>,
    pub score: Option<f64>,
    pub value: Option<f64>,
    pub serving_latency_ms: Option<f64>,
}

impl<'a> PredictionView<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, CodecError> {
        Ok(Self {
            event_id: r.str()?,
            prediction_id: r.str()?,
            model_id: r.str()?,
            model_version: r.str()?,
            event_time_ms: r.long()?,
            segment: r.pairs(Reader::str)?,
            numeric_features: r.pairs(Reader::double)?,
            categorical_features: r.pairs(Reader::str)?,
            label: r.optional(Reader::str)?,
            probabilities: r.optional(|r| r.pairs(Reader::double))?,
            score: r.optional(Reader::double)?,
            value: r.optional(Reader::double)?,
            serving_latency_ms: r.optional(Reader::double)?,
        })
    }

    /// The same rules as [`PredictionEvent::validate`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate(
            [self.model_id, self.model_version, self.prediction_id],
            self.event_time_ms,
            [self.score, self.value, self.serving_latency_ms],
            self.probabilities.iter().flatten().copied(),
        )
    }

    pub fn to_owned(&self) -> PredictionEvent {
        fn owned<V: Clone>(pairs: &[(&str, V)]) -> BTreeMap<String, V> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
        }
        fn owned_str(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        }
        PredictionEvent {
            event_id: self.event_id.to_owned(),
            prediction_id: self.prediction_id.to_owned(),
            model_id: self.model_id.to_owned(),
            model_version: self.model_version.to_owned(),
            event_time_ms: self.event_time_ms,
            segment: owned_str(&self.segment),
            numeric_features: owned(&self.numeric_features),
            categorical_features: owned_str(&self.categorical_features),
            prediction: Prediction {
                label: self.label.map(str::to_owned),
                probabilities: self.probabilities.as_deref().map(owned),
                score: self.score,
                value: self.value,
            },
            serving_latency_ms: self.serving_latency_ms,
        }
    }
}

/// Feature values may be NaN (a missing value the statistics count apart); what the model
/// returned and its latency must be finite, and probabilities within [0, 1].
fn validate<'p>(
    [model_id, model_version, prediction_id]: [&str; 3],
    event_time_ms: i64,
    [score, value, latency]: [Option<f64>; 3],
    probabilities: impl Iterator<Item = (&'p str, f64)>,
) -> Result<(), ValidationError> {
    non_empty("model_id", model_id)?;
    non_empty("model_version", model_version)?;
    non_empty("prediction_id", prediction_id)?;
    event_time("event_time_ms", event_time_ms)?;
    finite("prediction.score", score)?;
    finite("prediction.value", value)?;
    finite("serving_latency_ms", latency)?;
    for (class, probability) in probabilities {
        if !(0.0..=1.0).contains(&probability) {
            return Err(ValidationError::OutOfRange {
                field: format!("prediction.probabilities[{class}]"),
                detail: format!("{probability} is not in [0, 1]"),
            });
        }
    }
    Ok(())
}
