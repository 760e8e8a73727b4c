//! Joins outcomes to predictions by prediction id, in either order, in bounded state.
//!
//! Outcomes are keyed by model id like predictions, so with equal partition counts an outcome
//! lands on the same partition number as its prediction and each partition joins on its own.
//! An entry waits until its partner arrives, until the partition's event time passes its own by
//! the horizon (expired), or until the partition holds `capacity` entries and it is the oldest
//! (evicted). Pure state: the pipeline feeds it and stores what it matches.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::{FixedState, RandomState};

use crate::performance::{Observed, Predicted};

/// Interned names (versions, predicted labels) beyond which new ones are no longer shared: a
/// label per event must not grow the table without end.
const MAX_INTERNED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JoinSettings {
    /// How long (event time) a prediction waits for its outcome, and an outcome for its prediction.
    pub horizon_seconds: u64,
    /// Waiting entries (predictions and outcomes together) per partition.
    pub capacity: usize,
}

/// Where a matched pair's performance belongs: its prediction's window and segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    pub model_id: String,
    pub model_version: Arc<str>,
    /// The prediction's segments besides all traffic, as the segmenter named them.
    pub segments: Vec<String>,
    pub window_start: u32,
    pub predicted: Predicted,
    pub observed: Observed,
}

/// A prediction waiting for its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingPrediction {
    pub model_version: Arc<str>,
    pub segments: Vec<String>,
    pub window_start: u32,
    pub predicted: Predicted,
    pub event_time_s: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JoinCounts {
    pub matched: u64,
    pub expired_predictions: u64,
    /// Outcomes whose prediction never arrived within the horizon.
    pub expired_outcomes: u64,
    /// Entries pushed out by the capacity bound before their horizon.
    pub evicted: u64,
    /// A second prediction with an id already waiting (a re-send): ignored.
    pub duplicate_predictions: u64,
    /// A second outcome for a prediction id already waiting for its prediction: ignored.
    pub duplicate_outcomes: u64,
}

/// A (model id, prediction id) pair as 128 random-seeded hash bits: no allocation per entry,
/// and two distinct ids share a key with a chance of about n^2 / 2^129 (1e-27 for a million).
type JoinKey = u128;

#[derive(Debug, Default)]
struct PartitionJoin {
    predictions: HashMap<JoinKey, WaitingPrediction, FixedState>,
    outcomes: HashMap<JoinKey, (Observed, u64), FixedState>,
    /// Arrival order of waiting entries, for expiry and eviction; entries matched since are
    /// skipped when they reach the front.
    order: VecDeque<(u64, Side, JoinKey)>,
    newest_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Prediction,
    Outcome,
}

#[derive(Debug)]
pub struct OutcomeJoin {
    settings: JoinSettings,
    partitions: BTreeMap<i32, PartitionJoin>,
    counts: JoinCounts,
    /// Two independent seeds, one per half of a [`JoinKey`].
    seeds: (RandomState, RandomState),
    names: HashSet<Arc<str>, FixedState>,
}

impl OutcomeJoin {
    pub fn new(settings: JoinSettings) -> Self {
        Self {
            settings,
            partitions: BTreeMap::new(),
            counts: JoinCounts::default(),
            seeds: (RandomState::default(), RandomState::default()),
            names: HashSet::default(),
        }
    }

    /// What the join keeps of `event`, whose window starts at `window_start` and whose segments
    /// besides all traffic are `segments`: its version and label shared with the other waiting
    /// predictions that have them.
    pub fn keep(
        &mut self,
        event: &vigil_events::PredictionView<'_>,
        window_start: u32,
        segments: &[String],
    ) -> WaitingPrediction {
        WaitingPrediction {
            model_version: self.intern(event.model_version),
            segments: segments.to_vec(),
            window_start,
            predicted: Predicted {
                label: event.label.map(|l| self.intern(l)),
                score: event.score,
                value: event.value,
            },
            event_time_s: (event.event_time_ms / 1000) as u64,
        }
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.names.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = name.into();
        if self.names.len() < MAX_INTERNED {
            self.names.insert(shared.clone());
        }
        shared
    }

