//! Reference profiles built from rows of data (an uploaded file) rather than from a live window:
//! each row goes through [`WindowState::add`] as the prediction the monitor would have decoded,
//! so an uploaded reference holds exactly the sketches a live window holds (quantile sketches per
//! numeric feature, capped category counts, scores, predicted labels) and the drift tests
//! compare like with like. Pure: the caller reads the file.
//!
//! A reference can also be captured from live traffic already stored: [`CaptureBuilder`] merges
//! a version's stored partial window states over a time range with [`WindowState::merge`], the
//! merge that closes windows, so it holds what those windows held.
//!
//! Ids and hashes: a reference's content hash is FNV-1a 64 ([`vigil_events::fnv1a64`]) of its
//! state's canonical JSON without `performance` ([`state_content_hash`]), whatever encoding the
//! state is stored in ([`WindowState::encode`]), so an id does not change with the encoding; an
//! uploaded reference's id is `upload:<model>:<version>:<content hash>`, so uploading the same
//! data again gives the same id; a captured one's `capture:<model>:<version>:<from>-<to>`.

use std::collections::BTreeSet;

use vigil_events::PredictionView;
use vigil_store::{ReferenceRow, CAPTURE_REFERENCE_PREFIX, UPLOAD_REFERENCE_PREFIX};

use crate::MonitorError;

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
    pub fn finish(
        self,
        model_id: &str,
        model_version: &str,
    ) -> Result<Option<BuiltReference>, StateCodecError> {
        if self.state.events == 0 {
            return Ok(None);
        }
        let encoded = self.state.encode()?;
        let content_hash = state_content_hash(&self.state)?;
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

/// Merges stored partial window states (as in `window_partials.state`) into a reference.
#[derive(Debug, Default)]
pub struct CaptureBuilder {
    state: WindowState,
    windows: BTreeSet<u32>,
}

impl CaptureBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges one stored partial of the window starting at `window_start`.
    pub fn add_partial(&mut self, window_start: u32, stored_state: &[u8]) -> Result<(), MonitorError> {
        let partial = WindowState::decode(stored_state)?;
        self.state.merge(&partial)?;
        if partial.events > 0 {
            self.windows.insert(window_start);
        }
        Ok(())
    }

    /// Prediction events merged so far.
    pub fn events(&self) -> u64 {
        self.state.events
    }

    /// Windows with predictions merged so far.
    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// The reference of `model_id`'s `model_version` over windows starting in `[from, to)`
    /// (seconds since the Unix epoch); `None` without events.
    pub fn finish(
        self,
        model_id: &str,
        model_version: &str,
        from: u32,
        to: u32,
    ) -> Result<Option<BuiltReference>, StateCodecError> {
        if self.state.events == 0 {
            return Ok(None);
        }
        Ok(Some(BuiltReference {
            reference_id: capture_id(model_id, model_version, from, to),
            model_id: model_id.to_owned(),
            model_version: model_version.to_owned(),
            content_hash: state_content_hash(&self.state)?,
            encoded: self.state.encode()?,
            state: self.state,
        }))
    }
}

/// The id of the reference captured from `model_id`'s `model_version` windows in `[from, to)`:
/// capturing the same range again replaces it (with what the windows hold by then).
pub fn capture_id(model_id: &str, model_version: &str, from: u32, to: u32) -> String {
    format!("{CAPTURE_REFERENCE_PREFIX}{model_id}:{model_version}:{from}-{to}")
}

/// A reference ready to store.
#[derive(Debug, Clone)]
pub struct BuiltReference {
    pub reference_id: String,
    pub model_id: String,
    pub model_version: String,
    /// [`state_content_hash`] of `state`, 16 hex digits.
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
        self.state
            .categorical
            .iter()
            .filter(|(_, counts)| counts.contains_key(OTHER))
            .map(|(name, _)| name.as_str())
            .collect()
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

/// FNV-1a 64 of `bytes`, as 16 hex digits.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:016x}", vigil_events::fnv1a64(bytes))
}

/// The content hash of every reference: [`content_hash`] of its state's JSON without
/// `performance`. The outcomes joined by the time live windows closed depend on arrival timing,
/// not on the events; everything else is a canonical function of the events (sorted maps, exact
/// sums), so the hash is the same however flushes split the windows, and whatever encoding the
/// state is stored in.
pub fn state_content_hash(state: &WindowState) -> Result<String, StateCodecError> {
    let json = match &state.performance {
        None => serde_json::to_string(state)?,
        Some(_) => serde_json::to_string(&WindowState { performance: None, ..state.clone() })?,
    };
    Ok(content_hash(json.as_bytes()))
}

