//! What one window keeps about the predictions of one (model, version, segment): mergeable
//! sketches from vigil-stats, so partial states written by different flushes (or partitions)
//! merge into the window's state exactly (docs/design/monitor-state.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_events::PredictionView;
use vigil_stats::{LatencySketch, NumericSketch, QuantileSketch, StatsError};

use crate::performance::{Observed, PerformanceState, Predicted};

/// Distinct values kept per categorical feature (and predicted label) in one window; the rest
/// are counted under [`OTHER`].
pub const CATEGORY_CAP: usize = 200;
pub const OTHER: &str = "__other__";
/// Serving latency is tracked in microseconds up to an hour, 2 significant figures (1% error).
const LATENCY_MAX_US: u64 = 3_600_000_000;
const LATENCY_SIGFIG: u8 = 2;
/// Scores are probabilities: fixed 0.05-wide bins, the same in every window, so windows merge.
const SCORE_BINS: usize = 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowState {
    pub events: u64,
    /// Of `events`, those that arrived after the window had closed.
    #[serde(default)]
    pub late_events: u64,
    pub latency_us: Option<LatencySketch>,
    pub scores: Option<NumericSketch>,
    pub predicted_labels: BTreeMap<String, u64>,
    /// Per numeric feature: a reference-independent quantile sketch (1% relative accuracy),
    /// re-binned onto the reference's quantiles for drift tests at close.
    pub numeric: BTreeMap<String, QuantileSketch>,
    pub categorical: BTreeMap<String, BTreeMap<String, u64>>,
    /// Outcomes joined to this window's predictions so far (they may arrive much later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceState>,
}

impl WindowState {
    pub fn add(&mut self, event: &PredictionView<'_>, late: bool) {
        self.events += 1;
        self.late_events += u64::from(late);
        if let Some(ms) = event.serving_latency_ms {
            let sketch = self.latency_us.get_or_insert_with(new_latency_sketch);
            sketch.update((ms * 1000.0).round() as u64);
        }
        if let Some(score) = event.score {
            self.scores.get_or_insert_with(new_score_sketch).update(score);
        }
        if let Some(label) = event.label {
            count_capped(&mut self.predicted_labels, label);
        }
        add_numeric(&mut self.numeric, &event.numeric_features);
        for (name, value) in &event.categorical_features {
            let counts = match self.categorical.get_mut(*name) {
                Some(c) => c,
                None => self.categorical.entry((*name).to_owned()).or_default(),
            };
            count_capped(counts, value);
        }
    }

    /// Adds an outcome joined to one of this window's predictions.
    pub fn add_outcome(&mut self, predicted: &Predicted, observed: &Observed, positive_label: &str) {
        self.performance.get_or_insert_with(PerformanceState::default).add(
            predicted,
            observed,
            positive_label,
        );
    }

    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        self.events += other.events;
        self.late_events += other.late_events;
        merge_option(&mut self.latency_us, &other.latency_us, LatencySketch::merge)?;
        merge_option(&mut self.scores, &other.scores, NumericSketch::merge)?;
        merge_option(&mut self.performance, &other.performance, PerformanceState::merge)?;
        for (label, n) in &other.predicted_labels {
            add_capped(&mut self.predicted_labels, label, *n);
        }
        for (name, sketch) in &other.numeric {
            self.numeric.entry(name.clone()).or_default().merge(sketch)?;
        }
        for (name, counts) in &other.categorical {
            let mine = self.categorical.entry(name.clone()).or_default();
            for (value, n) in counts {
                add_capped(mine, value, *n);
            }
        }
        Ok(())
    }
}

/// First byte of [`WindowState::encode`]'s output: MessagePack of the serde form follows, structs
/// as maps with field names (so `#[serde(default)]` and skipped fields work as in JSON). States
/// written before it are JSON objects and start with `{`; both decode.
const MSGPACK_V1: u8 = 0x01;