    /// Prediction ids are unique per model; the key keeps two models' ids apart.
    fn key(&self, model_id: &str, prediction_id: &str) -> JoinKey {
        let half = |seed: &RandomState| seed.hash_one((model_id, prediction_id));
        (u128::from(half(&self.seeds.0)) << 64) | u128::from(half(&self.seeds.1))
    }

    /// A prediction arrived: returns the pair if its outcome was waiting.
    pub fn on_prediction(
        &mut self,
        partition: i32,
        model_id: &str,
        prediction_id: &str,
        prediction: WaitingPrediction,
    ) -> Option<Matched> {
        let key = self.key(model_id, prediction_id);
        let time = prediction.event_time_s;
        let join = self.partitions.entry(partition).or_default();
        join.newest_s = join.newest_s.max(time);
        let matched = match join.outcomes.remove(&key) {
            Some((observed, _)) => {
                self.counts.matched += 1;
                Some(Matched {
                    model_id: model_id.to_owned(),
                    model_version: prediction.model_version,
                    segments: prediction.segments,
                    window_start: prediction.window_start,
                    predicted: prediction.predicted,
                    observed,
                })
            }
            None if join.predictions.contains_key(&key) => {
                self.counts.duplicate_predictions += 1;
                None
            }
            None => {
                join.order.push_back((time, Side::Prediction, key));
                join.predictions.insert(key, prediction);
                None
            }
        };
        self.trim(partition);
        matched
    }

    /// An outcome arrived: returns the pair if its prediction was waiting.
    pub fn on_outcome(
        &mut self,
        partition: i32,
        model_id: &str,
        prediction_id: &str,
        observed: Observed,
        event_time_s: u64,
    ) -> Option<Matched> {
        let key = self.key(model_id, prediction_id);
        let join = self.partitions.entry(partition).or_default();
        join.newest_s = join.newest_s.max(event_time_s);
        let matched = match join.predictions.remove(&key) {
            Some(p) => {
                self.counts.matched += 1;
                Some(Matched {
                    model_id: model_id.to_owned(),
                    model_version: p.model_version,
                    segments: p.segments,
                    window_start: p.window_start,
                    predicted: p.predicted,
                    observed,
                })
            }
            None if join.outcomes.contains_key(&key) => {
                self.counts.duplicate_outcomes += 1;
                None
            }
            None => {
                join.order.push_back((event_time_s, Side::Outcome, key));
                join.outcomes.insert(key, (observed, event_time_s));
                None
            }
        };
        self.trim(partition);
        matched
    }

    /// Expires entries past the horizon and evicts the oldest beyond capacity.
    fn trim(&mut self, partition: i32) {
        let Some(join) = self.partitions.get_mut(&partition) else { return };
        let horizon = self.settings.horizon_seconds;
        while let Some((time, side, key)) = join.order.front() {
            let waiting = match side {
                Side::Prediction => join.predictions.contains_key(key),
                Side::Outcome => join.outcomes.contains_key(key),
            };
            if !waiting {
                join.order.pop_front();
                continue;
            }
            let expired = time.saturating_add(horizon) < join.newest_s;
            let over = join.predictions.len() + join.outcomes.len() > self.settings.capacity;
            if !expired && !over {
                break;
            }
            let (_, side, key) = join.order.pop_front().expect("front exists");
            match (side, expired) {
                (Side::Prediction, true) => self.counts.expired_predictions += 1,
                (Side::Outcome, true) => self.counts.expired_outcomes += 1,
                (_, false) => self.counts.evicted += 1,
            }
            match side {
                Side::Prediction => join.predictions.remove(&key).map(|_| ()),
                Side::Outcome => join.outcomes.remove(&key).map(|_| ()),
            };
        }
    }

    /// Predictions and outcomes waiting, over all partitions.
    pub fn waiting(&self) -> (usize, usize) {
        self.partitions.values().fold((0, 0), |(p, o), j| (p + j.predictions.len(), o + j.outcomes.len()))
    }

    pub fn take_counts(&mut self) -> JoinCounts {
        std::mem::take(&mut self.counts)
    }

    /// Forgets revoked partitions: their next owner rebuilds them from the log.
    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(horizon_seconds: u64, capacity: usize) -> OutcomeJoin {
        OutcomeJoin::new(JoinSettings { horizon_seconds, capacity })
    }

