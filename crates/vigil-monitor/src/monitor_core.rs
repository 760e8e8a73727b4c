//! The monitor's message path, the one both drivers use: `vigil monitor` feeds it from Kafka,
//! `vigil replay` from the retained log or an exported file, and the unit tests from memory.
//!
//! ```text
//! on_message(source, partition, offset, payload)
//!   -> decode -> clock (lateness, which windows to close) -> pane state (PendingPartials)
//!   -> outcome join (a matched pair adds to its prediction's pane)
//! take_partials() / closable(now)                           -> the driver stores and closes
//! ```
//!
//! Pure state: no Kafka, ClickHouse or tokio. Wall-clock time enters only through the `now`
//! the driver passes to [`MonitorCore::closable`], so idle partitions close in tests without
//! waiting.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_events::{
    confluent_body, decode, decode_confluent, decode_prediction_view, decode_prediction_view_body, detect,
    DecodeError, Framing, OutcomeEvent, PredictionEvent, PredictionView, WriterSchema,
};

use crate::clock::WindowClock;
use crate::join::{JoinCounts, JoinSettings, Matched, OutcomeJoin};
use crate::partials::{PendingPartials, Segmenter, Source};
use crate::performance::Observed;
use crate::windowing::{Window, Windowing};
use crate::MonitorSettings;

/// The settings that shape what the core computes from a message.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreSettings {
    pub windows: Windowing,
    pub lateness_seconds: u32,
    /// A partition quiet for this long (wall clock) closes its windows as if its event time had
    /// kept pace; `None` closes by event time only (replay).
    pub idle_timeout: Option<Duration>,
    pub segment_tags: Vec<String>,
    pub max_segments_per_model: usize,
    pub join: JoinSettings,
    pub positive_label: String,
}

impl CoreSettings {
    pub fn of(settings: &MonitorSettings) -> Self {
        Self {
            windows: settings.windows.clone(),
            lateness_seconds: settings.allowed_lateness.as_secs() as u32,
            idle_timeout: settings.idle_timeout,
            segment_tags: settings.segment_tags.clone(),
            max_segments_per_model: settings.max_segments_per_model,
            join: settings.join,
            positive_label: settings.positive_label.clone(),
        }
    }
}

/// What the core counted since the last [`MonitorCore::take_counts`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoreCounts {
    pub messages: u64,
    pub predictions: u64,
    pub outcomes: u64,
    /// Messages that did not decode (the live driver dead-letters them).
    pub undecodable: u64,
    /// Messages below the stored position of their partition (already counted before a restart).
    pub already_stored: u64,
    pub late_events: u64,
    pub segment_overflow: u64,
    pub join: JoinCounts,
}

impl CoreCounts {
    /// Adds `other`'s counts (another shard's).
    pub fn absorb(&mut self, other: CoreCounts) {
        self.messages += other.messages;
        self.predictions += other.predictions;
        self.outcomes += other.outcomes;
        self.undecodable += other.undecodable;
        self.already_stored += other.already_stored;
        self.late_events += other.late_events;
        self.segment_overflow += other.segment_overflow;
        let (a, b) = (&mut self.join, other.join);
        a.matched += b.matched;
        a.expired_predictions += b.expired_predictions;
        a.expired_outcomes += b.expired_outcomes;
        a.evicted += b.evicted;
        a.duplicate_predictions += b.duplicate_predictions;
        a.duplicate_outcomes += b.duplicate_outcomes;
    }
}

/// What one message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Counted: its event time (ms).
    Counted { event_time_ms: i64 },
    /// Below the stored position of its partition: skipped.
    AlreadyStored,
}

pub struct MonitorCore {
    settings: CoreSettings,
    pending: PendingPartials,
    segments: Segmenter,
    clock: WindowClock,
    join: OutcomeJoin,
    /// Reused per prediction for the segment names the join keeps.
    named: Vec<String>,
    /// Stored next offset per (topic, partition): messages below it were counted before.
    stored: HashMap<(Source, i32), i64>,
    /// Newest event time (s) read per (topic, partition).
    newest_s: HashMap<(Source, i32), u64>,
    counts: CoreCounts,
    /// Writer schemas of Confluent-framed messages by registry id, fetched by the driver.
    writers: HashMap<u32, Arc<WriterSchema>>,
}

