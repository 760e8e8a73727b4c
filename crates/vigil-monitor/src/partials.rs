//! Partial window states between two flushes, kept per source topic and Kafka partition so a
//! flush can store each partition's position with its partials, and a revoked partition's work
//! can be dropped whole. Predictions add to their window's state; a matched outcome adds to its
//! prediction's window's performance, in the batch of the message that completed the pair.

use std::collections::{BTreeMap, HashMap, HashSet};

use vigil_events::PredictionView;
use vigil_store::WindowPartialRow;

use crate::join::Matched;
use crate::window::{StateCodecError, WindowState, OTHER};

/// The topic a message came from. Outcomes share partition numbers with predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Predictions,
    Outcomes,
}

/// (model, version, segment, pane start) -> state, nested so the hot path looks up by `&str`
/// and allocates only for a key it has not seen since the last flush.
type States = Map<Map<Map<BTreeMap<u32, WindowState>>>>;

/// A string-keyed map with a fast fixed-seed hasher (keys are model ids, versions and
/// segments, bounded by configuration).
type Map<V> = HashMap<String, V, foldhash::fast::FixedState>;

#[derive(Debug, Default)]
struct PartitionBatch {
    /// The offset after the last message taken from this partition.
    next_offset: i64,
    states: States,
}

/// Which segments a model gets: one per configured tag value, up to a cap per model; values past
/// the cap share `tag=__other__`.
#[derive(Debug)]
pub struct Segmenter {
    tags: Vec<String>,
    max_per_model: usize,
    admitted: HashMap<String, HashSet<String>>,
    overflowed: u64,
    /// Reused to build `tag=value` names without allocating per event.
    scratch: String,
}

impl Segmenter {
    pub fn new(tags: Vec<String>, max_per_model: usize) -> Self {
        Self { tags, max_per_model, admitted: HashMap::new(), overflowed: 0, scratch: String::new() }
    }

    /// Segments already stored (after a restart), admitted before any new one.
    pub fn admit_stored(&mut self, stored: impl IntoIterator<Item = (String, String)>) {
        for (model, segment) in stored {
            self.admitted.entry(model).or_default().insert(segment);
        }
    }

    /// Calls `f` with `""` (all traffic) and each of the event's segments. Runs per event:
    /// builds segment names in one reused buffer and allocates only for a new model or segment.
    pub fn for_each(&mut self, event: &PredictionView<'_>, mut f: impl FnMut(&str)) {
        f("");
        if self.tags.is_empty() {
            return;
        }
        if !self.admitted.contains_key(event.model_id) {
            self.admitted.insert(event.model_id.to_owned(), HashSet::new());
        }
        let admitted = self.admitted.get_mut(event.model_id).expect("inserted above");
        let mut segment = std::mem::take(&mut self.scratch);
        for tag in &self.tags {
            let Some((_, value)) = event.segment.iter().find(|(k, _)| *k == tag.as_str()) else { continue };
            segment.clear();
            segment.push_str(tag);
            segment.push('=');
            segment.push_str(value);
            let known = admitted.contains(&segment);
            if known || admitted.len() < self.max_per_model {
                if !known {
                    admitted.insert(segment.clone());
                }
                f(&segment);
            } else {
                self.overflowed += 1;
                segment.truncate(tag.len() + 1);
                segment.push_str(OTHER);
                f(&segment);
            }
        }
        self.scratch = segment;
    }

    /// Events whose segment went to `__other__` since the last call.
    pub fn take_overflowed(&mut self) -> u64 {
        std::mem::take(&mut self.overflowed)
    }
}

#[derive(Debug)]
pub struct PendingPartials {
    /// Partial states are kept per pane (`windowing.rs`); windows merge their panes at close.
    pane_seconds: u32,
    partitions: BTreeMap<(Source, i32), PartitionBatch>,
    messages: usize,
    positive_label: String,
}