    fn prediction(window_start: u32, event_time_s: u64) -> WaitingPrediction {
        WaitingPrediction {
            model_version: "v1".into(),
            segments: vec!["country=DE".into()],
            window_start,
            predicted: Predicted { label: Some("1".into()), score: Some(0.9), value: None },
            event_time_s,
        }
    }

    fn outcome(label: &str) -> Observed {
        Observed { label: Some(label.into()), value: None }
    }

    #[test]
    fn pairs_match_in_either_order() {
        let mut j = join(3600, 100);
        assert!(j.on_prediction(0, "m", "p1", prediction(60, 61)).is_none());
        let m = j.on_outcome(0, "m", "p1", outcome("0"), 500).expect("outcome after prediction");
        assert_eq!((m.window_start, &*m.model_version, m.segments.len()), (60, "v1", 1));
        assert_eq!(m.observed, outcome("0"));

        assert!(j.on_outcome(0, "m", "p2", outcome("1"), 510).is_none());
        let m = j.on_prediction(0, "m", "p2", prediction(120, 130)).expect("prediction after outcome");
        assert_eq!(m.window_start, 120);
        assert_eq!(j.take_counts().matched, 2);
        assert_eq!(j.waiting(), (0, 0));
    }

    #[test]
    fn ids_are_per_model_and_per_partition() {
        let mut j = join(3600, 100);
        j.on_prediction(0, "a", "p1", prediction(0, 1));
        assert!(j.on_outcome(0, "b", "p1", outcome("1"), 2).is_none(), "another model's id");
        assert!(j.on_outcome(1, "a", "p1", outcome("1"), 2).is_none(), "another partition");
        assert!(j.on_outcome(0, "a", "p1", outcome("1"), 2).is_some());
    }

    #[test]
    fn entries_expire_once_event_time_passes_the_horizon() {
        let mut j = join(100, 1000);
        j.on_prediction(0, "m", "old", prediction(0, 10));
        j.on_outcome(0, "m", "orphan", outcome("1"), 20);
        j.on_prediction(0, "m", "new", prediction(100, 110));
        assert_eq!(j.waiting(), (2, 1), "within the horizon of the newest event (110)");
        j.on_prediction(0, "m", "newer", prediction(120, 125));
        assert_eq!(
            j.waiting(),
            (2, 0),
            "the orphan outcome (20 + 100 < 125) and old prediction (10 + 100 < 125) expired"
        );
        let counts = j.take_counts();
        assert_eq!((counts.expired_predictions, counts.expired_outcomes), (1, 1));
        assert!(j.on_outcome(0, "m", "old", outcome("1"), 126).is_none(), "too late to match");
    }

    #[test]
    fn capacity_evicts_the_oldest_waiting_entry() {
        let mut j = join(3600, 2);
        for (i, id) in ["p1", "p2", "p3"].iter().enumerate() {
            j.on_prediction(0, "m", id, prediction(0, i as u64));
        }
        assert_eq!(j.waiting(), (2, 0));
        assert_eq!(j.take_counts().evicted, 1);
        assert!(j.on_outcome(0, "m", "p1", outcome("1"), 3).is_none(), "p1 was evicted");
        assert!(j.on_outcome(0, "m", "p3", outcome("1"), 3).is_some());
    }

    #[test]
    fn duplicates_are_counted_and_ignored() {
        let mut j = join(3600, 100);
        j.on_prediction(0, "m", "p1", prediction(0, 1));
        j.on_prediction(0, "m", "p1", prediction(60, 61));
        j.on_outcome(0, "m", "q", outcome("1"), 2);
        j.on_outcome(0, "m", "q", outcome("0"), 3);
        let counts = j.take_counts();
        assert_eq!((counts.duplicate_predictions, counts.duplicate_outcomes), (1, 1));
        assert_eq!(
            j.on_outcome(0, "m", "p1", outcome("1"), 4).unwrap().window_start,
            0,
            "the first one counts"
        );
    }

    #[test]
    fn revoked_partitions_are_forgotten() {
        let mut j = join(3600, 100);
        j.on_prediction(3, "m", "p1", prediction(0, 1));
        j.revoke(&[3]);
        assert_eq!(j.waiting(), (0, 0));
    }
}