impl MonitorCore {
    pub fn new(settings: CoreSettings) -> Self {
        Self {
            pending: PendingPartials::new(settings.windows.pane_seconds(), &settings.positive_label),
            segments: Segmenter::new(settings.segment_tags.clone(), settings.max_segments_per_model),
            clock: WindowClock::new(settings.lateness_seconds).with_idle_timeout(settings.idle_timeout),
            join: OutcomeJoin::new(settings.join),
            named: Vec::new(),
            stored: HashMap::new(),
            newest_s: HashMap::new(),
            counts: CoreCounts::default(),
            writers: HashMap::new(),
            settings,
        }
    }

    pub fn settings(&self) -> &CoreSettings {
        &self.settings
    }

    /// Takes one message. Messages of one topic partition come in offset order. A message that
    /// does not decode still moves its partition's position (the caller dead-letters it before
    /// the next flush stores that position).
    pub fn on_message(
        &mut self,
        source: Source,
        partition: i32,
        offset: i64,
        payload: &[u8],
    ) -> Result<Taken, DecodeError> {
        self.counts.messages += 1;
        if self.stored.get(&(source, partition)).is_some_and(|next| offset < *next) {
            self.counts.already_stored += 1;
            return Ok(Taken::AlreadyStored);
        }
        let taken = match source {
            Source::Predictions => self.take_prediction(partition, offset, payload),
            Source::Outcomes => self.take_outcome(partition, offset, payload),
        };
        if taken.is_err() {
            self.counts.undecodable += 1;
            self.pending.record_other(source, partition, offset);
        }
        taken.map(|event_time_ms| {
            let seconds = (event_time_ms / 1000).max(0) as u64;
            let newest = self.newest_s.entry((source, partition)).or_insert(seconds);
            *newest = (*newest).max(seconds);
            Taken::Counted { event_time_ms }
        })
    }

    /// A writer schema for Confluent-framed messages with registry id `id`.
    pub fn add_writer_schema(&mut self, id: u32, schema: Arc<WriterSchema>) {
        self.writers.insert(id, schema);
    }

    pub fn knows_writer_schema(&self, id: u32) -> bool {
        self.writers.contains_key(&id)
    }

    fn writer(&self, id: u32) -> Result<Arc<WriterSchema>, DecodeError> {
        self.writers.get(&id).cloned().ok_or(DecodeError::UnknownSchemaId { id })
    }

    /// The writer schema of a Confluent-framed message (magic byte 0 and a registry id), or
    /// `None` for anything else, decoded as vigil's single-object encoding as before.
    fn confluent_writer(&self, payload: &[u8]) -> Result<Option<Arc<WriterSchema>>, DecodeError> {
        if payload.first() != Some(&vigil_events::CONFLUENT_MAGIC) {
            return Ok(None);
        }
        match detect(payload)? {
            Framing::Confluent { schema_id } => self.writer(schema_id).map(Some),
            Framing::SingleObject { .. } => Ok(None),
        }
    }

    fn take_prediction(&mut self, partition: i32, offset: i64, payload: &[u8]) -> Result<i64, DecodeError> {
        match self.confluent_writer(payload)? {
            None => {
                let event = decode_prediction_view(payload)?;
                Ok(self.count_prediction(partition, offset, &event))
            }
            Some(writer) => {
                // Borrowed from the message when the writer schema is vigil's own.
                let body = writer.resolve::<PredictionEvent>(confluent_body(payload)?)?;
                let event = decode_prediction_view_body(&body)?;
                Ok(self.count_prediction(partition, offset, &event))
            }
        }
    }