impl PendingPartials {
    pub fn new(pane_seconds: u32, positive_label: &str) -> Self {
        assert!(pane_seconds > 0, "window lengths are validated at config load");
        Self {
            pane_seconds,
            partitions: BTreeMap::new(),
            messages: 0,
            positive_label: positive_label.to_owned(),
        }
    }

    /// The pane an event time (ms since the epoch, validated non-negative) falls in.
    pub fn pane_start(&self, event_time_ms: i64) -> u32 {
        let seconds = (event_time_ms / 1000) as u64;
        (seconds - seconds % u64::from(self.pane_seconds)) as u32
    }

    /// Adds a prediction to its window; fills `named` with its segments besides all traffic
    /// (what the outcome join keeps for it).
    pub fn record_event(
        &mut self,
        partition: i32,
        offset: i64,
        event: &PredictionView<'_>,
        late: bool,
        segments: &mut Segmenter,
        named: &mut Vec<String>,
    ) {
        let window = self.pane_start(event.event_time_ms);
        let batch = self.advance(Source::Predictions, partition, offset);
        let versions = get_or_insert(&mut batch.states, event.model_id);
        let segments_of_version = get_or_insert(versions, event.model_version);
        named.clear();
        segments.for_each(event, |segment| {
            get_or_insert(segments_of_version, segment).entry(window).or_default().add(event, late);
            if !segment.is_empty() {
                named.push(segment.to_owned());
            }
        });
    }

    /// Adds a joined pair's performance to its prediction's window, overall and per segment, in
    /// the batch of the message that completed it (already recorded or passed to
    /// [`Self::record_other`]).
    pub fn record_matched(&mut self, source: Source, partition: i32, matched: &Matched) {
        let batch = self.partitions.entry((source, partition)).or_default();
        let versions = get_or_insert(&mut batch.states, &matched.model_id);
        let segments_of_version = get_or_insert(versions, &matched.model_version);
        for segment in std::iter::once("").chain(matched.segments.iter().map(String::as_str)) {
            get_or_insert(segments_of_version, segment).entry(matched.window_start).or_default().add_outcome(
                &matched.predicted,
                &matched.observed,
                &self.positive_label,
            );
        }
    }

    /// A message that adds no prediction (an outcome, or dead-lettered) still moves its
    /// partition's position.
    pub fn record_other(&mut self, source: Source, partition: i32, offset: i64) {
        self.advance(source, partition, offset);
    }

    fn advance(&mut self, source: Source, partition: i32, offset: i64) -> &mut PartitionBatch {
        self.messages += 1;
        let batch = self.partitions.entry((source, partition)).or_default();
        batch.next_offset = batch.next_offset.max(offset + 1);
        batch
    }

    pub fn messages(&self) -> usize {
        self.messages
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Forgets revoked partitions: their next owner re-reads them from the stored position.
    pub fn revoke(&mut self, partitions: &[i32]) {
        self.partitions.retain(|(_, p), _| !partitions.contains(p));
    }

    /// The next offset per (source, partition) once the rows from [`Self::rows`] are stored.
    pub fn positions(&self) -> impl Iterator<Item = (Source, i32, i64)> + '_ {
        self.partitions.iter().map(|((s, p), b)| (*s, *p, b.next_offset))
    }

    /// (partition, model, pane) of the panes that got joined outcomes in this batch.
    pub fn panes_with_outcomes(&self) -> std::collections::BTreeSet<(i32, String, u32)> {
        let mut panes = std::collections::BTreeSet::new();
        for ((_, partition), batch) in &self.partitions {
            for (model, versions) in &batch.states {
                for segments in versions.values() {
                    for (pane, state) in segments.get("").into_iter().flatten() {
                        if state.performance.is_some() {
                            panes.insert((*partition, model.clone(), *pane));
                        }
                    }
                }
            }
        }
        panes
    }

