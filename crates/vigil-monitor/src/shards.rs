//! The monitor core on every core: one [`MonitorCore`] per shard, a partition always in the same
//! shard (`partition mod shards`), and each batch of messages taken by the shards in parallel.
//! Partitions share no state (a model lives on one partition; segments are admitted per model),
//! so a shard's numbers are those one core would compute for its partitions, and the union over
//! shards is what one core computes for all of them.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use vigil_events::DecodeError;
use vigil_store::WindowPartialRow;

use crate::monitor_core::{CoreCounts, CoreSettings, MonitorCore};
use crate::partials::Source;
use crate::window::StateCodecError;
use crate::windowing::Window;

/// Most shards (threads) the monitor uses for one batch.
pub const MAX_SHARDS: usize = 16;

/// Messages read but not yet taken, their bytes in one buffer.
#[derive(Debug, Default)]
pub struct Batch {
    messages: Vec<Queued>,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Queued {
    source: Source,
    partition: i32,
    offset: i64,
    payload: std::ops::Range<usize>,
    key: Option<std::ops::Range<usize>>,
}

/// A message the core could not use, for the dead-letter topic.
#[derive(Debug)]
pub struct Rejected<'a> {
    pub source: Source,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub error: DecodeError,
}

impl Batch {
    pub fn push(&mut self, source: Source, partition: i32, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        let mut copy = |bytes: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(bytes);
            start..self.bytes.len()
        };
        let key = key.map(&mut copy);
        let payload = copy(payload);
        self.messages.push(Queued { source, partition, offset, payload, key });
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn clear(&mut self) {
        self.messages.clear();
        self.bytes.clear();
    }
}

pub struct ShardedCore {
    shards: Vec<MonitorCore>,
}

impl ShardedCore {
    pub fn new(settings: CoreSettings, shards: usize) -> Self {
        let shards = shards.clamp(1, MAX_SHARDS);
        Self { shards: (0..shards).map(|_| MonitorCore::new(settings.clone())).collect() }
    }

    fn shard(&self, partition: i32) -> usize {
        partition.rem_euclid(self.shards.len() as i32) as usize
    }

    fn shard_of(&mut self, partition: i32) -> &mut MonitorCore {
        let i = self.shard(partition);
        &mut self.shards[i]
    }

    /// Takes every message of `batch`, each shard its partitions' messages in order, the shards
    /// in parallel; calls `rejected` for each message that did not decode (in batch order), then
    /// empties the batch.
    pub fn take(&mut self, batch: &mut Batch, mut rejected: impl FnMut(Rejected<'_>)) {
        let n = self.shards.len();
        let mut lanes: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, m) in batch.messages.iter().enumerate() {
            lanes[m.partition.rem_euclid(n as i32) as usize].push(i);
        }
        let messages = &batch.messages;
        let bytes = &batch.bytes;
        let take = |core: &mut MonitorCore, lane: &[usize]| -> Vec<(usize, DecodeError)> {
            let mut errors = Vec::new();
            for &i in lane {
                let m = &messages[i];
                if let Err(error) =
                    core.on_message(m.source, m.partition, m.offset, &bytes[m.payload.clone()])
                {
                    errors.push((i, error));
                }
            }
            errors
        };
        let busy = lanes.iter().filter(|l| !l.is_empty()).count();
        let mut errors: Vec<(usize, DecodeError)> = if busy <= 1 {
            self.shards.iter_mut().zip(&lanes).flat_map(|(core, lane)| take(core, lane)).collect()
        } else {
            std::thread::scope(|scope| {
                let mut shards = self.shards.iter_mut().zip(&lanes).filter(|(_, l)| !l.is_empty());
                let (first, first_lane) = shards.next().expect("busy > 1");
                let others: Vec<_> =
                    shards.map(|(core, lane)| scope.spawn(move || take(core, lane))).collect();
                let mut errors = take(first, first_lane);
                for handle in others {
                    errors.extend(handle.join().expect("a shard panicked"));
                }
                errors
            })
        };
        errors.sort_by_key(|(i, _)| *i);
        for (i, error) in errors {
            let m = &messages[i];
            rejected(Rejected {
                source: m.source,
                partition: m.partition,
                offset: m.offset,
                key: m.key.clone().map(|r| &bytes[r]),
                payload: &bytes[m.payload.clone()],
                error,
            });
        }
        batch.clear();
    }

    /// A writer schema for Confluent-framed messages, for every shard.
    pub fn add_writer_schema(&mut self, id: u32, schema: std::sync::Arc<vigil_events::WriterSchema>) {
        self.shards.iter_mut().for_each(|core| core.add_writer_schema(id, schema.clone()));
    }

