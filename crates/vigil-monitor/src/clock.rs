//! When windows close. Event time only: a partition's watermark is the newest event time seen on
//! it minus the allowed lateness, and a window closes once the watermark passes its end. A model
//! lives on one partition (predictions are keyed by model id), so its windows follow its own
//! partition's clock. An event for a window that already closed is late: it still counts, and
//! the window is closed again (recomputed) with it. Windows of different lengths (per model,
//! sliding or tumbling: `windowing.rs`) share a partition's clock and close in order of their end.
//!
//! Idle partitions: a partition whose event time has not moved for `idle_after` of wall-clock
//! time closes its windows as if event time had kept pace with the wall clock since. Only
//! closing uses that; whether an event is late stays a matter of event time alone, so a replay
//! decides lateness the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::windowing::{Window, WindowSpec};

/// An open window, ordered by its end so the due ones come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ByEnd {
    end: u64,
    window: Window,
}

impl From<Window> for ByEnd {
    fn from(window: Window) -> Self {
        Self { end: window.end(), window }
    }
}

#[derive(Debug, Default)]
struct PartitionClock {
    newest_event_s: Option<u64>,
    /// Windows with partials that still need (re)closing.
    open: BTreeSet<ByEnd>,
    /// When the newest event time last moved forward.
    advanced_at: Option<Instant>,
    /// When the watermark passed the end of each open window, for the close latency.
    due_since: BTreeMap<ByEnd, Instant>,
}

impl PartitionClock {
    fn watermark(&self, lateness_seconds: u32) -> Option<u64> {
        self.newest_event_s.map(|s| s.saturating_sub(u64::from(lateness_seconds)))
    }

    /// The watermark for closing: on a partition quiet for `idle_after` of wall clock, event
    /// time is taken to have kept pace with the wall clock since it last moved.
    fn watermark_at(&self, now: Instant, lateness_seconds: u32, idle_after: Option<Duration>) -> Option<u64> {
        let newest = self.newest_event_s?;
        let idle = match (idle_after, self.advanced_at) {
            (Some(after), Some(at)) if now.saturating_duration_since(at) >= after => {
                now.saturating_duration_since(at).as_secs()
            }
            _ => 0,
        };
        Some((newest + idle).saturating_sub(u64::from(lateness_seconds)))
    }
}

#[derive(Debug)]
pub struct WindowClock {
    lateness_seconds: u32,
    idle_after: Option<Duration>,
    partitions: BTreeMap<i32, PartitionClock>,
    /// Whether a window became due since the last [`Self::take_closable_at`].
    became_due: bool,
}

impl WindowClock {
    pub fn new(lateness_seconds: u32) -> Self {
        Self { lateness_seconds, idle_after: None, partitions: BTreeMap::new(), became_due: false }
    }

    /// Lets partitions quiet for `idle_after` (wall clock) close their windows.
    pub fn with_idle_timeout(mut self, idle_after: Option<Duration>) -> Self {
        self.idle_after = idle_after;
        self
    }

    /// Notes an event at `event_time_ms` in the windows `spec` cuts; returns whether it is late
    /// (the first of those windows to end had closed before it arrived).
    pub fn observe(&mut self, partition: i32, spec: WindowSpec, event_time_ms: i64) -> bool {
        let seconds = (event_time_ms / 1000) as u64;
        let clock = self.partitions.entry(partition).or_default();
        let mut windows = spec.windows_containing(seconds);
        let first = windows.next().expect("every second is in a window");
        let late = clock.watermark(self.lateness_seconds).is_some_and(|w| first.end() <= w);
        clock.open.insert(first.into());
        for window in windows {
            clock.open.insert(window.into());
        }
        if clock.newest_event_s.is_none_or(|s| seconds > s) {
            clock.newest_event_s = Some(seconds);
            let now = Instant::now();
            clock.advanced_at = Some(now);
            let watermark = seconds.saturating_sub(u64::from(self.lateness_seconds));
            for w in clock.open.iter().take_while(|w| w.end <= watermark) {
                clock.due_since.entry(*w).or_insert(now);
                self.became_due = true;
            }
        }
        late
    }