    fn decode_outcome(&self, payload: &[u8]) -> Result<OutcomeEvent, DecodeError> {
        match self.confluent_writer(payload)? {
            None => decode::<OutcomeEvent>(payload),
            Some(writer) => decode_confluent::<OutcomeEvent>(payload, &writer),
        }
    }

    fn count_prediction(&mut self, partition: i32, offset: i64, event: &PredictionView<'_>) -> i64 {
        self.counts.predictions += 1;
        let pane = self.pending.pane_start(event.event_time_ms);
        let late = self.clock.observe(
            partition,
            self.settings.windows.for_model(event.model_id),
            event.event_time_ms,
        );
        self.counts.late_events += u64::from(late);
        self.pending.record_event(partition, offset, event, late, &mut self.segments, &mut self.named);
        let waiting = self.join.keep(event, pane, &self.named);
        if let Some(matched) =
            self.join.on_prediction(partition, event.model_id, event.prediction_id, waiting)
        {
            self.pending.record_matched(Source::Predictions, partition, &matched);
        }
        event.event_time_ms
    }

    fn take_outcome(&mut self, partition: i32, offset: i64, payload: &[u8]) -> Result<i64, DecodeError> {
        let outcome = self.decode_outcome(payload)?;
        self.counts.outcomes += 1;
        self.pending.record_other(Source::Outcomes, partition, offset);
        if let Some(matched) = self.join_outcome(partition, &outcome) {
            self.pending.record_matched(Source::Outcomes, partition, &matched);
        }
        Ok(outcome.event_time_ms)
    }

    fn join_outcome(&mut self, partition: i32, outcome: &OutcomeEvent) -> Option<Matched> {
        let observed = Observed { label: outcome.label.clone(), value: outcome.value };
        let time_s = (outcome.event_time_ms / 1000) as u64;
        self.join.on_outcome(partition, &outcome.model_id, &outcome.prediction_id, observed, time_s)
    }

    /// A message re-read from before the stored position after a (re)start: it enters the join
    /// only (its numbers are stored already), so what still waited there waits again.
    pub fn rejoin(&mut self, source: Source, partition: i32, payload: &[u8]) {
        match source {
            Source::Predictions => {
                let Ok(writer) = self.confluent_writer(payload) else { return };
                let body = match &writer {
                    None => std::borrow::Cow::Borrowed(payload),
                    Some(writer) => {
                        let Ok(body) =
                            confluent_body(payload).and_then(|b| writer.resolve::<PredictionEvent>(b))
                        else {
                            return;
                        };
                        body
                    }
                };
                let decoded = match writer {
                    None => decode_prediction_view(&body),
                    Some(_) => decode_prediction_view_body(&body),
                };
                let Ok(event) = decoded else { return };
                self.rejoin_prediction(partition, &event);
            }
            Source::Outcomes => {
                if let Ok(outcome) = self.decode_outcome(payload) {
                    let _ = self.join_outcome(partition, &outcome);
                }
            }
        }
    }

    fn rejoin_prediction(&mut self, partition: i32, event: &PredictionView<'_>) {
        let pane = self.pending.pane_start(event.event_time_ms);
        self.named.clear();
        let names = &mut self.named;
        self.segments.for_each(event, |segment| {
            if !segment.is_empty() {
                names.push(segment.to_owned());
            }
        });
        let waiting = self.join.keep(event, pane, &self.named);
        let _ = self.join.on_prediction(partition, event.model_id, event.prediction_id, waiting);
    }

    /// Ends a rebuild of the join: what matched while re-reading was counted before.
    pub fn rejoined(&mut self) -> (usize, usize) {
        self.join.take_counts();
        self.join.waiting()
    }

    /// Resumes behind what is stored: positions, admitted segments, and per partition the
    /// newest stored pane (the clock starts there) and the windows still to (re)close.
    pub fn resume(
        &mut self,
        stored: HashMap<(Source, i32), i64>,
        segments: impl IntoIterator<Item = (String, String)>,
        newest_panes: impl IntoIterator<Item = (i32, u64)>,
        reopen: impl IntoIterator<Item = (i32, Window)>,
    ) {
        self.stored = stored;
        self.segments.admit_stored(segments);
        for (partition, pane) in newest_panes {
            self.clock.resume(partition, pane);
        }
        for (partition, window) in reopen {
            self.clock.reopen(partition, window);
        }
    }

