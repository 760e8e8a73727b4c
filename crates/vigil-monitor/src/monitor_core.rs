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
use std::time::{Duration, Instant};

use vigil_events::{decode, decode_prediction_view, DecodeError, OutcomeEvent};

use crate::clock::WindowClock;
use crate::join::{JoinCounts, JoinSettings, Matched, OutcomeJoin, WaitingPrediction};
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

    fn take_prediction(&mut self, partition: i32, offset: i64, payload: &[u8]) -> Result<i64, DecodeError> {
        let event = decode_prediction_view(payload)?;
        self.counts.predictions += 1;
        let pane = self.pending.pane_start(event.event_time_ms);
        let late = self.clock.observe(
            partition,
            self.settings.windows.for_model(event.model_id),
            event.event_time_ms,
        );
        self.counts.late_events += u64::from(late);
        self.pending.record_event(partition, offset, &event, late, &mut self.segments, &mut self.named);
        let waiting = WaitingPrediction::of(&event, pane, &self.named);
        if let Some(matched) =
            self.join.on_prediction(partition, event.model_id, event.prediction_id, waiting)
        {
            self.pending.record_matched(Source::Predictions, partition, &matched);
        }
        Ok(event.event_time_ms)
    }

    fn take_outcome(&mut self, partition: i32, offset: i64, payload: &[u8]) -> Result<i64, DecodeError> {
        let outcome = decode::<OutcomeEvent>(payload)?;
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
                let Ok(event) = decode_prediction_view(payload) else { return };
                let pane = self.pending.pane_start(event.event_time_ms);
                self.named.clear();
                let names = &mut self.named;
                self.segments.for_each(&event, |segment| {
                    if !segment.is_empty() {
                        names.push(segment.to_owned());
                    }
                });
                let waiting = WaitingPrediction::of(&event, pane, &self.named);
                let _ = self.join.on_prediction(partition, event.model_id, event.prediction_id, waiting);
            }
            Source::Outcomes => {
                if let Ok(outcome) = decode::<OutcomeEvent>(payload) {
                    let _ = self.join_outcome(partition, &outcome);
                }
            }
        }
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