/// Whether a stored reference matches its content hash: of its state as read back, or, for one
/// stored before states were hashed that way, of its stored bytes.
pub fn matches_content_hash(stored_state: &[u8], stored_hash: &str) -> bool {
    content_hash(stored_state) == stored_hash
        || WindowState::decode(stored_state)
            .ok()
            .and_then(|s| state_content_hash(&s).ok())
            .is_some_and(|h| h == stored_hash)
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
            prediction: Prediction {
                label: Some((i % 2).to_string()),
                score: Some((i % 10) as f64 / 10.0),
                ..Default::default()
            },
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
                categorical_features: e
                    .categorical_features
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
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
        assert_eq!(
            reference.encoded,
            live.encode().unwrap(),
            "byte for byte the state of the same live events"
        );
        assert_eq!(reference.state.events, 1000);
        assert_eq!(reference.features_without_values(), ["gap"]);
        assert!(reference.capped_features().is_empty());
    }

    /// The live window state of events `range` with feature `x` from `xs`.
    fn live_state(xs: &[f64], range: std::ops::Range<usize>) -> WindowState {
        let mut state = WindowState::default();
        for i in range {
            state.add(&decode_prediction_view(&encode(&event(i, xs[i]))).unwrap(), false);
        }
        state
    }

    #[test]
    fn live_states_hash_the_same_however_flushes_split_them() {
        let xs = spread(300, 1, 0.0);
        let state_of = |range| live_state(&xs, range);
        let whole = state_of(0..300);
        let mut merged = state_of(200..300);
        merged.merge(&state_of(0..77)).unwrap();
        merged.merge(&state_of(77..200)).unwrap();
        assert_eq!(
            serde_json::to_string(&merged).unwrap(),
            serde_json::to_string(&whole).unwrap(),
            "exact sums: byte for byte"
        );
        // Outcomes joined by close time do not change the hash; without any it is the JSON's.
        let mut with_outcomes = merged.clone();
        let (predicted, observed) = (
            crate::performance::Predicted { label: Some("1".into()), ..Default::default() },
            crate::performance::Observed { label: Some("0".into()), value: None },
        );
        with_outcomes.add_outcome(&predicted, &observed, "1");
        assert_eq!(state_content_hash(&with_outcomes).unwrap(), state_content_hash(&whole).unwrap());
        assert_eq!(
            state_content_hash(&whole).unwrap(),
            content_hash(serde_json::to_string(&whole).unwrap().as_bytes())
        );
    }

    #[test]
    fn a_capture_merges_stored_partials_like_closing_windows() {
        let xs = spread(300, 1, 0.0);
        let state_of = |range| live_state(&xs, range).encode().unwrap();
        let mut capture = CaptureBuilder::new();
        capture.add_partial(1_764_000_000, &state_of(0..100)).unwrap();
        capture.add_partial(1_764_000_000, &state_of(100..120)).unwrap();
        capture.add_partial(1_764_000_060, &state_of(120..300)).unwrap();
        capture.add_partial(1_764_000_120, &WindowState::default().encode().unwrap()).unwrap();
        assert_eq!((capture.events(), capture.windows()), (300, 2), "an outcome-only partial adds no window");
        let built = capture.finish("m", "v1", 1_764_000_000, 1_764_000_180).unwrap().unwrap();
        assert_eq!(built.reference_id, "capture:m:v1:1764000000-1764000180");
        assert_eq!(built.encoded, state_of(0..300), "the state of all the events");
        assert_eq!(built.content_hash, state_content_hash(&live_state(&xs, 0..300)).unwrap());
        assert!(CaptureBuilder::new().add_partial(0, b"{").is_err());
        assert!(CaptureBuilder::new().finish("m", "v1", 0, 60).unwrap().is_none());
    }

    #[test]
    fn the_id_and_hash_follow_the_content() {
        let (a, again, other) =
            (built(&spread(500, 1, 0.0)), built(&spread(500, 1, 0.0)), built(&spread(500, 1, 0.5)));
        assert_eq!(
            (&a.reference_id, &a.content_hash),
            (&again.reference_id, &again.content_hash),
            "same rows, same id"
        );
        assert_ne!(a.content_hash, other.content_hash);
        // The same values in another order: sums are exact, so the state and id are the same.
        assert_eq!(built(&spread(500, 2, 0.0)).reference_id, a.reference_id);
        assert_eq!(
            a.content_hash,
            format!("{:016x}", vigil_events::fnv1a64(serde_json::to_string(&a.state).unwrap().as_bytes())),
            "the JSON's hash, not the encoding's"
        );
        assert!(matches_content_hash(&a.encoded, &a.content_hash));
        assert!(!matches_content_hash(&other.encoded, &a.content_hash));
        assert_eq!(a.reference_id, format!("upload:m:v1:{}", a.content_hash));
        let row = a.row("file a.csv".into(), 1_764_000_000);
        assert_eq!(
            (row.events, row.state.as_slice(), row.reference_id.as_str()),
            (500, a.encoded.as_slice(), a.reference_id.as_str())
        );
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