    /// Forgets revoked partitions (their new owner resumes from the store) and every window
    /// clock: the driver resumes the partitions it still owns from the store.
    pub fn revoke(&mut self, revoked: &[i32]) {
        self.pending.revoke(revoked);
        self.clock =
            WindowClock::new(self.settings.lateness_seconds).with_idle_timeout(self.settings.idle_timeout);
        self.join.revoke(revoked);
        self.stored.clear();
        self.newest_s.clear();
    }

    pub fn pending(&self) -> &PendingPartials {
        &self.pending
    }

    /// What a flush stored: its positions become the stored ones and the batch starts over.
    pub fn flushed(&mut self) {
        for (source, partition, next) in self.pending.positions() {
            self.stored.insert((source, partition), next);
        }
        self.pending.clear();
    }

    /// The pane states recorded since the last call (the replay merges them into windows).
    pub fn take_states(&mut self) -> Vec<(i32, String, String, String, u32, crate::window::WindowState)> {
        self.pending.take_states()
    }

    /// Windows whose end the watermark passed (by event time, or by wall clock on a quiet
    /// partition), with how long each waited since it became due.
    pub fn closable(&mut self, now: Instant) -> Vec<(i32, Window, Duration)> {
        self.clock.take_closable_at(now)
    }

    /// Whether event time made a window due since [`Self::closable`] was last called.
    pub fn window_due(&self) -> bool {
        self.clock.became_due()
    }

    /// Whether `window` of `partition` waits to be closed.
    pub fn is_open(&self, partition: i32, window: Window) -> bool {
        self.clock.is_open(partition, window)
    }

    /// A window to close again (a close that must be retried, or one found unclosed).
    pub fn reopen(&mut self, partition: i32, window: Window) {
        self.clock.reopen(partition, window);
    }

    /// Each partition's watermark (s), wall-clock progress of quiet partitions included.
    pub fn watermarks(&self, now: Instant) -> Vec<(i32, u64)> {
        self.clock.watermarks_at(now)
    }

    /// The newest event time (s) read on a topic partition.
    pub fn newest(&self, source: Source, partition: i32) -> Option<u64> {
        self.newest_s.get(&(source, partition)).copied()
    }

    /// Partitions with anything read or resumed.
    pub fn partitions(&self) -> BTreeSet<i32> {
        self.newest_s.keys().map(|(_, p)| *p).collect()
    }

    pub fn take_counts(&mut self) -> CoreCounts {
        let mut counts = std::mem::take(&mut self.counts);
        counts.join = self.join.take_counts();
        counts.segment_overflow = self.segments.take_overflowed();
        counts
    }

