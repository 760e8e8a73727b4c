//! `vigil replay`: rebuilds windows from the retained Kafka log as the monitor built them live,
//! computes their rows with the same pure functions ([`crate::rows`]) against the reference each
//! stored row names, and compares them with what ClickHouse stores. The engine is pure: the caller
//! reads Kafka (or an exported file, framed by [`write_record`]) and ClickHouse.
//!
//! ## How a replay follows the live run
//! - Every message goes through the monitor's own message path, [`MonitorCore`] (decode,
//!   clock, panes, segments, outcome join), with the live settings except the wall clock: a
//!   replay closes windows by event time only. Undecodable messages (dead-lettered live) count
//!   nowhere.
//! - A partition's predictions are taken in offset order, and so are its outcomes. The live
//!   monitor saw the two topics interleaved as the consumer fetched them, which the log does not
//!   record; the replay interleaves them by Kafka record timestamp (a prediction first on a tie),
//!   the closest the log holds to their arrival order.
//! - States are merged batch by batch, like partials at close.
//!
//! ## Where a replay can legitimately differ from the live run
//! - **Floating-point sums** (score and feature means, Brier score, log loss, regression errors)
//!   depend on the order partials were merged; [`same_number`] compares them with a relative
//!   tolerance of [`RELATIVE_TOLERANCE`].
//! - **The outcome join's order.** Which pairs match does not depend on the order of a
//!   prediction and its outcome, except at the bounds: an entry expired (horizon) or evicted
//!   (capacity) in one interleaving may still wait in the other, and of two duplicates the one
//!   that arrived while its partner waited is the one that matched.
//! - **Restarts and rebalances.** A monitor (re)starting on a partition begins with its clock at
//!   the newest stored pane's start, a lower bound of the event time it had seen, so an event
//!   right after it for a window that had just closed may not be flagged late; the replay,
//!   uninterrupted, flags it. The join is rebuilt only from the horizon before the
//!   stored position.
//! - **Capped categories.** Past [`crate::window::CATEGORY_CAP`] values of one feature in one
//!   window, which values keep their own count depends on the order partials were merged.
//! - **A model spread over partitions** (not keyed by model id): live, its segments are admitted
//!   in the order the partitions were consumed, and each partition closes its own row.
//! - **A log whose head retention deleted**: windows of that partition before the first retained
//!   message cannot be rebuilt; [`Replayed::coverage`] says from which window on they can.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, Read, Write};

use serde::Serialize;
use serde_json::Value;
use vigil_stats::StatsError;
use vigil_store::{FeatureDriftRow, WindowMetricsRow, WindowPerformanceRow};

use crate::join::JoinCounts;
pub use crate::kafka::{log_extents, read_retained, PartitionExtent, RetainedMessage};
use crate::monitor_core::{CoreSettings, MonitorCore, Taken};
use crate::partials::Source;
use crate::rows::{self, ReferenceRef, RowContext, RowKey};
use crate::window::WindowState;
use crate::windowing::Window;

/// Messages between two merges of the recorded states into the replayed windows.
const BATCH_MESSAGES: usize = 10_000;

/// Two floats agree when they differ by at most this much relative to the larger...
pub const RELATIVE_TOLERANCE: f64 = 1e-9;
/// ...or by at most this much at all (values near zero, such as a mean error).
pub const ABSOLUTE_TOLERANCE: f64 = 1e-12;

pub use crate::rows::drift_policy as monitor_drift_policy;

/// The settings that shape a window's state: the monitor core's.
pub type ReplaySettings = CoreSettings;

/// Which windows to rebuild: all of them, or those of one model (and version), starting in
/// `[from, to)` (seconds since the Unix epoch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub model: Option<String>,
    pub version: Option<String>,
    pub from: Option<u32>,
    pub to: Option<u32>,
}

impl Selection {
    pub fn contains(&self, model: &str, version: &str, window_start: u32) -> bool {
        self.model.as_deref().is_none_or(|m| m == model)
            && self.version.as_deref().is_none_or(|v| v == version)
            && self.from.is_none_or(|from| window_start >= from)
            && self.to.is_none_or(|to| window_start < to)
    }
}

/// One message of the log, from either topic.
#[derive(Debug, Clone, Copy)]
pub struct LogMessage<'a> {
    pub source: Source,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub payload: &'a [u8],
}

/// What the replay read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayCounts {
    pub messages: u64,
    pub predictions: u64,
    pub outcomes: u64,
    /// Messages the monitor would have dead-lettered.
    pub undecodable: u64,
    pub late_events: u64,
    pub segment_overflow: u64,
    pub join: JoinCounts,
}

/// A rebuilt window: its length, merged state and the partition its predictions came from.
#[derive(Debug, Clone, Default)]
pub struct ReplayedWindow {
    pub partition: i32,
    pub length: u32,
    pub state: WindowState,
}

#[derive(Debug)]
struct Queued {
    offset: i64,
    timestamp_ms: i64,
    payload: Vec<u8>,
}

/// A partition's messages not yet taken, per topic, and whether each topic has ended.
#[derive(Debug, Default)]
struct Interleave {
    queued: [VecDeque<Queued>; 2],
    ended: [bool; 2],
    last_timestamp_ms: [i64; 2],
}

