//! Pending window counts between two flushes, kept per Kafka partition so a flush can store each
//! partition's position with its counts, and a revoked partition's work can be dropped whole.

use std::collections::{BTreeMap, HashMap};

use vigil_store::WindowCountRow;

#[derive(Debug, Default)]
struct PartitionBatch {
    /// The offset after the last message taken from this partition.
    next_offset: i64,
    /// model -> version -> window start (s) -> events. Nested so the hot path looks up by `&str`
    /// and allocates only for a new model or version.
    counts: HashMap<String, HashMap<String, BTreeMap<u32, u64>>>,
}

#[derive(Debug)]
pub struct PendingCounts {
    window_seconds: u32,
    partitions: BTreeMap<i32, PartitionBatch>,
    messages: usize,
}

impl PendingCounts {
    pub fn new(window_seconds: u32) -> Self {
        assert!(window_seconds > 0, "window_seconds is validated at config load");
        Self { window_seconds, partitions: BTreeMap::new(), messages: 0 }
    }

    /// The tumbling window an event time (ms since the epoch, validated non-negative) falls in.
    pub fn window_start(&self, event_time_ms: i64) -> u32 {
        let seconds = (event_time_ms / 1000) as u64;
        (seconds - seconds % u64::from(self.window_seconds)) as u32
    }

    pub fn record_event(&mut self, partition: i32, offset: i64, model: &str, version: &str, event_time_ms: i64) {
        let window = self.window_start(event_time_ms);
        let batch = self.advance(partition, offset);
        let versions = match batch.counts.get_mut(model) {
            Some(v) => v,
            None => batch.counts.entry(model.to_owned()).or_default(),
        };
        let windows = match versions.get_mut(version) {
            Some(w) => w,
            None => versions.entry(version.to_owned()).or_default(),
        };
        *windows.entry(window).or_insert(0) += 1;
    }

    /// A message that adds no count (dead-lettered) still moves the partition's position.
    pub fn record_other(&mut self, partition: i32, offset: i64) {
        self.advance(partition, offset);
    }

    fn advance(&mut self, partition: i32, offset: i64) -> &mut PartitionBatch {
        self.messages += 1;
        let batch = self.partitions.entry(partition).or_default();
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
        for p in partitions {
            self.partitions.remove(p);
        }
    }

    /// The next offset per partition once the rows from [`Self::rows`] are stored.
    pub fn positions(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.partitions.iter().map(|(p, b)| (*p, b.next_offset))
    }

    /// One row per (partition, model, version, window); a partition with no counts gets one
    /// zero row so its position is stored all the same.
    pub fn rows(&self, topic: &str, written_at: u32) -> Vec<WindowCountRow> {
        let mut rows = Vec::new();
        for (&partition, batch) in &self.partitions {
            let row = |model: &str, version: &str, window_start: u32, events: u64| WindowCountRow {
                model_id: model.to_owned(),
                model_version: version.to_owned(),
                window_start,
                window_seconds: self.window_seconds,
                events,
                source_topic: topic.to_owned(),
                source_partition: partition as u32,
                source_end_offset: batch.next_offset,
                written_at,
            };
            let before = rows.len();
            for (model, versions) in &batch.counts {
                for (version, windows) in versions {
                    rows.extend(windows.iter().map(|(w, n)| row(model, version, *w, *n)));
                }
            }
            if rows.len() == before {
                rows.push(row("", "", 0, 0));
            }
        }
        rows
    }

    pub fn clear(&mut self) {
        self.partitions.clear();
        self.messages = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fall_in_tumbling_event_time_windows() {
        let counts = PendingCounts::new(60);
        assert_eq!(counts.window_start(0), 0);
        assert_eq!(counts.window_start(59_999), 0);
        assert_eq!(counts.window_start(60_000), 60);
        assert_eq!(counts.window_start(1_764_000_123_456), 1_764_000_120);
    }

    #[test]
    fn rows_carry_counts_and_each_partition_position() {
        let mut counts = PendingCounts::new(60);
        counts.record_event(0, 10, "fraud", "v1", 1_000);
        counts.record_event(0, 11, "fraud", "v1", 2_000);
        counts.record_event(0, 12, "fraud", "v2", 61_000);
        counts.record_other(1, 7);
        assert_eq!(counts.messages(), 4);

        let mut rows = counts.rows("t", 99);
        rows.sort_by_key(|r| (r.source_partition, r.model_version.clone()));
        let summary: Vec<_> = rows
            .iter()
            .map(|r| (r.source_partition, r.model_id.as_str(), r.model_version.as_str(), r.window_start, r.events, r.source_end_offset))
            .collect();
        assert_eq!(summary, vec![(0, "fraud", "v1", 0, 2, 13), (0, "fraud", "v2", 60, 1, 13), (1, "", "", 0, 0, 8)]);
    }

    #[test]
    fn revoked_partitions_are_forgotten() {
        let mut counts = PendingCounts::new(60);
        counts.record_event(0, 1, "a", "v1", 0);
        counts.record_event(3, 1, "b", "v1", 0);
        counts.revoke(&[3]);
        assert_eq!(counts.positions().collect::<Vec<_>>(), vec![(0, 2)]);
    }
}