/// A stored window state that does not decode (or, rarely, a state that does not encode).
#[derive(Debug, thiserror::Error)]
pub enum StateCodecError {
    #[error("empty window state")]
    Empty,
    #[error("window state in an unknown format (first byte {0:#04x})")]
    UnknownFormat(u8),
    #[error("window state (JSON): {0}")]
    Json(#[from] serde_json::Error),
    #[error("window state (MessagePack) does not encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("window state (MessagePack): {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

impl WindowState {
    /// The bytes stored for a state (partials, references): a format byte, then MessagePack of
    /// the serde form, so every field the sketches serialize travels, bit-exact (floats as
    /// float64), in about half of JSON's bytes and parse time. The one way states are written;
    /// [`Self::decode`] the one way they are read.
    pub fn encode(&self) -> Result<Vec<u8>, StateCodecError> {
        let mut out = Vec::with_capacity(4096);
        out.push(MSGPACK_V1);
        self.serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())?;
        Ok(out)
    }

    /// Reads what [`Self::encode`] wrote, or a state stored as JSON by an earlier version.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateCodecError> {
        match bytes.first() {
            None => Err(StateCodecError::Empty),
            Some(&MSGPACK_V1) => Ok(rmp_serde::from_slice(&bytes[1..])?),
            Some(b'{') => Ok(serde_json::from_slice(bytes)?),
            Some(&other) => Err(StateCodecError::UnknownFormat(other)),
        }
    }
}

/// The numbers a closed window reports, derived from its merged state.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSummary {
    pub latency_ms: Option<[f64; 3]>,
    pub score_mean: Option<f64>,
    pub predicted_labels: BTreeMap<String, u64>,
    pub feature_means: BTreeMap<String, f64>,
    /// NaN or infinite feature values over all numeric features.
    pub features_missing: u64,
}

impl WindowState {
    pub fn summary(&self) -> WindowSummary {
        let latency_ms = self.latency_us.as_ref().and_then(|l| {
            let q = |q: f64| l.quantile(q).ok().map(|us| us as f64 / 1000.0);
            Some([q(0.5)?, q(0.95)?, q(0.99)?])
        });
        WindowSummary {
            latency_ms,
            score_mean: self.scores.as_ref().and_then(NumericSketch::mean),
            predicted_labels: self.predicted_labels.clone(),
            feature_means: self.numeric.iter().filter_map(|(k, m)| Some((k.clone(), m.mean()?))).collect(),
            features_missing: self.numeric.values().map(QuantileSketch::nonfinite).sum(),
        }
    }
}

/// Adds each value to its feature's sketch, each sketch taking its values in the event's order.
/// Events of a model list the same features, sorted by name when the Rust SDK sent them: one
/// pass alongside the state's sorted map then pairs each with one comparison instead of a tree
/// search per feature (string compares were a tenth of the per-event cost). What the pass cannot
/// pair (a feature new to the state, another order) is looked up after it, in order.
fn add_numeric(numeric: &mut BTreeMap<String, QuantileSketch>, features: &[(&str, f64)]) {
    let mut unpaired = Vec::new();
    let mut sketches = numeric.iter_mut().peekable();
    for (i, &(name, x)) in features.iter().enumerate() {
        loop {
            match sketches.peek_mut() {
                Some((key, _)) if key.as_str() < name => {
                    sketches.next();
                }
                Some((key, sketch)) if key.as_str() == name => {
                    sketch.update(x);
                    break;
                }
                _ => {
                    unpaired.push(i);
                    break;
                }
            }
        }
    }
    for i in unpaired {
        let (name, x) = features[i];
        match numeric.get_mut(name) {
            Some(sketch) => sketch.update(x),
            None => numeric.entry(name.to_owned()).or_default().update(x),
        }
    }
}

fn new_latency_sketch() -> LatencySketch {
    LatencySketch::new(LATENCY_MAX_US, LATENCY_SIGFIG).expect("constant bounds are valid")
}

fn new_score_sketch() -> NumericSketch {
    let edges = (0..=SCORE_BINS).map(|i| i as f64 / SCORE_BINS as f64).collect();
    NumericSketch::with_edges(edges).expect("constant edges are valid")
}

fn merge_option<T: Clone>(
    mine: &mut Option<T>,
    other: &Option<T>,
    merge: impl FnOnce(&mut T, &T) -> Result<(), StatsError>,
) -> Result<(), StatsError> {
    match (mine.as_mut(), other) {
        (Some(m), Some(o)) => merge(m, o),
        (None, Some(o)) => {
            *mine = Some(o.clone());
            Ok(())
        }
        _ => Ok(()),
    }
}

pub(crate) fn count_capped(counts: &mut BTreeMap<String, u64>, value: &str) {
    match counts.get_mut(value) {
        Some(n) => *n += 1,
        None => add_capped(counts, value, 1),
    }
}