fn slot(source: Source) -> usize {
    match source {
        Source::Predictions => 0,
        Source::Outcomes => 1,
    }
}

/// The first message taken from one topic partition.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FirstSeen {
    offset: i64,
    /// Event time of the first message that decoded.
    event_time_ms: Option<i64>,
}

/// The replay engine: feed it every message with [`Replay::push`], say where each topic
/// partition ends with [`Replay::end_of`] (or let [`Replay::finish`] end them all).
pub struct Replay {
    core: MonitorCore,
    selection: Selection,
    interleave: BTreeMap<i32, Interleave>,
    windows: BTreeMap<RowKey, ReplayedWindow>,
    first: BTreeMap<(Source, i32), FirstSeen>,
    log_starts: BTreeMap<(Source, i32), i64>,
    error: Option<StatsError>,
}

impl Replay {
    pub fn new(settings: ReplaySettings, selection: Selection) -> Self {
        // Event time only: a replay has no wall clock to wait on.
        let settings = CoreSettings { idle_timeout: None, ..settings };
        Self {
            core: MonitorCore::new(settings),
            interleave: BTreeMap::new(),
            windows: BTreeMap::new(),
            first: BTreeMap::new(),
            log_starts: BTreeMap::new(),
            error: None,
            selection,
        }
    }

    /// Notes where a topic partition's retained log starts (its low watermark), so a partition
    /// that retention emptied is known not to cover its stored windows.
    pub fn log_start(&mut self, source: Source, partition: i32, offset: i64) {
        self.log_starts.insert((source, partition), offset);
    }

    /// Takes one message; messages of one topic partition must come in offset order.
    pub fn push(&mut self, message: LogMessage<'_>) {
        let lane = self.interleave.entry(message.partition).or_default();
        let side = slot(message.source);
        // Without a timestamp a message keeps its place after the one before it.
        let timestamp_ms = message.timestamp_ms.unwrap_or(lane.last_timestamp_ms[side]);
        lane.last_timestamp_ms[side] = timestamp_ms;
        lane.queued[side].push_back(Queued {
            offset: message.offset,
            timestamp_ms,
            payload: message.payload.to_vec(),
        });
        self.drain(message.partition);
    }

    /// No more messages of `source` on `partition`.
    pub fn end_of(&mut self, source: Source, partition: i32) {
        self.interleave.entry(partition).or_default().ended[slot(source)] = true;
        self.drain(partition);
    }

    /// Takes a partition's queued messages while the order between its two topics is known:
    /// the older head by timestamp, or either once the other topic has ended.
    fn drain(&mut self, partition: i32) {
        loop {
            let Some(lane) = self.interleave.get_mut(&partition) else { return };
            let side = match (lane.queued[0].front(), lane.queued[1].front()) {
                (Some(p), Some(o)) => usize::from(o.timestamp_ms < p.timestamp_ms),
                (Some(_), None) if lane.ended[1] => 0,
                (None, Some(_)) if lane.ended[0] => 1,
                _ => return,
            };
            let message = lane.queued[side].pop_front().expect("front exists");
            let source = if side == 0 { Source::Predictions } else { Source::Outcomes };
            self.take(source, partition, &message);
        }
    }

    fn take(&mut self, source: Source, partition: i32, message: &Queued) {
        let event_time_ms = match self.core.on_message(source, partition, message.offset, &message.payload) {
            Ok(Taken::Counted { event_time_ms }) => Some(event_time_ms),
            Ok(Taken::AlreadyStored) | Err(_) => None,
        };
        let first = self
            .first
            .entry((source, partition))
            .or_insert(FirstSeen { offset: message.offset, event_time_ms: None });
        if first.event_time_ms.is_none() {
            first.event_time_ms = event_time_ms;
        }
        if self.core.pending().messages() >= BATCH_MESSAGES {
            self.collect();
        }
    }

    /// Merges the recorded pane states into the selected windows holding them, as closing merges
    /// a window's partials.
    fn collect(&mut self) {
        let windows = self.core.settings().windows.clone();
        for (partition, model_id, model_version, segment, pane, state) in self.core.take_states() {
            for Window { start, length } in windows.for_model(&model_id).windows_containing(u64::from(pane)) {
                if !self.selection.contains(&model_id, &model_version, start) {
                    continue;
                }
                let key = RowKey {
                    model_id: model_id.clone(),
                    model_version: model_version.clone(),
                    segment: segment.clone(),
                    window_start: start,
                };
                let window = self.windows.entry(key).or_insert_with(|| ReplayedWindow {
                    partition,
                    length,
                    state: WindowState::default(),
                });
                if let Err(error) = window.state.merge(&state) {
                    self.error.get_or_insert(error);
                }
            }
        }
    }