    pub fn knows_writer_schema(&self, id: u32) -> bool {
        self.shards[0].knows_writer_schema(id)
    }

    /// See [`MonitorCore::rejoin`].
    pub fn rejoin(&mut self, source: Source, partition: i32, payload: &[u8]) {
        self.shard_of(partition).rejoin(source, partition, payload);
    }

    /// See [`MonitorCore::rejoined`]; summed over shards.
    pub fn rejoined(&mut self) -> (usize, usize) {
        self.shards.iter_mut().map(MonitorCore::rejoined).fold((0, 0), |(p, o), (a, b)| (p + a, o + b))
    }

    /// See [`MonitorCore::resume`]: each shard gets its partitions' positions, panes and windows,
    /// and every stored segment (segments are per model, and a model's partition is not known
    /// up front).
    pub fn resume(
        &mut self,
        stored: HashMap<(Source, i32), i64>,
        segments: Vec<(String, String)>,
        newest_panes: HashMap<i32, u64>,
        reopen: Vec<(i32, Window)>,
    ) {
        let n = self.shards.len();
        let of = |p: i32| p.rem_euclid(n as i32) as usize;
        for (i, core) in self.shards.iter_mut().enumerate() {
            core.resume(
                stored.iter().filter(|((_, p), _)| of(*p) == i).map(|(k, v)| (*k, *v)).collect(),
                segments.clone(),
                newest_panes.iter().filter(|(p, _)| of(**p) == i).map(|(p, w)| (*p, *w)),
                reopen.iter().filter(|(p, _)| of(*p) == i).copied(),
            );
        }
    }

    pub fn revoke(&mut self, revoked: &[i32]) {
        self.shards.iter_mut().for_each(|core| core.revoke(revoked));
    }

    /// Every shard's pending partials as rows for one INSERT.
    pub fn pending_rows(
        &self,
        topics: [&str; 2],
        written_at: u32,
    ) -> Result<Vec<WindowPartialRow>, StateCodecError> {
        let mut rows = Vec::new();
        for core in &self.shards {
            rows.extend(core.pending().rows(topics, written_at)?);
        }
        Ok(rows)
    }

    pub fn positions(&self) -> Vec<(Source, i32, i64)> {
        self.shards.iter().flat_map(|core| core.pending().positions()).collect()
    }

    pub fn panes_with_outcomes(&self) -> BTreeSet<(i32, String, u32)> {
        self.shards.iter().flat_map(|core| core.pending().panes_with_outcomes()).collect()
    }

    pub fn pending_messages(&self) -> usize {
        self.shards.iter().map(|core| core.pending().messages()).sum()
    }

    pub fn nothing_pending(&self) -> bool {
        self.shards.iter().all(|core| core.pending().is_empty())
    }

    pub fn flushed(&mut self) {
        self.shards.iter_mut().for_each(MonitorCore::flushed);
    }

    pub fn closable(&mut self, now: Instant) -> Vec<(i32, Window, Duration)> {
        self.shards.iter_mut().flat_map(|core| core.closable(now)).collect()
    }

    pub fn window_due(&self) -> bool {
        self.shards.iter().any(MonitorCore::window_due)
    }

    pub fn is_open(&self, partition: i32, window: Window) -> bool {
        self.shards[self.shard(partition)].is_open(partition, window)
    }

    pub fn watermarks(&self, now: Instant) -> Vec<(i32, u64)> {
        self.shards.iter().flat_map(|core| core.watermarks(now)).collect()
    }

    pub fn newest(&self, source: Source, partition: i32) -> Option<u64> {
        self.shards[self.shard(partition)].newest(source, partition)
    }

    pub fn take_counts(&mut self) -> CoreCounts {
        let mut total = CoreCounts::default();
        for core in &mut self.shards {
            total.absorb(core.take_counts());
        }
        total
    }