/// Adds `n` to `value`, or to [`OTHER`] once the cap is reached. Which values make the cap
/// depends on arrival order, which is fixed per partition, so a replay decides the same.
pub(crate) fn add_capped(counts: &mut BTreeMap<String, u64>, value: &str, n: u64) {
    let key = if counts.contains_key(value) || counts.len() < CATEGORY_CAP { value } else { OTHER };
    *counts.entry(key.to_owned()).or_insert(0) += n;
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_events::{decode_prediction_view, encode, Prediction, PredictionEvent};

    fn event(i: u32) -> PredictionEvent {
        PredictionEvent {
            prediction_id: format!("p{i}"),
            model_id: "m".into(),
            model_version: "v1".into(),
            numeric_features: [
                ("x".to_owned(), f64::from(i)),
                ("gap".to_owned(), if i.is_multiple_of(5) { f64::NAN } else { 1.0 }),
            ]
            .into(),
            categorical_features: [("device".to_owned(), ["ios", "web"][i as usize % 2].to_owned())].into(),
            prediction: Prediction {
                label: Some((i % 3).to_string()),
                score: Some(f64::from(i % 10) / 10.0),
                ..Default::default()
            },
            serving_latency_ms: Some(f64::from(i % 7) + 0.5),
            ..Default::default()
        }
    }

    fn state_of(range: std::ops::Range<u32>) -> WindowState {
        let mut state = WindowState::default();
        for i in range {
            let bytes = encode(&event(i));
            state.add(&decode_prediction_view(&bytes).unwrap(), i % 10 == 0);
        }
        state
    }

    #[test]
    fn merging_partials_equals_one_state_over_all_events() {
        let whole = state_of(0..100);
        let mut merged = state_of(0..37);
        merged.merge(&state_of(37..100)).unwrap();
        assert_eq!(merged.events, whole.events);
        assert_eq!((merged.late_events, whole.late_events), (10, 10));
        assert_eq!(merged.predicted_labels, whole.predicted_labels);
        assert_eq!(merged.categorical, whole.categorical);
        assert_eq!(merged.numeric["gap"].nonfinite(), 20);
        assert_eq!(merged.numeric["x"].count(), whole.numeric["x"].count());
        assert_eq!(merged.numeric["x"].sum(), whole.numeric["x"].sum());
        assert_eq!((merged.numeric["x"].min(), merged.numeric["x"].max()), (Some(0.0), Some(99.0)));
        assert_eq!(merged.numeric["x"].quantile(0.5).unwrap(), whole.numeric["x"].quantile(0.5).unwrap());
        assert_eq!(merged.scores.as_ref().unwrap().counts(), whole.scores.as_ref().unwrap().counts());
        let (m, w) = (merged.latency_us.as_ref().unwrap(), whole.latency_us.as_ref().unwrap());
        assert_eq!(m.count(), 100);
        assert_eq!(m.quantile(0.99).unwrap(), w.quantile(0.99).unwrap());
    }

    #[test]
    fn the_summary_reports_quantiles_means_and_missing_values() {
        let summary = state_of(0..100).summary();
        let [p50, p95, p99] = summary.latency_ms.unwrap();
        // Latencies are i % 7 + 0.5 ms: the median is 3.5 ms, the tail 6.5 ms (1% sketch error).
        assert!(
            (p50 - 3.5).abs() < 0.05 && (p95 - 6.5).abs() < 0.07 && (p99 - 6.5).abs() < 0.07,
            "{p50} {p95} {p99}"
        );
        assert!((summary.score_mean.unwrap() - 0.45).abs() < 1e-12);
        assert_eq!(summary.feature_means["x"], 49.5);
        assert_eq!(summary.features_missing, 20);
        assert_eq!(summary.predicted_labels.values().sum::<u64>(), 100);
    }

    #[test]
    fn state_survives_json_round_trip() {
        let state = state_of(0..50);
        let json = serde_json::to_string(&state).unwrap();
        let back: WindowState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.events, 50);
        assert_eq!(back.categorical, state.categorical);
        assert_eq!(
            back.latency_us.unwrap().quantile(0.5).unwrap(),
            state.latency_us.unwrap().quantile(0.5).unwrap()
        );
    }

    /// What a state's serde form says, as JSON: equal JSON means equal fields, bit for bit
    /// (serde_json writes floats so that they read back exactly).
    fn fields(state: &WindowState) -> String {
        serde_json::to_string(state).unwrap()
    }

    fn with_outcomes(mut state: WindowState) -> WindowState {
        for i in 0..30 {
            let predicted = Predicted {
                label: Some((i % 2).to_string().into()),
                score: Some(f64::from(i) / 31.0),
                value: Some(f64::from(i)),
            };
            let observed = Observed { label: Some((i % 3 % 2).to_string()), value: Some(f64::from(i) * 1.1) };
            state.add_outcome(&predicted, &observed, "1");
        }
        state
    }

    #[test]
    fn encoded_states_decode_to_the_same_fields_and_merge_the_same() {
        let state = with_outcomes(state_of(0..500));
        let bytes = state.encode().unwrap();
        assert_eq!(bytes[0], MSGPACK_V1);
        let back = WindowState::decode(&bytes).unwrap();
        assert_eq!(fields(&back), fields(&state));
        assert_eq!(back.encode().unwrap(), bytes, "encoding is deterministic");
        assert_eq!(back.summary(), state.summary());
        let json = fields(&state);
        assert!(bytes.len() < json.len(), "{} bytes encoded against {} of JSON", bytes.len(), json.len());

        let (mut a, mut b) = (state_of(0..37), state_of(0..37));
        let other = with_outcomes(state_of(37..100));
        a.merge(&other).unwrap();
        b.merge(&WindowState::decode(&other.encode().unwrap()).unwrap()).unwrap();
        assert_eq!(fields(&a), fields(&b));
        assert_eq!(
            fields(&WindowState::decode(&WindowState::default().encode().unwrap()).unwrap()),
            fields(&WindowState::default())
        );
    }

    #[test]
    fn states_stored_as_json_still_decode() {
        let state = with_outcomes(state_of(0..200));
        let json = serde_json::to_string(&state).unwrap();
        let back = WindowState::decode(json.as_bytes()).unwrap();
        assert_eq!(fields(&back), json);
        assert!(matches!(WindowState::decode(b""), Err(StateCodecError::Empty)));
        assert!(matches!(WindowState::decode(b"\x07abc"), Err(StateCodecError::UnknownFormat(7))));
        assert!(matches!(WindowState::decode(&[MSGPACK_V1, 0xc1]), Err(StateCodecError::Decode(_))));
    }

    #[test]
    fn features_in_any_order_feed_the_same_sketches() {
        let features = |i: u32| -> Vec<(String, f64)> {
            let mut f: Vec<(String, f64)> =
                (0..12).map(|k| (format!("f{k:02}"), f64::from(i * 31 + k) * 0.37 - 40.0)).collect();
            f.push(("f03".into(), f64::from(i) * 1.5)); // a repeated name: both values count, in order
            f
        };
        let (mut sorted, mut lookups) = (BTreeMap::new(), BTreeMap::<String, QuantileSketch>::new());
        for i in 0..300u32 {
            let mut f = features(i);
            // Shuffled in varying ways, with features that come and go.
            let turn = (i as usize * 7) % f.len();
            f.rotate_left(turn);
            if i.is_multiple_of(3) {
                f.reverse();
            }
            if i.is_multiple_of(5) {
                f.push((format!("late{}", i % 4), f64::from(i)));
            }
            let view: Vec<(&str, f64)> = f.iter().map(|(n, x)| (n.as_str(), *x)).collect();
            add_numeric(&mut sorted, &view);
            for (name, x) in &view {
                lookups.entry((*name).to_owned()).or_default().update(*x);
            }
        }
        assert_eq!(serde_json::to_string(&sorted).unwrap(), serde_json::to_string(&lookups).unwrap());
        assert_eq!(sorted["f03"].count(), 600);
    }

    #[test]
    fn categories_beyond_the_cap_are_counted_as_other() {
        let mut counts = BTreeMap::new();
        for i in 0..(CATEGORY_CAP + 10) {
            count_capped(&mut counts, &format!("v{i}"));
        }
        count_capped(&mut counts, "v0");
        assert_eq!(counts.len(), CATEGORY_CAP + 1);
        assert_eq!(counts[OTHER], 10);
        assert_eq!(counts["v0"], 2);
    }
}