    /// Ends every topic partition, takes what is still queued and returns the rebuilt windows.
    pub fn finish(mut self) -> Result<Replayed, StatsError> {
        let partitions: Vec<i32> = self.interleave.keys().copied().collect();
        for partition in partitions {
            self.end_of(Source::Predictions, partition);
            self.end_of(Source::Outcomes, partition);
        }
        self.collect();
        if let Some(error) = self.error {
            return Err(error);
        }
        let counts = self.core.take_counts();
        let newest_s = self
            .core
            .partitions()
            .into_iter()
            .filter_map(|p| Some((p, self.core.newest(Source::Predictions, p)?)))
            .collect();
        let settings = self.core.settings();
        Ok(Replayed {
            pane_seconds: settings.windows.pane_seconds(),
            lateness_seconds: settings.lateness_seconds,
            windows: self.windows,
            counts: ReplayCounts {
                messages: counts.messages,
                predictions: counts.predictions,
                outcomes: counts.outcomes,
                undecodable: counts.undecodable,
                late_events: counts.late_events,
                segment_overflow: counts.segment_overflow,
                join: counts.join,
            },
            first: self.first,
            log_starts: self.log_starts,
            newest_s,
        })
    }
}

/// The rebuilt windows of a replay, with what it read.
#[derive(Debug)]
pub struct Replayed {
    pane_seconds: u32,
    lateness_seconds: u32,
    pub windows: BTreeMap<RowKey, ReplayedWindow>,
    pub counts: ReplayCounts,
    first: BTreeMap<(Source, i32), FirstSeen>,
    log_starts: BTreeMap<(Source, i32), i64>,
    newest_s: BTreeMap<i32, u64>,
}

/// From which window start on a partition's windows were rebuilt from all their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// Window metrics and drift (predictions).
    pub metrics_from: u32,
    /// Window performance (predictions and outcomes).
    pub performance_from: u32,
}

impl Replayed {
    /// Whether the watermark of `partition` at the end of the replayed log passed the end of
    /// `window`: the monitor closes such a window at its next flush (an idle partition's may
    /// close earlier).
    pub fn closed_by_watermark(&self, partition: i32, window: Window) -> bool {
        self.newest_s
            .get(&partition)
            .is_some_and(|newest| window.end() + u64::from(self.lateness_seconds) <= *newest)
    }

    /// Where `partition`'s windows can be compared. A topic partition read from offset 0 covers
    /// everything. One whose head was deleted covers the windows starting after the pane its first
    /// retained message falls in, plus the allowed lateness (older messages could still have been on
    /// time there); a heuristic, as a first message that was itself late moves the cut too early.
    /// One emptied by retention covers nothing.
    pub fn coverage(&self, partition: i32) -> Coverage {
        let from = |source: Source| -> u32 {
            let first = self.first.get(&(source, partition));
            // Where the log starts: as the reader said, else where the replay started.
            let start =
                self.log_starts.get(&(source, partition)).copied().or(first.map(|f| f.offset)).unwrap_or(0);
            match first {
                _ if start == 0 => 0,
                Some(FirstSeen { event_time_ms: Some(ms), .. }) => {
                    let seconds = (ms / 1000).max(0) as u64 + u64::from(self.lateness_seconds);
                    let pane = u64::from(self.pane_seconds);
                    u32::try_from(seconds - seconds % pane + pane).unwrap_or(u32::MAX)
                }
                // Nothing retained, or nothing that decoded: no window is known complete.
                _ => u32::MAX,
            }
        };
        let metrics_from = from(Source::Predictions);
        Coverage { metrics_from, performance_from: metrics_from.max(from(Source::Outcomes)) }
    }
}

/// A window's rows as the monitor writes them at close.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRows {
    pub metrics: WindowMetricsRow,
    pub performance: WindowPerformanceRow,
    pub drift: Vec<FeatureDriftRow>,
}

/// A replayed window's rows against `reference` (none: no drift rows, as for a window closed
/// before its version had a reference).
pub fn window_rows(
    ctx: &RowContext<'_>,
    key: &RowKey,
    window: &ReplayedWindow,
    reference: Option<&ReferenceRef<'_>>,
) -> WindowRows {
    let reference_id = reference.map_or("", |r| r.id);
    let drift = reference.map(|r| rows::drift(ctx, key, &window.state, r).1).unwrap_or_default();
    WindowRows {
        metrics: rows::metrics(ctx, key, &window.state, reference_id, window.partition as u32),
        performance: rows::performance(ctx, key, &window.state, reference_id),
        drift,
    }
}

pub const WINDOW_METRICS: &str = "window_metrics";
pub const WINDOW_PERFORMANCE: &str = "window_performance";
pub const FEATURE_DRIFT: &str = "feature_drift";
/// Columns left out of the comparison: when a row was computed.
const IGNORED_COLUMNS: &[&str] = &["computed_at"];

/// One column of one row that differs; `column` is `(row)` when a whole row is missing on one
/// side, and `column.key` inside a JSON column.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub table: &'static str,
    pub key: RowKey,
    /// The feature, for `feature_drift`.
    pub feature: Option<String>,
    pub column: String,
    pub stored: String,
    pub recomputed: String,
}

/// Windows compared in one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub compared: u64,
    pub identical: u64,
    pub differing: u64,
}

/// What ClickHouse stores for one window.
#[derive(Debug, Clone, Copy)]
pub struct StoredWindow<'a> {
    pub metrics: &'a WindowMetricsRow,
    pub performance: Option<&'a WindowPerformanceRow>,
    pub drift: &'a [FeatureDriftRow],
}