    /// Whether `window` waits to be closed (or closed again) by the watermark.
    pub fn is_open(&self, partition: i32, window: Window) -> bool {
        self.partitions.get(&partition).is_some_and(|c| c.open.contains(&window.into()))
    }

    /// After a restart: the partition's event time had reached at least `newest_event_s` (the
    /// newest stored pane's start), so reopened windows close without waiting for new traffic,
    /// and an idle partition's wall clock starts now.
    pub fn resume(&mut self, partition: i32, newest_event_s: u64) {
        let clock = self.partitions.entry(partition).or_default();
        if clock.newest_event_s.is_none() {
            clock.newest_event_s = Some(newest_event_s);
            clock.advanced_at = Some(Instant::now());
        }
    }

    /// A window found stored but not closed (after a restart).
    pub fn reopen(&mut self, partition: i32, window: Window) {
        self.partitions.entry(partition).or_default().open.insert(window.into());
    }

    /// Takes every open window whose end the watermark has passed, in order of their end per
    /// partition, with the time since it became due (for idle partitions: since it was taken).
    pub fn take_closable(&mut self) -> Vec<(i32, Window, Duration)> {
        self.take_closable_at(Instant::now())
    }

    /// [`Self::take_closable`] as of `now` (tests pass a later instant instead of waiting).
    pub fn take_closable_at(&mut self, now: Instant) -> Vec<(i32, Window, Duration)> {
        self.became_due = false;
        let mut due = Vec::new();
        let (lateness, idle_after) = (self.lateness_seconds, self.idle_after);
        for (&partition, clock) in &mut self.partitions {
            let Some(watermark) = clock.watermark_at(now, lateness, idle_after) else { continue };
            while let Some(first) = clock.open.first().copied().filter(|w| w.end <= watermark) {
                clock.open.remove(&first);
                let since = clock.due_since.remove(&first).unwrap_or(now);
                due.push((partition, first.window, now.duration_since(since)));
            }
        }
        due
    }

    /// Whether event time made a window due since closable windows were last taken: the driver
    /// flushes early then, so the window closes within its close latency, not a flush interval.
    pub fn became_due(&self) -> bool {
        self.became_due
    }