    /// Predictions and outcomes waiting in the join.
    pub fn waiting(&self) -> (usize, usize) {
        self.join.waiting()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::WindowState;
    use vigil_events::{encode, OutcomeEvent, Prediction, PredictionEvent};

    /// 2025-11-24 16:00:00 UTC, on a minute boundary.
    const T0: i64 = 1_764_000_000_000;

    fn settings() -> CoreSettings {
        CoreSettings {
            windows: Windowing::tumbling(60),
            lateness_seconds: 10,
            idle_timeout: Some(Duration::from_secs(30)),
            segment_tags: vec![],
            max_segments_per_model: 10,
            join: JoinSettings { horizon_seconds: 3_600, capacity: 1_000 },
            positive_label: "1".into(),
        }
    }

    fn prediction(id: usize, time_ms: i64) -> Vec<u8> {
        encode(&PredictionEvent {
            prediction_id: format!("p{id}"),
            model_id: "m".into(),
            model_version: "v1".into(),
            event_time_ms: time_ms,
            numeric_features: [("x".to_owned(), id as f64)].into(),
            prediction: Prediction { label: Some("1".into()), score: Some(0.9), ..Default::default() },
            ..Default::default()
        })
    }

    fn outcome(id: usize, time_ms: i64) -> Vec<u8> {
        encode(&OutcomeEvent {
            event_id: format!("o{id}"),
            prediction_id: format!("p{id}"),
            model_id: "m".into(),
            event_time_ms: time_ms,
            label: Some("1".into()),
            value: None,
        })
    }

    /// (events, labeled) per window start, from what the core would flush.
    fn flushed_counts(core: &mut MonitorCore) -> std::collections::BTreeMap<u32, (u64, u64)> {
        let rows = core.pending().rows(["p", "o"], 0).unwrap();
        core.flushed();
        let mut counts = std::collections::BTreeMap::new();
        for row in rows.into_iter().filter(|r| r.segment.is_empty() && !r.state.is_empty()) {
            let state = WindowState::decode(&row.state).unwrap();
            let labeled = state.performance.as_ref().map_or(0, |p| p.summary("1").labeled);
            let entry: &mut (u64, u64) = counts.entry(row.window_start).or_default();
            entry.0 += state.events;
            entry.1 += labeled;
        }
        counts
    }

    fn minute(n: i64) -> u32 {
        ((T0 + n * 60_000) / 1000) as u32
    }

    #[test]
    fn a_window_closes_once_the_watermark_passes_its_end_plus_lateness() {
        let mut core = MonitorCore::new(settings());
        let now = Instant::now();
        core.on_message(Source::Predictions, 0, 0, &prediction(0, T0 + 1_000)).unwrap();
        core.on_message(Source::Predictions, 0, 1, &prediction(1, T0 + 65_000)).unwrap();
        assert!(core.closable(now).is_empty(), "65 s is within the 10 s lateness of the first window's end");
        assert!(!core.window_due());
        core.on_message(Source::Predictions, 0, 2, &prediction(2, T0 + 70_000)).unwrap();
        assert!(core.window_due(), "the driver flushes early so the window closes promptly");
        let closed: Vec<_> = core.closable(now).into_iter().map(|(p, w, _)| (p, w.start)).collect();
        assert_eq!(closed, vec![(0, minute(0))]);
        assert!(!core.window_due(), "taken");
    }

    #[test]
    fn a_quiet_partition_closes_its_windows_on_the_wall_clock() {
        let mut core = MonitorCore::new(settings());
        core.on_message(Source::Predictions, 3, 0, &prediction(0, T0 + 59_000)).unwrap();
        let start = Instant::now();
        assert!(core.closable(start + Duration::from_secs(29)).is_empty(), "not idle yet: 59 - 10 < 60");
        // Idle for 30 s: event time is taken to have moved 30 s too, 59 + 30 - 10 >= 60.
        let closed = core.closable(start + Duration::from_secs(30));
        assert_eq!(closed.iter().map(|(p, w, _)| (*p, w.start)).collect::<Vec<_>>(), vec![(3, minute(0))]);
        let watermark = core.watermarks(start + Duration::from_secs(45));
        assert_eq!(watermark, vec![(3, (T0 / 1000) as u64 + 59 + 45 - 10)]);
    }

    #[test]
    fn a_late_event_counts_reopens_its_window_and_is_reported() {
        let mut core = MonitorCore::new(settings());
        let now = Instant::now();
        core.on_message(Source::Predictions, 0, 0, &prediction(0, T0 + 1_000)).unwrap();
        core.on_message(Source::Predictions, 0, 1, &prediction(1, T0 + 200_000)).unwrap();
        assert_eq!(core.closable(now).len(), 1);
        core.on_message(Source::Predictions, 0, 2, &prediction(2, T0 + 2_000)).unwrap();
        assert_eq!(core.take_counts().late_events, 1);
        assert!(core.is_open(0, Window { start: minute(0), length: 60 }));
        let counts = flushed_counts(&mut core);
        assert_eq!(counts[&minute(0)].0, 2, "the late event still counts");
    }

    #[test]
    fn after_a_restart_messages_below_the_stored_position_are_skipped() {
        let mut first = MonitorCore::new(settings());
        for i in 0..10 {
            first.on_message(Source::Predictions, 0, i, &prediction(i as usize, T0 + i * 1_000)).unwrap();
        }
        let stored: HashMap<_, _> = first.pending().positions().map(|(s, p, next)| ((s, p), next)).collect();
        assert_eq!(stored[&(Source::Predictions, 0)], 10);
        let before = flushed_counts(&mut first);

        // A new process resumes at the stored position; Kafka redelivers from offset 5.
        let mut second = MonitorCore::new(settings());
        second.resume(
            stored,
            Vec::new(),
            [(0, u64::from(minute(0)))],
            [(0, Window { start: minute(0), length: 60 })],
        );
        for i in 5..12 {
            let taken = second
                .on_message(Source::Predictions, 0, i, &prediction(i as usize, T0 + i * 1_000))
                .unwrap();
            assert_eq!(taken == Taken::AlreadyStored, i < 10, "offset {i}");
        }
        let after = flushed_counts(&mut second);
        assert_eq!(before[&minute(0)].0 + after[&minute(0)].0, 12, "every event counted once");
        assert_eq!(second.take_counts().already_stored, 5);
    }

    #[test]
    fn a_rebuilt_join_matches_an_outcome_to_a_prediction_stored_before_the_restart() {
        let mut first = MonitorCore::new(settings());
        first.on_message(Source::Predictions, 0, 0, &prediction(7, T0 + 1_000)).unwrap();
        let stored: HashMap<_, _> = first.pending().positions().map(|(s, p, next)| ((s, p), next)).collect();
        first.flushed();

        let mut second = MonitorCore::new(settings());
        second.resume(stored, Vec::new(), [(0, u64::from(minute(0)))], []);
        // The join horizon before the stored position is re-read into the join only...
        second.rejoin(Source::Predictions, 0, &prediction(7, T0 + 1_000));
        assert_eq!(second.rejoined(), (1, 0));
        // ...so the outcome that arrives after the restart finds its prediction.
        second.on_message(Source::Outcomes, 0, 0, &outcome(7, T0 + 30_000)).unwrap();
        let counts = flushed_counts(&mut second);
        assert_eq!(counts[&minute(0)], (0, 1), "the pair counts in the prediction's window, once");
    }

    #[test]
    fn a_rebalance_drops_revoked_work_and_keeps_the_rest() {
        let mut core = MonitorCore::new(settings());
        core.on_message(Source::Predictions, 0, 0, &prediction(0, T0)).unwrap();
        core.on_message(Source::Predictions, 1, 0, &prediction(1, T0)).unwrap();
        core.on_message(Source::Predictions, 1, 1, &prediction(2, T0 + 100_000)).unwrap();
        core.revoke(&[1]);
        let partitions: Vec<i32> = core.pending().positions().map(|(_, p, _)| p).collect();
        assert_eq!(partitions, vec![0], "the revoked partition's pending work is dropped");
        assert!(core.closable(Instant::now()).is_empty(), "window clocks restart from the store");
        assert_eq!(core.waiting().0, 1, "partition 0's prediction still waits for its outcome");
    }

    #[test]
    fn an_undecodable_message_moves_the_position_and_is_reported() {
        let mut core = MonitorCore::new(settings());
        assert!(core.on_message(Source::Predictions, 0, 0, b"not avro").is_err());
        assert!(core.on_message(Source::Outcomes, 0, 0, b"\xc3\x01garbage").is_err());
        let positions: Vec<_> = core.pending().positions().collect();
        assert_eq!(positions, vec![(Source::Predictions, 0, 1), (Source::Outcomes, 0, 1)]);
        assert_eq!(core.take_counts().undecodable, 2);
    }
}
