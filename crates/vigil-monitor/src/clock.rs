//! When windows close. Event time only: a partition's watermark is the newest event time seen on
//! it minus the allowed lateness, and a window closes once the watermark passes its end. A model
//! lives on one partition (predictions are keyed by model id), so its windows follow its own
//! partition's clock. An event for a window that already closed is late: it still counts, and
//! the window is closed again (recomputed) with it.
//!
//! Idle partitions: a partition whose event time has not moved for `idle_after` of wall-clock
//! time closes its windows as if event time had kept pace with the wall clock since. Only
//! closing uses that; whether an event is late stays a matter of event time alone, so a replay
//! decides lateness the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct PartitionClock {
    newest_event_s: Option<u64>,
    /// Windows with partials that still need (re)closing.
    open: BTreeSet<u32>,
    /// When the newest event time last moved forward.
    advanced_at: Option<Instant>,
    /// When the watermark passed the end of each open window, for the close latency.
    due_since: BTreeMap<u32, Instant>,
}

#[derive(Debug)]
pub struct WindowClock {
    window_seconds: u32,
    lateness_seconds: u32,
    idle_after: Option<Duration>,
    partitions: BTreeMap<i32, PartitionClock>,
}

impl WindowClock {
    pub fn new(window_seconds: u32, lateness_seconds: u32) -> Self {
        Self { window_seconds, lateness_seconds, idle_after: None, partitions: BTreeMap::new() }
    }

    /// Lets partitions quiet for `idle_after` (wall clock) close their windows.
    pub fn with_idle_timeout(mut self, idle_after: Option<Duration>) -> Self {
        self.idle_after = idle_after;
        self
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
        if clock.newest_event_s.is_none_or(|s| seconds > s) {
            clock.newest_event_s = Some(seconds);
            let now = Instant::now();
            clock.advanced_at = Some(now);
            self.note_due(&mut clock, seconds, now);
        }
        self.partitions.insert(partition, clock);
        late
    }

    /// Remembers when each open window's end fell behind a watermark at `event_s`.
    fn note_due(&self, clock: &mut PartitionClock, event_s: u64, now: Instant) {
        let watermark = event_s.saturating_sub(u64::from(self.lateness_seconds));
        let window = u64::from(self.window_seconds);
        for w in clock.open.iter().take_while(|w| u64::from(**w) + window <= watermark) {
            clock.due_since.entry(*w).or_insert(now);
        }
    }

    /// Whether `window_start` waits to be closed (or closed again) by the watermark.
    pub fn is_open(&self, partition: i32, window_start: u32) -> bool {
        self.partitions.get(&partition).is_some_and(|c| c.open.contains(&window_start))
    }

    /// A window found stored but not closed (after a restart).
    pub fn reopen(&mut self, partition: i32, window_start: u32) {
        self.partitions.entry(partition).or_default().open.insert(window_start);
    }

    /// Takes every open window whose end the watermark has passed, oldest first per partition,
    /// with the time since it became due (for idle partitions: since it was taken).
    pub fn take_closable(&mut self) -> Vec<(i32, u32, Duration)> {
        let mut due = Vec::new();
        let (window, lateness) = (u64::from(self.window_seconds), u64::from(self.lateness_seconds));
        let now = Instant::now();
        for (&partition, clock) in &mut self.partitions {
            let Some(newest) = clock.newest_event_s else { continue };
            let idle = match (self.idle_after, clock.advanced_at) {
                (Some(after), Some(at)) if now.duration_since(at) >= after => now.duration_since(at).as_secs(),
                _ => 0,
            };
            let watermark = (newest + idle).saturating_sub(lateness);
            let ready: Vec<u32> = clock.open.iter().copied().take_while(|w| u64::from(*w) + window <= watermark).collect();
            for w in ready {
                clock.open.remove(&w);
                let since = clock.due_since.remove(&w).unwrap_or(now);
                due.push((partition, w, now.duration_since(since)));
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

    fn windows(due: Vec<(i32, u32, Duration)>) -> Vec<(i32, u32)> {
        due.into_iter().map(|(p, w, _)| (p, w)).collect()
    }

    #[test]
    fn an_idle_partition_closes_its_windows_by_the_wall_clock() {
        let mut clock = WindowClock::new(1, 0).with_idle_timeout(Some(Duration::from_millis(1)));
        clock.observe(0, 100, 100_500);
        std::thread::sleep(Duration::from_millis(1_100));
        assert_eq!(windows(clock.take_closable()), vec![(0, 100)], "a second of wall clock moved the idle partition's watermark");
        assert!(!clock.observe(0, 100, 100_600), "lateness is still judged by event time alone");
        let mut strict = WindowClock::new(1, 0);
        strict.observe(0, 100, 100_500);
        std::thread::sleep(Duration::from_millis(1_100));
        assert!(strict.take_closable().is_empty(), "without an idle timeout only event time closes");
    }

    #[test]
    fn due_windows_report_how_long_they_waited() {
        let mut clock = WindowClock::new(60, 0);
        clock.observe(0, 0, 1_000);
        clock.observe(0, 60, 61_000);
        std::thread::sleep(Duration::from_millis(20));
        let due = clock.take_closable();
        assert_eq!(windows(due.clone()), vec![(0, 0)]);
        assert!(due[0].2 >= Duration::from_millis(20), "{due:?}");
    }

    #[test]
    fn a_window_closes_when_its_partition_passes_end_plus_lateness() {
        let mut clock = WindowClock::new(60, 30);
        assert!(!clock.observe(0, 0, 10_000));
        assert!(!clock.observe(0, 60, 70_000));
        assert!(clock.take_closable().is_empty(), "watermark 40 s < end 60 s");
        clock.observe(0, 60, 90_000);
        assert_eq!(windows(clock.take_closable()), vec![(0, 0)]);
        assert!(clock.take_closable().is_empty(), "closed windows are taken once");
    }

    #[test]
    fn partitions_keep_their_own_clocks() {
        let mut clock = WindowClock::new(60, 0);
        clock.observe(0, 0, 1_000);
        clock.observe(1, 0, 1_000);
        clock.observe(1, 120, 125_000);
        assert_eq!(windows(clock.take_closable()), vec![(1, 0)]);
    }

    #[test]
    fn an_event_for_a_closed_window_is_late_and_reopens_it() {
        let mut clock = WindowClock::new(60, 0);
        clock.observe(0, 0, 1_000);
        clock.observe(0, 120, 121_000);
        assert_eq!(windows(clock.take_closable()), vec![(0, 0)]);
        assert!(clock.observe(0, 0, 2_000), "late");
        assert!(!clock.observe(0, 120, 122_000), "the current window is not late");
        assert_eq!(windows(clock.take_closable()), vec![(0, 0)], "closed again with the late event");
    }

    #[test]
    fn stored_unclosed_windows_close_once_the_partition_moves_on() {
        let mut clock = WindowClock::new(60, 0);
        clock.reopen(2, 0);
        assert!(clock.take_closable().is_empty(), "no event time yet on partition 2");
        clock.observe(2, 300, 300_000);
        assert_eq!(windows(clock.take_closable()), vec![(2, 0)]);
    }
}