    /// Each partition's closing watermark (s) as of `now`.
    pub fn watermarks_at(&self, now: Instant) -> Vec<(i32, u64)> {
        self.partitions
            .iter()
            .filter_map(|(&p, c)| Some((p, c.watermark_at(now, self.lateness_seconds, self.idle_after)?)))
            .collect()
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

    const MINUTE: WindowSpec = WindowSpec { length: 60, slide: 60 };

    fn windows(due: Vec<(i32, Window, Duration)>) -> Vec<(i32, u32)> {
        due.into_iter().map(|(p, w, _)| (p, w.start)).collect()
    }

    #[test]
    fn an_idle_partition_closes_its_windows_by_the_wall_clock() {
        let second = WindowSpec::tumbling(1);
        let mut clock = WindowClock::new(0).with_idle_timeout(Some(Duration::from_millis(1)));
        clock.observe(0, second, 100_500);
        std::thread::sleep(Duration::from_millis(1_100));
        assert_eq!(
            windows(clock.take_closable()),
            vec![(0, 100)],
            "a second of wall clock moved the idle partition's watermark"
        );
        assert!(!clock.observe(0, second, 100_600), "lateness is still judged by event time alone");
        let mut strict = WindowClock::new(0);
        strict.observe(0, second, 100_500);
        std::thread::sleep(Duration::from_millis(1_100));
        assert!(strict.take_closable().is_empty(), "without an idle timeout only event time closes");
    }

    #[test]
    fn due_windows_report_how_long_they_waited() {
        let mut clock = WindowClock::new(0);
        clock.observe(0, MINUTE, 1_000);
        clock.observe(0, MINUTE, 61_000);
        std::thread::sleep(Duration::from_millis(20));
        let due = clock.take_closable();
        assert_eq!(windows(due.clone()), vec![(0, 0)]);
        assert!(due[0].2 >= Duration::from_millis(20), "{due:?}");
    }

    #[test]
    fn a_window_closes_when_its_partition_passes_end_plus_lateness() {
        let mut clock = WindowClock::new(30);
        assert!(!clock.observe(0, MINUTE, 10_000));
        assert!(!clock.observe(0, MINUTE, 70_000));
        assert!(clock.take_closable().is_empty(), "watermark 40 s < end 60 s");
        clock.observe(0, MINUTE, 90_000);
        assert_eq!(windows(clock.take_closable()), vec![(0, 0)]);
        assert!(clock.take_closable().is_empty(), "closed windows are taken once");
    }

    #[test]
    fn partitions_keep_their_own_clocks() {
        let mut clock = WindowClock::new(0);
        clock.observe(0, MINUTE, 1_000);
        clock.observe(1, MINUTE, 1_000);
        clock.observe(1, MINUTE, 125_000);
        assert_eq!(windows(clock.take_closable()), vec![(1, 0)]);
    }

    #[test]
    fn an_event_for_a_closed_window_is_late_and_reopens_it() {
        let mut clock = WindowClock::new(0);
        clock.observe(0, MINUTE, 1_000);
        clock.observe(0, MINUTE, 121_000);
        assert_eq!(windows(clock.take_closable()), vec![(0, 0)]);
        assert!(clock.observe(0, MINUTE, 2_000), "late");
        assert!(!clock.observe(0, MINUTE, 122_000), "the current window is not late");
        assert_eq!(windows(clock.take_closable()), vec![(0, 0)], "closed again with the late event");
    }

    #[test]
    fn stored_unclosed_windows_close_once_the_partition_moves_on() {
        let mut clock = WindowClock::new(0);
        clock.reopen(2, Window { start: 0, length: 60 });
        assert!(clock.take_closable().is_empty(), "no event time yet on partition 2");
        clock.observe(2, MINUTE, 300_000);
        assert_eq!(windows(clock.take_closable()), vec![(2, 0)]);
    }

    #[test]
    fn a_resumed_partition_closes_reopened_windows_without_new_traffic() {
        let mut clock = WindowClock::new(30);
        clock.reopen(1, Window { start: 0, length: 60 });
        clock.reopen(1, Window { start: 60, length: 60 });
        clock.resume(1, 120);
        assert_eq!(
            windows(clock.take_closable()),
            vec![(1, 0)],
            "watermark 90: [0, 60) closes, [60, 120) waits"
        );
        clock.resume(1, 0);
        assert!(
            !clock.observe(1, MINUTE, 70_000),
            "resume only sets a clock that has none; 70 s is on time for [60, 120)"
        );
    }

    #[test]
    fn sliding_and_tumbling_windows_share_a_partition_and_close_by_their_end() {
        let sliding = WindowSpec { length: 180, slide: 60 };
        let mut clock = WindowClock::new(0);
        clock.observe(0, sliding, 130_000);
        clock.observe(0, MINUTE, 150_000);
        assert!(clock.is_open(0, Window { start: 0, length: 180 }));
        assert!(clock.is_open(0, Window { start: 120, length: 180 }));
        clock.observe(0, MINUTE, 239_000);
        let due: Vec<_> = clock.take_closable().into_iter().map(|(_, w, _)| (w.start, w.length)).collect();
        assert_eq!(due, vec![(0, 180), (120, 60)], "both end at 180; [60, 240) and [120, 300) wait");
        assert!(clock.is_open(0, Window { start: 60, length: 180 }));
        assert!(
            clock.observe(0, sliding, 130_500),
            "[0, 180) had closed: late, though [60, 240) still holds it"
        );
        assert_eq!(windows(clock.take_closable()), vec![(0, 0)], "[0, 180) closes again with it");
        clock.observe(0, MINUTE, 400_000);
        assert!(clock.observe(0, sliding, 130_600), "every window holding 130 s has closed");
    }
}