/// The comparison of stored and recomputed windows, table by table.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// By table, in the order [`WINDOW_METRICS`], [`WINDOW_PERFORMANCE`], [`FEATURE_DRIFT`].
    pub tallies: [(&'static str, Tally); 3],
    pub differences: Vec<Difference>,
}

impl Comparison {
    pub fn new() -> Self {
        Self {
            tallies: [WINDOW_METRICS, WINDOW_PERFORMANCE, FEATURE_DRIFT].map(|t| (t, Tally::default())),
            differences: Vec::new(),
        }
    }

    pub fn is_identical(&self) -> bool {
        self.differences.is_empty()
    }

    /// Compares one stored window with its rows recomputed (`None`: the replay has no such
    /// window). `performance_compared`: whether the window's outcomes were all in the log.
    /// `feature_drift` counts only windows with drift rows on either side.
    pub fn window(
        &mut self,
        key: &RowKey,
        stored: StoredWindow<'_>,
        recomputed: Option<&WindowRows>,
        performance_compared: bool,
    ) {
        let before = self.differences.len();
        self.rows(WINDOW_METRICS, key, None, Some(stored.metrics), recomputed.map(|r| &r.metrics));
        self.tally(0, before);
        if performance_compared {
            let before = self.differences.len();
            self.rows(WINDOW_PERFORMANCE, key, None, stored.performance, recomputed.map(|r| &r.performance));
            self.tally(1, before);
        }
        let before = self.differences.len();
        let stored_drift: BTreeMap<&str, &FeatureDriftRow> =
            stored.drift.iter().map(|r| (r.feature.as_str(), r)).collect();
        let recomputed_drift: BTreeMap<&str, &FeatureDriftRow> =
            recomputed.map(|r| r.drift.iter().map(|d| (d.feature.as_str(), d)).collect()).unwrap_or_default();
        let features: BTreeSet<&str> = stored_drift.keys().chain(recomputed_drift.keys()).copied().collect();
        if features.is_empty() {
            // Not tested on either side (no reference yet, or the reference window itself).
            return;
        }
        for feature in features {
            self.rows(
                FEATURE_DRIFT,
                key,
                Some(feature),
                stored_drift.get(feature).copied(),
                recomputed_drift.get(feature).copied(),
            );
        }
        self.tally(2, before);
    }

    fn tally(&mut self, table: usize, differences_before: usize) {
        let tally = &mut self.tallies[table].1;
        tally.compared += 1;
        if self.differences.len() == differences_before {
            tally.identical += 1;
        } else {
            tally.differing += 1;
        }
    }

    fn rows<T: Serialize>(
        &mut self,
        table: &'static str,
        key: &RowKey,
        feature: Option<&str>,
        stored: Option<&T>,
        recomputed: Option<&T>,
    ) {
        let mut differ = |column: String, stored: String, recomputed: String| {
            self.differences.push(Difference {
                table,
                key: key.clone(),
                feature: feature.map(str::to_owned),
                column,
                stored,
                recomputed,
            });
        };
        let (stored, recomputed) = match (stored, recomputed) {
            (None, None) => return,
            (Some(_), None) => return differ("(row)".into(), "present".into(), "missing".into()),
            (None, Some(_)) => return differ("(row)".into(), "missing".into(), "present".into()),
            (Some(s), Some(r)) => (to_object(s), to_object(r)),
        };
        for (column, s) in &stored {
            if IGNORED_COLUMNS.contains(&column.as_str()) {
                continue;
            }
            let r = recomputed.get(column).unwrap_or(&Value::Null);
            compare_values(column, s, r, &mut differ);
        }
    }
}

fn to_object<T: Serialize>(row: &T) -> serde_json::Map<String, Value> {
    match serde_json::to_value(row) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// Compares two column values: numbers within the tolerance, strings holding a JSON object key
/// by key (a window's feature means, predicted label counts), anything else exactly.
fn compare_values(
    column: &str,
    stored: &Value,
    recomputed: &Value,
    differ: &mut impl FnMut(String, String, String),
) {
    if let (Value::String(s), Value::String(r)) = (stored, recomputed) {
        if s.starts_with('{') && r.starts_with('{') {
            if let (Ok(Value::Object(s)), Ok(Value::Object(r))) =
                (serde_json::from_str::<Value>(s), serde_json::from_str::<Value>(r))
            {
                let keys: BTreeSet<&String> = s.keys().chain(r.keys()).collect();
                for key in keys {
                    let (sv, rv) = (s.get(key).unwrap_or(&Value::Null), r.get(key).unwrap_or(&Value::Null));
                    compare_values(&format!("{column}.{key}"), sv, rv, differ);
                }
                return;
            }
        }
    }
    let same = match (stored, recomputed) {
        (Value::Number(s), Value::Number(r)) if s.is_f64() || r.is_f64() => match (s.as_f64(), r.as_f64()) {
            (Some(s), Some(r)) => same_number(s, r),
            _ => false,
        },
        _ => stored == recomputed,
    };
    if !same {
        differ(column.to_owned(), show(stored), show(recomputed));
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "NULL".into(),
        other => other.to_string(),
    }
}

/// Whether two floats agree within [`RELATIVE_TOLERANCE`] (or [`ABSOLUTE_TOLERANCE`] near zero):
/// merging partials in another order moves sums in their last bits.
pub fn same_number(a: f64, b: f64) -> bool {
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    let difference = (a - b).abs();
    difference <= ABSOLUTE_TOLERANCE || difference <= RELATIVE_TOLERANCE * a.abs().max(b.abs())
}

/// First bytes of an exported log file.
pub const LOG_FILE_MAGIC: &[u8; 8] = b"VIGILOG1";
/// Stands for a record without a Kafka timestamp.
const NO_TIMESTAMP: i64 = i64::MIN;

/// One record of an exported log file.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub payload: Vec<u8>,
}

/// Starts an exported log file.
pub fn write_header(out: &mut impl Write) -> io::Result<()> {
    out.write_all(LOG_FILE_MAGIC)
}

/// Appends one record: topic length (u16) and topic (UTF-8), partition (i32), offset (i64),
/// Kafka timestamp in ms (i64, `i64::MIN` for none), payload length (u32) and payload; integers
/// big-endian.
pub fn write_record(out: &mut impl Write, message: &RetainedMessage<'_>) -> io::Result<()> {
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} too long for the log file"));
    let topic_len = u16::try_from(message.topic.len()).map_err(|_| invalid("topic name"))?;
    let payload_len = u32::try_from(message.payload.len()).map_err(|_| invalid("payload"))?;
    out.write_all(&topic_len.to_be_bytes())?;
    out.write_all(message.topic.as_bytes())?;
    out.write_all(&message.partition.to_be_bytes())?;
    out.write_all(&message.offset.to_be_bytes())?;
    out.write_all(&message.timestamp_ms.unwrap_or(NO_TIMESTAMP).to_be_bytes())?;
    out.write_all(&payload_len.to_be_bytes())?;
    out.write_all(message.payload)
}