    /// One row per (source, partition, model, version, segment, window); a partition with no
    /// state gets one empty row so its position is stored all the same. `topics` names the
    /// predictions and the outcomes topic.
    pub fn rows(&self, topics: [&str; 2], written_at: u32) -> Result<Vec<WindowPartialRow>, StateCodecError> {
        let mut rows = Vec::new();
        for (&(source, partition), batch) in &self.partitions {
            let topic = match source {
                Source::Predictions => topics[0],
                Source::Outcomes => topics[1],
            };
            let row = |model: &str,
                       version: &str,
                       segment: &str,
                       window_start: u32,
                       events: u64,
                       state: Vec<u8>| WindowPartialRow {
                model_id: model.to_owned(),
                model_version: version.to_owned(),
                segment: segment.to_owned(),
                window_start,
                window_seconds: self.pane_seconds,
                events,
                state,
                source_topic: topic.to_owned(),
                source_partition: partition as u32,
                source_end_offset: batch.next_offset,
                written_at,
            };
            let before = rows.len();
            for (model, versions) in &batch.states {
                for (version, segments) in versions {
                    for (segment, windows) in segments {
                        for (window, state) in windows {
                            rows.push(row(model, version, segment, *window, state.events, state.encode()?));
                        }
                    }
                }
            }
            if rows.len() == before {
                rows.push(row("", "", "", 0, 0, Vec::new()));
            }
        }
        Ok(rows)
    }

    pub fn clear(&mut self) {
        self.partitions.clear();
        self.messages = 0;
    }

    /// Takes every state recorded since the last call, as (partition, model, version, segment,
    /// pane start, state), and clears the batch: for `vigil replay`, which merges the states
    /// itself instead of storing them. Per key, a partition's predictions come before its
    /// outcomes.
    pub fn take_states(&mut self) -> Vec<(i32, String, String, String, u32, WindowState)> {
        let mut taken = Vec::new();
        for ((_, partition), batch) in std::mem::take(&mut self.partitions) {
            for (model, versions) in batch.states {
                for (version, segments) in versions {
                    for (segment, windows) in segments {
                        for (window, state) in windows {
                            taken.push((
                                partition,
                                model.clone(),
                                version.clone(),
                                segment.clone(),
                                window,
                                state,
                            ));
                        }
                    }
                }
            }
        }
        self.clear();
        taken
    }
}

