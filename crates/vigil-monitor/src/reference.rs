//! Reference profiles built from rows of data (an uploaded file) rather than from a live window:
//! each row goes through [`WindowState::add`] as the prediction the monitor would have decoded,
//! so an uploaded reference holds exactly the sketches a live window holds (quantile sketches per
//! numeric feature, capped category counts, scores, predicted labels) and the drift tests
//! compare like with like. Pure: the caller reads the file.
//!
//! Ids and hashes: a reference's content hash is FNV-1a 64 ([`vigil_events::fnv1a64`]) of its
//! stored state ([`WindowState::encode`]; JSON for references stored before that encoding), as
//! for live baselines; an uploaded reference's id is `upload:<model>:<version>:<content hash>`, so
//! uploading the same data again gives the same id.

use vigil_events::PredictionView;
use vigil_store::{ReferenceRow, UPLOAD_REFERENCE_PREFIX};

use crate::window::{StateCodecError, WindowState};
pub use crate::window::{CATEGORY_CAP, OTHER};

/// Accumulates rows into a reference state.
#[derive(Debug, Default)]
pub struct ReferenceBuilder {
    state: WindowState,
}

impl ReferenceBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one row: its numeric and categorical features, score, predicted label and latency,
    /// as [`WindowState::add`] takes a live event (a NaN feature counts as missing).
    pub fn add(&mut self, row: &PredictionView<'_>) {
        self.state.add(row, false);
    }

    pub fn rows(&self) -> u64 {
        self.state.events
    }

    /// The finished reference of `model_id`'s `model_version`; `None` without rows.
    pub fn finish(self, model_id: &str, model_version: &str) -> Result<Option<BuiltReference>, StateCodecError> {
        if self.state.events == 0 {
            return Ok(None);
        }
        let encoded = self.state.encode()?;
        let content_hash = content_hash(&encoded);
        Ok(Some(BuiltReference {
            reference_id: format!("{UPLOAD_REFERENCE_PREFIX}{model_id}:{model_version}:{content_hash}"),
            model_id: model_id.to_owned(),
            model_version: model_version.to_owned(),
            content_hash,
            state: self.state,
            encoded,
        }))
    }
}

/// A reference ready to store.
#[derive(Debug, Clone)]
pub struct BuiltReference {
    pub reference_id: String,
    pub model_id: String,
    pub model_version: String,
    /// FNV-1a 64 of `encoded`, 16 hex digits.
    pub content_hash: String,
    pub state: WindowState,
    /// `state` as stored ([`WindowState::encode`]).
    pub encoded: Vec<u8>,
}

impl BuiltReference {
    /// Numeric features with no finite value (all missing): their drift cannot be tested.
    pub fn features_without_values(&self) -> Vec<&str> {
        self.state.numeric.iter().filter(|(_, s)| s.count() == 0).map(|(name, _)| name.as_str()).collect()
    }

    /// Categorical features whose values reached the category cap: later values were pooled as
    /// [`OTHER`], and live values beyond the kept ones test as "other".
    pub fn capped_features(&self) -> Vec<&str> {
        self.state.categorical.iter().filter(|(_, counts)| counts.contains_key(OTHER)).map(|(name, _)| name.as_str()).collect()
    }

    /// The `reference_profiles` row; `source` says where the rows came from.
    pub fn row(&self, source: String, created_at: u32) -> ReferenceRow {
        ReferenceRow {
            model_id: self.model_id.clone(),
            model_version: self.model_version.clone(),
            reference_id: self.reference_id.clone(),
            content_hash: self.content_hash.clone(),
            source,
            events: self.state.events,
            state: self.encoded.clone(),
            created_at,
        }
    }
}