    pub fn waiting(&self) -> (usize, usize) {
        self.shards.iter().map(MonitorCore::waiting).fold((0, 0), |(p, o), (a, b)| (p + a, o + b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::WindowState;
    use crate::{JoinSettings, Windowing};
    use vigil_events::{encode, OutcomeEvent, Prediction, PredictionEvent};

    const T0: i64 = 1_764_000_000_000;

    fn settings() -> CoreSettings {
        CoreSettings {
            windows: Windowing::tumbling(60),
            lateness_seconds: 10,
            idle_timeout: None,
            segment_tags: vec!["country".into()],
            max_segments_per_model: 3,
            join: JoinSettings { horizon_seconds: 3_600, capacity: 1_000 },
            positive_label: "1".into(),
        }
    }

    /// A log over 5 partitions: predictions of 10 models (a model per partition, as keyed),
    /// outcomes for a third of them, and some undecodable messages.
    fn log() -> Vec<(Source, i32, Vec<u8>)> {
        let mut log = Vec::new();
        for i in 0..3_000usize {
            let model = i % 10;
            let partition = (model % 5) as i32;
            let time = T0 + (i as i64 % 180) * 1_000;
            log.push((
                Source::Predictions,
                partition,
                encode(&PredictionEvent {
                    prediction_id: format!("p{i}"),
                    model_id: format!("m{model}"),
                    model_version: "v1".into(),
                    event_time_ms: time,
                    segment: [("country".to_owned(), ["DE", "US", "FR", "BR", "IN"][i % 5].to_owned())]
                        .into(),
                    numeric_features: [("x".to_owned(), (i % 13) as f64)].into(),
                    prediction: Prediction {
                        label: Some((i % 2).to_string()),
                        score: Some(0.3),
                        ..Default::default()
                    },
                    ..Default::default()
                }),
            ));
            if i % 3 == 0 {
                let outcome = OutcomeEvent {
                    event_id: format!("o{i}"),
                    prediction_id: format!("p{i}"),
                    model_id: format!("m{model}"),
                    event_time_ms: time + 5_000,
                    label: Some("1".into()),
                    value: None,
                };
                log.push((Source::Outcomes, partition, encode(&outcome)));
            }
            if i % 500 == 0 {
                log.push((Source::Predictions, partition, b"junk".to_vec()));
            }
        }
        log
    }

    /// Rows by (partition, model, version, segment, pane) with their decoded states as JSON.
    fn run(shards: usize, batch_size: usize) -> (Vec<String>, Vec<(i32, i64)>, u64) {
        let mut core = ShardedCore::new(settings(), shards);
        let mut batch = Batch::default();
        let mut offsets: HashMap<(Source, i32), i64> = HashMap::new();
        let mut rejected = Vec::new();
        let mut rows = Vec::new();
        let log = log();
        for (n, (source, partition, payload)) in log.iter().enumerate() {
            let offset = offsets.entry((*source, *partition)).or_default();
            batch.push(*source, *partition, *offset, Some(b"key"), payload);
            *offset += 1;
            if batch.len() == batch_size || n + 1 == log.len() {
                core.take(&mut batch, |r| rejected.push((r.partition, r.offset)));
            }
            if (n + 1) % 700 == 0 || n + 1 == log.len() {
                rows.extend(core.pending_rows(["p", "o"], 0).unwrap());
                core.flushed();
            }
        }
        // Flushes split panes differently with other batch sizes: compare the merged panes.
        let mut panes: std::collections::BTreeMap<String, WindowState> = Default::default();
        for r in rows.into_iter().filter(|r| !r.state.is_empty()) {
            let key = format!(
                "{} {} {} {} {}",
                r.source_partition, r.model_id, r.model_version, r.segment, r.window_start
            );
            panes.entry(key).or_default().merge(&WindowState::decode(&r.state).unwrap()).unwrap();
        }
        let rows: Vec<String> = panes
            .into_iter()
            .map(|(k, state)| format!("{k} {}", serde_json::to_string(&state).unwrap()))
            .collect();
        rejected.sort();
        (rows, rejected, core.take_counts().predictions)
    }

    #[test]
    fn shards_compute_what_one_core_computes() {
        let one = run(1, 64);
        assert_eq!(one.2, 3_000);
        assert_eq!(one.1.len(), 6, "every undecodable message is handed back");
        for (shards, batch) in [(2, 64), (3, 1), (4, 1_000)] {
            let many = run(shards, batch);
            assert_eq!(many.1, one.1, "{shards} shards: the same rejected messages");
            assert_eq!(many.2, one.2);
            assert!(many.0 == one.0, "{shards} shards, batches of {batch}: partials differ from one core's");
        }
    }

    #[test]
    fn a_partition_stays_in_its_shard() {
        let core = ShardedCore::new(settings(), 3);
        assert_eq!((core.shard(0), core.shard(4), core.shard(5)), (0, 1, 2));
        assert_eq!(ShardedCore::new(settings(), 100).shards.len(), MAX_SHARDS);
        assert_eq!(ShardedCore::new(settings(), 0).shards.len(), 1);
    }
}