/// Checks an exported log file's first bytes.
pub fn read_header(input: &mut impl Read) -> io::Result<()> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != LOG_FILE_MAGIC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a vigil log file (no VIGILOG1 header)"));
    }
    Ok(())
}

/// The next record, or `None` at the end of the file (a record cut short is an error).
pub fn read_record(input: &mut impl Read) -> io::Result<Option<LogRecord>> {
    let mut topic_len = [0u8; 2];
    match input.read_exact(&mut topic_len) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let mut topic = vec![0u8; usize::from(u16::from_be_bytes(topic_len))];
    input.read_exact(&mut topic)?;
    let topic = String::from_utf8(topic)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "topic name is not UTF-8"))?;
    let mut fixed = [0u8; 24];
    input.read_exact(&mut fixed)?;
    let partition = i32::from_be_bytes(fixed[0..4].try_into().expect("4 bytes"));
    let offset = i64::from_be_bytes(fixed[4..12].try_into().expect("8 bytes"));
    let timestamp = i64::from_be_bytes(fixed[12..20].try_into().expect("8 bytes"));
    let payload_len = u32::from_be_bytes(fixed[20..24].try_into().expect("4 bytes"));
    let mut payload = vec![0u8; payload_len as usize];
    input.read_exact(&mut payload)?;
    Ok(Some(LogRecord {
        topic,
        partition,
        offset,
        timestamp_ms: (timestamp != NO_TIMESTAMP).then_some(timestamp),
        payload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Windowing;
    use vigil_events::{encode, OutcomeEvent, Prediction, PredictionEvent};

    const T0: i64 = 1_764_000_000_000;

    fn settings(segment_cap: usize) -> ReplaySettings {
        ReplaySettings {
            windows: Windowing::tumbling(60),
            lateness_seconds: 30,
            idle_timeout: None,
            segment_tags: vec!["country".into()],
            max_segments_per_model: segment_cap,
            join: crate::JoinSettings { horizon_seconds: 3_600, capacity: 1_000 },
            positive_label: "1".into(),
        }
    }

    fn prediction(i: usize, time_ms: i64) -> Vec<u8> {
        let country = ["DE", "US", "BR", "IN", "FR"][i % 5];
        encode(&PredictionEvent {
            prediction_id: format!("p{i}"),
            model_id: if i.is_multiple_of(4) { "b".into() } else { "a".into() },
            model_version: if i.is_multiple_of(3) { "v2".into() } else { "v1".into() },
            event_time_ms: time_ms,
            segment: [("country".to_owned(), country.to_owned())].into(),
            numeric_features: [("x".to_owned(), (i % 17) as f64 * 0.37)].into(),
            categorical_features: [("device".to_owned(), ["ios", "web", "android"][i % 3].to_owned())].into(),
            prediction: Prediction {
                label: Some((i % 2).to_string()),
                score: Some((i % 10) as f64 / 10.0),
                ..Default::default()
            },
            serving_latency_ms: Some((i % 7) as f64 + 0.5),
            ..Default::default()
        })
    }

    fn outcome(i: usize, time_ms: i64) -> Vec<u8> {
        encode(&OutcomeEvent {
            event_id: format!("o{i}"),
            prediction_id: format!("p{i}"),
            model_id: if i.is_multiple_of(4) { "b".into() } else { "a".into() },
            event_time_ms: time_ms,
            label: Some(((i / 2) % 2).to_string()),
            value: None,
        })
    }

    /// A log of one partition: predictions over four windows with a few late ones and some
    /// undecodable bytes, outcomes for two thirds of them (some before their prediction), each
    /// message with its Kafka timestamp.
    fn log() -> Vec<(Source, i64, Vec<u8>)> {
        let mut log = Vec::new();
        for i in 0..600 {
            let mut time = T0 + (i as i64) * 400;
            if i % 97 == 96 {
                time -= 150_000; // late: two windows back
            }
            let arrival = T0 + (i as i64) * 400;
            if i % 3 == 1 {
                log.push((Source::Outcomes, arrival - 1, outcome(i, time + 1_000)));
            }
            log.push((Source::Predictions, arrival, prediction(i, time)));
            if i % 3 == 2 {
                log.push((Source::Outcomes, arrival + 30_000, outcome(i, time + 30_000)));
            }
            if i.is_multiple_of(250) {
                log.push((Source::Predictions, arrival, b"not avro".to_vec()));
            }
        }
        log.sort_by_key(|(source, time, _)| (*time, slot(*source)));
        log
    }

    /// What the monitor does with the same log, taken in the same order: the pipeline's steps,
    /// a flush (partials) every `flush_every` messages, windows merged from the partials.
    fn live(
        log: &[(Source, i64, Vec<u8>)],
        settings: &ReplaySettings,
        flush_every: usize,
    ) -> BTreeMap<RowKey, WindowState> {
        let mut core = MonitorCore::new(settings.clone());
        let mut partials = Vec::new();
        let mut offsets = [0i64; 2];
        for (n, (source, _, payload)) in log.iter().enumerate() {
            let offset = offsets[slot(*source)];
            offsets[slot(*source)] += 1;
            let _ = core.on_message(*source, 0, offset, payload);
            if (n + 1).is_multiple_of(flush_every) || n + 1 == log.len() {
                partials.extend(core.pending().rows(["p", "o"], 0).unwrap());
                core.flushed();
            }
        }
        let mut windows: BTreeMap<RowKey, WindowState> = BTreeMap::new();
        // As closing does: each window merges the partials of its panes.
        for row in partials.into_iter().filter(|r| !r.state.is_empty()) {
            let state = WindowState::decode(&row.state).unwrap();
            for window in
                settings.windows.for_model(&row.model_id).windows_containing(u64::from(row.window_start))
            {
                let key = RowKey {
                    model_id: row.model_id.clone(),
                    model_version: row.model_version.clone(),
                    segment: row.segment.clone(),
                    window_start: window.start,
                };
                windows.entry(key).or_default().merge(&state).unwrap();
            }
        }
        windows
    }

    /// Feeds the log topic by topic (each in offset order), the two topics' messages arriving
    /// in chunks of `chunk`, as a reader sees them.
    fn replay(
        log: &[(Source, i64, Vec<u8>)],
        settings: &ReplaySettings,
        selection: Selection,
        chunk: usize,
    ) -> Replayed {
        let mut engine = Replay::new(settings.clone(), selection);
        let by_source = |s: Source| -> Vec<(i64, i64, &[u8])> {
            log.iter()
                .filter(|(source, ..)| *source == s)
                .enumerate()
                .map(|(o, (_, t, p))| (o as i64, *t, p.as_slice()))
                .collect()
        };
        let (predictions, outcomes) = (by_source(Source::Predictions), by_source(Source::Outcomes));
        let mut queues = [predictions.chunks(chunk), outcomes.chunks(chunk * 3)];
        let mut live = [true, true];
        while live.iter().any(|l| *l) {
            for (side, source) in [Source::Predictions, Source::Outcomes].into_iter().enumerate() {
                match queues[side].next() {
                    Some(messages) => {
                        for (offset, timestamp, payload) in messages {
                            engine.push(LogMessage {
                                source,
                                partition: 0,
                                offset: *offset,
                                timestamp_ms: Some(*timestamp),
                                payload,
                            });
                        }
                    }
                    None if live[side] => {
                        live[side] = false;
                        engine.end_of(source, 0);
                    }
                    None => {}
                }
            }
        }
        engine.finish().unwrap()
    }

    fn assert_same_states(live: &BTreeMap<RowKey, WindowState>, replayed: &Replayed) {
        assert_eq!(live.keys().collect::<Vec<_>>(), replayed.windows.keys().collect::<Vec<_>>());
        let ctx = RowContext {
            window_seconds: 60,
            config_hash: "h",
            positive_label: "1",
            drift_policy: &monitor_drift_policy(),
            computed_at: 0,
        };
        let reference_state = live.values().next().unwrap();
        let reference = ReferenceRef { id: "upload:r", state: reference_state };
        let mut comparison = Comparison::new();
        for (key, state) in live {
            let window = &replayed.windows[key];
            let (s, r) = (state, &window.state);
            assert_eq!(
                (s.events, s.late_events, &s.predicted_labels, &s.categorical),
                (r.events, r.late_events, &r.predicted_labels, &r.categorical),
                "{key:?}"
            );
            assert_eq!(
                s.performance.as_ref().map(|p| (p.labeled, &p.confusion)),
                r.performance.as_ref().map(|p| (p.labeled, &p.confusion)),
                "{key:?}"
            );
            let live_rows = window_rows(
                &ctx,
                key,
                &ReplayedWindow { partition: 0, length: 60, state: state.clone() },
                Some(&reference),
            );
            let replayed_rows = window_rows(&ctx, key, window, Some(&reference));
            assert!(!live_rows.drift.is_empty());
            let stored = StoredWindow {
                metrics: &live_rows.metrics,
                performance: Some(&live_rows.performance),
                drift: &live_rows.drift,
            };
            comparison.window(key, stored, Some(&replayed_rows), true);
        }
        assert!(comparison.is_identical(), "{:#?}", comparison.differences);
    }

    #[test]
    fn replaying_the_log_rebuilds_the_states_the_monitors_partials_merge_into() {
        let log = log();
        let settings = settings(3);
        let live = live(&log, &settings, 97);
        let replayed = replay(&log, &settings, Selection::default(), 41);
        assert_same_states(&live, &replayed);
        let counts = &replayed.counts;
        assert_eq!((counts.predictions, counts.outcomes, counts.undecodable), (600, 400, 3));
        assert!(counts.late_events > 0 && counts.segment_overflow > 0, "{counts:?}");
        assert_eq!(counts.join.matched, 400, "outcomes before and after their predictions all match");
        let segments: BTreeSet<&str> = replayed.windows.keys().map(|k| k.segment.as_str()).collect();
        assert!(segments.contains("country=__other__"), "{segments:?}");
        let labeled: u64 = replayed
            .windows
            .iter()
            .filter(|(k, _)| k.segment.is_empty())
            .map(|(_, w)| w.state.performance.as_ref().map_or(0, |p| p.labeled))
            .sum();
        assert_eq!(labeled, 400);
        assert_eq!(replayed.coverage(0), Coverage { metrics_from: 0, performance_from: 0 });
        // The last prediction is at T0 + 239.6 s: with 30 s lateness windows up to T0 + 180 s closed.
        let minute = |start| Window { start, length: 60 };
        assert!(
            replayed.closed_by_watermark(0, minute(1_764_000_120))
                && !replayed.closed_by_watermark(0, minute(1_764_000_180))
        );
        assert!(!replayed.closed_by_watermark(1, minute(0)), "a partition without predictions");
    }

    #[test]
    fn sliding_and_per_model_windows_replay_as_the_monitor_merges_their_panes() {
        let log = log();
        let mut settings = settings(3);
        // Model a: 2-minute windows every 30 s; the others: tumbling 90 s. Panes are 30 s.
        let per_model = std::collections::HashMap::from([(
            "a".to_owned(),
            crate::windowing::WindowSpec { length: 120, slide: 30 },
        )]);
        settings.windows = Windowing::new(crate::windowing::WindowSpec::tumbling(90), per_model);
        let live = live(&log, &settings, 97);
        let replayed = replay(&log, &settings, Selection::default(), 41);
        assert_same_states(&live, &replayed);
        let a: Vec<_> =
            replayed.windows.iter().filter(|(k, _)| k.model_id == "a" && k.segment.is_empty()).collect();
        assert!(
            a.len() >= 8 && a.iter().all(|(k, w)| w.length == 120 && k.window_start % 30 == 0),
            "{:?}",
            a.iter().map(|(k, _)| k.window_start).collect::<Vec<_>>()
        );
        let in_windows: u64 = a.iter().map(|(_, w)| w.state.events).sum();
        let tumbling = replay(&log, &self::settings(3), Selection::default(), 41);
        let predictions_of_a: u64 = tumbling
            .windows
            .iter()
            .filter(|(k, _)| k.model_id == "a" && k.segment.is_empty())
            .map(|(_, w)| w.state.events)
            .sum();
        assert!(predictions_of_a > 100);
        assert_eq!(in_windows, 4 * predictions_of_a, "every prediction is in 120 / 30 = 4 windows");
        let b_starts: BTreeSet<u32> =
            replayed.windows.keys().filter(|k| k.model_id != "a").map(|k| k.window_start).collect();
        assert!(b_starts.iter().all(|s| s % 90 == 0), "{b_starts:?}");
    }

    #[test]
    fn a_selection_keeps_only_its_windows_and_changes_none_of_them() {
        let log = log();
        let settings = settings(3);
        let selection = Selection {
            model: Some("a".into()),
            version: Some("v1".into()),
            from: Some(1_764_000_060),
            to: Some(1_764_000_180),
        };
        let live: BTreeMap<RowKey, WindowState> = live(&log, &settings, 1_000)
            .into_iter()
            .filter(|(k, _)| selection.contains(&k.model_id, &k.model_version, k.window_start))
            .collect();
        let replayed = replay(&log, &settings, selection, 7);
        assert!(live.len() > 3, "{:?}", live.keys());
        assert_same_states(&live, &replayed);
    }

    #[test]
    fn a_tampered_row_is_reported_by_table_key_and_column() {
        let log = log();
        let replayed = replay(&log, &settings(3), Selection::default(), 50);
        let ctx = RowContext {
            window_seconds: 60,
            config_hash: "h",
            positive_label: "1",
            drift_policy: &monitor_drift_policy(),
            computed_at: 7,
        };
        let (key, window) = replayed.windows.iter().find(|(k, _)| k.segment.is_empty()).unwrap();
        let rows = window_rows(&ctx, key, window, None);
        let mut metrics = rows.metrics.clone();
        metrics.score_mean = metrics.score_mean.map(|m| m + 0.25);
        metrics.computed_at = 99;
        let mut nudged = rows.performance.clone();
        nudged.brier = nudged.brier.map(|b| b * (1.0 + 1e-12));
        let mut means: BTreeMap<String, f64> = serde_json::from_str(&metrics.feature_means).unwrap();
        *means.get_mut("x").unwrap() += 1.0;
        metrics.feature_means = serde_json::to_string(&means).unwrap();
        let mut comparison = Comparison::new();
        comparison.window(
            key,
            StoredWindow { metrics: &metrics, performance: Some(&nudged), drift: &[] },
            Some(&rows),
            true,
        );
        let mut columns: Vec<(&str, &str)> =
            comparison.differences.iter().map(|d| (d.table, d.column.as_str())).collect();
        columns.sort();
        assert_eq!(
            columns,
            vec![(WINDOW_METRICS, "feature_means.x"), (WINDOW_METRICS, "score_mean")],
            "computed_at is ignored, 1e-12 is within tolerance"
        );
        assert_eq!(
            comparison.tallies.map(|(_, t)| (t.compared, t.differing)),
            [(1, 1), (1, 0), (0, 0)],
            "no drift rows on either side"
        );
        let mut missing = Comparison::new();
        missing.window(
            key,
            StoredWindow { metrics: &rows.metrics, performance: Some(&rows.performance), drift: &[] },
            None,
            true,
        );
        assert_eq!(missing.differences[0].column, "(row)");
        assert_eq!(missing.differences[0].recomputed, "missing");
    }

    #[test]
    fn a_log_without_its_head_covers_only_later_windows() {
        let log = log();
        let settings = settings(100);
        let mut engine = Replay::new(settings.clone(), Selection::default());
        for (offset, (source, time, payload)) in
            log.iter().enumerate().filter(|(_, (s, ..))| *s == Source::Predictions).skip(200)
        {
            engine.push(LogMessage {
                source: *source,
                partition: 0,
                offset: offset as i64,
                timestamp_ms: Some(*time),
                payload,
            });
        }
        engine.log_start(Source::Outcomes, 0, 0);
        engine.log_start(Source::Predictions, 1, 5);
        let replayed = engine.finish().unwrap();
        let coverage = replayed.coverage(0);
        assert!(
            coverage.metrics_from > 1_764_000_060 && coverage.metrics_from.is_multiple_of(60),
            "{coverage:?}"
        );
        assert_eq!(replayed.coverage(1).metrics_from, u32::MAX, "emptied by retention");
        assert_eq!(replayed.coverage(2).metrics_from, 0, "never written");
    }

    #[test]
    fn floats_agree_within_the_tolerance() {
        assert!(same_number(0.1 + 0.2, 0.3));
        assert!(same_number(1e-17, -1e-17));
        assert!(same_number(f64::NAN, f64::NAN));
        assert!(!same_number(1.0, 1.0 + 1e-8));
        assert!(!same_number(0.0, 1e-10));
    }

    #[test]
    fn log_files_round_trip_and_reject_other_files() {
        let mut file = Vec::new();
        write_header(&mut file).unwrap();
        let messages = [
            RetainedMessage {
                topic: "vigil.predictions.v1",
                partition: 3,
                offset: 41,
                timestamp_ms: Some(T0),
                payload: b"abc",
            },
            RetainedMessage {
                topic: "vigil.outcomes.v1",
                partition: 0,
                offset: 0,
                timestamp_ms: None,
                payload: b"",
            },
        ];
        for m in &messages {
            write_record(&mut file, m).unwrap();
        }
        let mut input = file.as_slice();
        read_header(&mut input).unwrap();
        let first = read_record(&mut input).unwrap().unwrap();
        assert_eq!(
            (
                first.topic.as_str(),
                first.partition,
                first.offset,
                first.timestamp_ms,
                first.payload.as_slice()
            ),
            ("vigil.predictions.v1", 3, 41, Some(T0), &b"abc"[..])
        );
        assert_eq!(read_record(&mut input).unwrap().unwrap().timestamp_ms, None);
        assert!(read_record(&mut input).unwrap().is_none());
        assert!(read_header(&mut &b"PAR1...."[..]).is_err());
        let cut = &file[..file.len() - 1];
        let mut input = cut;
        read_header(&mut input).unwrap();
        read_record(&mut input).unwrap();
        assert!(read_record(&mut input).is_err(), "a record cut short");
    }
}