/// FNV-1a 64 of a reference's stored state, as 16 hex digits: the content hash of every reference.
pub fn content_hash(stored_state: &[u8]) -> String {
    format!("{:016x}", vigil_events::fnv1a64(stored_state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_events::{decode_prediction_view, encode, Prediction, PredictionEvent};
    use vigil_stats::DriftPolicy;

    /// `n` values spread evenly over [-2, 2) plus `shift`, in an order that depends on `seed`
    /// (uniform, standard deviation 1.15).
    fn spread(n: usize, seed: usize, shift: f64) -> Vec<f64> {
        let stride = [7919, 104_729, 1_299_709][seed % 3];
        (0..n).map(|i| (i * stride % n) as f64 / n as f64 * 4.0 - 2.0 + shift).collect()
    }

    fn event(i: usize, x: f64) -> PredictionEvent {
        PredictionEvent {
            prediction_id: format!("p{i}"),
            model_id: "m".into(),
            model_version: "v1".into(),
            numeric_features: [("x".to_owned(), x), ("gap".to_owned(), f64::NAN)].into(),
            categorical_features: [("device".to_owned(), ["ios", "web", "tv"][i % 3].to_owned())].into(),
            prediction: Prediction { label: Some((i % 2).to_string()), score: Some((i % 10) as f64 / 10.0), ..Default::default() },
            ..Default::default()
        }
    }

    /// Rows as a file reader hands them over, without ids or times.
    fn built(xs: &[f64]) -> BuiltReference {
        let mut builder = ReferenceBuilder::new();
        for (i, x) in xs.iter().enumerate() {
            let e = event(i, *x);
            let row = PredictionView {
                event_id: "",
                prediction_id: "",
                model_id: "",
                model_version: "",
                event_time_ms: 0,
                segment: vec![],
                numeric_features: e.numeric_features.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
                categorical_features: e.categorical_features.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                label: e.prediction.label.as_deref(),
                probabilities: None,
                score: e.prediction.score,
                value: None,
                serving_latency_ms: None,
            };
            builder.add(&row);
        }
        assert_eq!(builder.rows(), xs.len() as u64);
        builder.finish("m", "v1").unwrap().unwrap()
    }

    #[test]
    fn rows_build_the_state_live_events_build() {
        let xs = spread(1000, 1, 0.0);
        let reference = built(&xs);
        let mut live = WindowState::default();
        for (i, x) in xs.iter().enumerate() {
            live.add(&decode_prediction_view(&encode(&event(i, *x))).unwrap(), false);
        }
        assert_eq!(reference.encoded, live.encode().unwrap(), "byte for byte the state of the same live events");
        assert_eq!(reference.state.events, 1000);
        assert_eq!(reference.features_without_values(), ["gap"]);
        assert!(reference.capped_features().is_empty());
    }

    #[test]
    fn the_id_and_hash_follow_the_content() {
        let (a, again, other) = (built(&spread(500, 1, 0.0)), built(&spread(500, 1, 0.0)), built(&spread(500, 2, 0.0)));
        assert_eq!((&a.reference_id, &a.content_hash), (&again.reference_id, &again.content_hash), "same rows, same id");
        assert_ne!(a.content_hash, other.content_hash);
        assert_eq!(a.content_hash, format!("{:016x}", vigil_events::fnv1a64(&a.encoded)));
        assert_eq!(a.reference_id, format!("upload:m:v1:{}", a.content_hash));
        let row = a.row("file a.csv".into(), 1_764_000_000);
        assert_eq!((row.events, row.state.as_slice(), row.reference_id.as_str()), (500, a.encoded.as_slice(), a.reference_id.as_str()));
        assert!(ReferenceBuilder::new().finish("m", "v1").unwrap().is_none(), "no rows, no reference");
    }

    #[test]
    fn a_window_drawn_from_the_reference_distribution_passes_and_a_shifted_one_drifts() {
        let reference = built(&spread(20_000, 1, 0.0));
        let window = |shift: f64| {
            let mut s = WindowState::default();
            for (i, x) in spread(2000, 2, shift).into_iter().enumerate() {
                s.add(&decode_prediction_view(&encode(&event(i, x))).unwrap(), false);
            }
            s
        };
        let policy = DriftPolicy::default();
        let (same, _) = crate::numeric_drift(&reference.state, &window(0.0), &policy);
        let x = same.iter().find(|r| r.feature == "x").unwrap();
        assert!(!x.result.drifted && x.result.statistic < 0.1, "{x:?}");
        let (shifted, _) = crate::numeric_drift(&reference.state, &window(1.0), &policy);
        let x = shifted.iter().find(|r| r.feature == "x").unwrap();
        // W1 of a 1.0 shift over the reference's standard deviation, 4 / sqrt(12).
        assert!(x.result.drifted && (x.result.statistic - 1.0 / 1.1547).abs() < 0.1, "{x:?}");
        let (devices, _) = crate::categorical_drift(&reference.state, &window(0.0), &policy);
        assert!(!devices[0].result.drifted, "{devices:?}");
    }
}