fn get_or_insert<'m, V: Default>(map: &'m mut Map<V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_events::{decode_prediction_view, encode, PredictionEvent};

    fn bytes(model: &str, version: &str, country: Option<&str>, time_ms: i64) -> Vec<u8> {
        encode(&PredictionEvent {
            prediction_id: "p".into(),
            model_id: model.into(),
            model_version: version.into(),
            event_time_ms: time_ms,
            segment: country.map(|c| ("country".to_owned(), c.to_owned())).into_iter().collect(),
            ..Default::default()
        })
    }

    fn record(p: &mut PendingPartials, s: &mut Segmenter, partition: i32, offset: i64, b: &[u8]) {
        p.record_event(partition, offset, &decode_prediction_view(b).unwrap(), false, s, &mut Vec::new());
    }

    #[test]
    fn events_fall_in_tumbling_event_time_windows() {
        let p = PendingPartials::new(60, "1");
        assert_eq!(p.pane_start(0), 0);
        assert_eq!(p.pane_start(59_999), 0);
        assert_eq!(p.pane_start(60_000), 60);
        assert_eq!(p.pane_start(1_764_000_123_456), 1_764_000_120);
    }

    #[test]
    fn rows_carry_states_per_segment_and_each_partition_position() {
        let mut p = PendingPartials::new(60, "1");
        let mut s = Segmenter::new(vec!["country".into()], 10);
        record(&mut p, &mut s, 0, 10, &bytes("fraud", "v1", Some("DE"), 1_000));
        record(&mut p, &mut s, 0, 11, &bytes("fraud", "v1", Some("US"), 2_000));
        record(&mut p, &mut s, 0, 12, &bytes("fraud", "v2", None, 61_000));
        p.record_other(Source::Predictions, 1, 7);
        assert_eq!(p.messages(), 4);

        let mut rows = p.rows(["t", "o"], 99).unwrap();
        rows.sort_by(|a, b| {
            (a.source_partition, &a.model_version, &a.segment).cmp(&(
                b.source_partition,
                &b.model_version,
                &b.segment,
            ))
        });
        let summary: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.source_partition,
                    r.model_version.as_str(),
                    r.segment.as_str(),
                    r.window_start,
                    r.events,
                    r.source_end_offset,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, "v1", "", 0, 2, 13),
                (0, "v1", "country=DE", 0, 1, 13),
                (0, "v1", "country=US", 0, 1, 13),
                (0, "v2", "", 60, 1, 13),
                (1, "", "", 0, 0, 8),
            ]
        );
        let state = WindowState::decode(&rows[0].state).unwrap();
        assert_eq!(state.events, 2);
    }

    #[test]
    fn segments_past_the_cap_share_other_and_are_counted() {
        let mut p = PendingPartials::new(60, "1");
        let mut s = Segmenter::new(vec!["country".into()], 2);
        s.admit_stored([("fraud".to_owned(), "country=DE".to_owned())]);
        for (i, c) in ["DE", "US", "BR", "IN", "US"].iter().enumerate() {
            record(&mut p, &mut s, 0, i as i64, &bytes("fraud", "v1", Some(c), 0));
        }
        assert_eq!(s.take_overflowed(), 2);
        let segments: std::collections::BTreeMap<String, u64> =
            p.rows(["t", "o"], 0).unwrap().into_iter().map(|r| (r.segment, r.events)).collect();
        assert_eq!(segments["country=__other__"], 2);
        assert_eq!(segments["country=US"], 2);
        assert_eq!(segments[""], 5);
    }

    #[test]
    fn revoked_partitions_are_forgotten() {
        let mut p = PendingPartials::new(60, "1");
        let mut s = Segmenter::new(vec![], 10);
        record(&mut p, &mut s, 0, 1, &bytes("a", "v1", None, 0));
        record(&mut p, &mut s, 3, 1, &bytes("b", "v1", None, 0));
        p.revoke(&[3]);
        assert_eq!(p.positions().collect::<Vec<_>>(), vec![(Source::Predictions, 0, 2)]);
    }

    #[test]
    fn matched_outcomes_add_to_their_predictions_window_in_the_completing_batch() {
        use crate::performance::{Observed, Predicted};
        let mut p = PendingPartials::new(60, "1");
        p.record_other(Source::Outcomes, 2, 40);
        let matched = Matched {
            model_id: "fraud".into(),
            model_version: "v1".into(),
            segments: vec!["country=DE".into()],
            window_start: 120,
            predicted: Predicted { label: Some("1".into()), score: Some(0.8), value: None },
            observed: Observed { label: Some("1".into()), value: None },
        };
        p.record_matched(Source::Outcomes, 2, &matched);
        let mut rows = p.rows(["t", "o"], 0).unwrap();
        rows.sort_by(|a, b| a.segment.cmp(&b.segment));
        let keyed: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.source_topic.as_str(),
                    r.source_partition,
                    r.segment.as_str(),
                    r.window_start,
                    r.events,
                    r.source_end_offset,
                )
            })
            .collect();
        assert_eq!(keyed, vec![("o", 2, "", 120, 0, 41), ("o", 2, "country=DE", 120, 0, 41)]);
        let state = WindowState::decode(&rows[0].state).unwrap();
        assert_eq!(state.performance.unwrap().labeled, 1);
        assert_eq!(
            p.panes_with_outcomes().into_iter().collect::<Vec<_>>(),
            vec![(2, "fraud".to_owned(), 120)]
        );
    }
}
