//! When windows close. Event time only: a partition's watermark is the newest event time seen on
//! it minus the allowed lateness, and a window closes once the watermark passes its end. A model
//! lives on one partition (predictions are keyed by model id), so its windows follow its own
//! partition's clock. An event for a window that already closed is late: it still counts, and
//! the window is closed again (recomputed) with it.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
struct PartitionClock {
    newest_event_s: Option<u64>,
    /// Windows with partials that still need (re)closing.
    open: BTreeSet<u32>,
}

#[derive(Debug)]
pub struct WindowClock {
    window_seconds: u32,
    lateness_seconds: u32,
    partitions: BTreeMap<i32, PartitionClock>,
}

impl WindowClock {
    pub fn new(window_seconds: u32, lateness_seconds: u32) -> Self {
        Self { window_seconds, lateness_seconds, partitions: BTreeMap::new() }
    }

    fn watermark(&self, clock: &PartitionClock) -> Option<u64> {
        clock.newest_event_s.map(|s| s.saturating_sub(u64::from(self.lateness_seconds)))
    }

    fn is_closed(&self, clock: &PartitionClock, window_start: u32) -> bool {
        self.watermark(clock).is_some_and(|w| u64::from(window_start) + u64::from(self.window_seconds) <= w)
    }

    /// Notes an event of `window_start` at `event_time_ms`; returns whether it is late (its window
    /// had closed before it arrived).
    pub fn observe(&mut self, partition: i32, window_start: u32, event_time_ms: i64) -> bool {
        let mut clock = self.partitions.remove(&partition).unwrap_or_default();
        let late = self.is_closed(&clock, window_start);
        clock.open.insert(window_start);
        let seconds = (event_time_ms / 1000) as u64;
        clock.newest_event_s = Some(clock.newest_event_s.map_or(seconds, |s| s.max(seconds)));
        self.partitions.insert(partition, clock);
        late
    }

    /// Whether `window_start` waits to be closed (or closed again) by the watermark.
    pub fn is_open(&self, partition: i32, window_start: u32) -> bool {
        self.partitions.get(&partition).is_some_and(|c| c.open.contains(&window_start))
    }

    /// A window found stored but not closed (after a restart).
    pub fn reopen(&mut self, partition: i32, window_start: u32) {
        self.partitions.entry(partition).or_default().open.insert(window_start);
    }

    /// Takes every open window whose end the watermark has passed, oldest first per partition.
    pub fn take_closable(&mut self) -> Vec<(i32, u32)> {
        let mut due = Vec::new();
        let (window, lateness) = (u64::from(self.window_seconds), u64::from(self.lateness_seconds));
        for (&partition, clock) in &mut self.partitions {
            let Some(watermark) = clock.newest_event_s.map(|s| s.saturating_sub(lateness)) else { continue };
            let ready: Vec<u32> = clock.open.iter().copied().take_while(|w| u64::from(*w) + window <= watermark).collect();
            for w in ready {
                clock.open.remove(&w);
                due.push((partition, w));
            }
        }
        due
    }

    /// Forgets revoked partitions; their new owner finds their unclosed windows in the store.
    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_closes_when_its_partition_passes_end_plus_lateness() {
        let mut clock = WindowClock::new(60, 30);
        assert!(!clock.observe(0, 0, 10_000));
        assert!(!clock.observe(0, 60, 70_000));
        assert!(clock.take_closable().is_empty(), "watermark 40 s < end 60 s");
        clock.observe(0, 60, 90_000);
        assert_eq!(clock.take_closable(), vec![(0, 0)]);
        assert!(clock.take_closable().is_empty(), "closed windows are taken once");
    }

    #[test]
    fn partitions_keep_their_own_clocks() {
        let mut clock = WindowClock::new(60, 0);
        clock.observe(0, 0, 1_000);
        clock.observe(1, 0, 1_000);
        clock.observe(1, 120, 125_000);
        assert_eq!(clock.take_closable(), vec![(1, 0)]);
    }

    #[test]
    fn an_event_for_a_closed_window_is_late_and_reopens_it() {
        let mut clock = WindowClock::new(60, 0);
        clock.observe(0, 0, 1_000);
        clock.observe(0, 120, 121_000);
        assert_eq!(clock.take_closable(), vec![(0, 0)]);
        assert!(clock.observe(0, 0, 2_000), "late");
        assert!(!clock.observe(0, 120, 122_000), "the current window is not late");
        assert_eq!(clock.take_closable(), vec![(0, 0)], "closed again with the late event");
    }

    #[test]
    fn stored_unclosed_windows_close_once_the_partition_moves_on() {
        let mut clock = WindowClock::new(60, 0);
        clock.reopen(2, 0);
        assert!(clock.take_closable().is_empty(), "no event time yet on partition 2");
        clock.observe(2, 300, 300_000);
        assert_eq!(clock.take_closable(), vec![(2, 0)]);
    }
}
