//! Which windows an event falls in. Every model has a window length and a slide: tumbling when
//! they are equal, sliding (overlapping) when the slide is shorter. Windows start at multiples
//! of their slide (seconds since the Unix epoch), so every monitor and every replay cuts the
//! same windows.
//!
//! State is kept per *pane*: the largest span that divides every configured length and slide
//! (their greatest common divisor). A pane belongs to one or more windows of each model, so a
//! window's state is the merge of its panes' states, and an event is added once however many
//! windows it falls in. With the defaults (60 s tumbling) a pane is a window.

use std::collections::HashMap;

/// One window: `length` seconds from `start` (seconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: u32,
    pub length: u32,
}

impl Window {
    pub fn end(self) -> u64 {
        u64::from(self.start) + u64::from(self.length)
    }
}

/// One model's windows: `length` seconds long, one starting every `slide` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowSpec {
    pub length: u32,
    pub slide: u32,
}

impl WindowSpec {
    pub fn tumbling(length: u32) -> Self {
        Self { length, slide: length }
    }

    /// Starts of the windows holding event second `t`, oldest first.
    pub fn starts_containing(self, t: u64) -> impl Iterator<Item = u32> {
        let slide = u64::from(self.slide);
        let newest = t - t % slide;
        // Windows [s, s + length) with s <= t < s + length.
        let oldest = (t + 1).saturating_sub(u64::from(self.length)).div_ceil(slide) * slide;
        (oldest..=newest).step_by(self.slide as usize).map(|s| s as u32)
    }

    /// The windows holding event second `t`, oldest first.
    pub fn windows_containing(self, t: u64) -> impl Iterator<Item = Window> {
        let length = self.length;
        self.starts_containing(t).map(move |start| Window { start, length })
    }

    /// Whether this spec cuts `window`.
    pub fn has(self, window: Window) -> bool {
        window.length == self.length && window.start.is_multiple_of(self.slide)
    }

    pub fn is_sliding(self) -> bool {
        self.slide < self.length
    }
}

/// The window specs of every model, and the pane they share.
#[derive(Debug, Clone, PartialEq)]
pub struct Windowing {
    pane: u32,
    default: WindowSpec,
    per_model: HashMap<String, WindowSpec>,
}

impl Windowing {
    /// `default` for every model without its own entry in `per_model`. Lengths and slides are
    /// validated at config load (positive, slide <= length).
    pub fn new(default: WindowSpec, per_model: HashMap<String, WindowSpec>) -> Self {
        let pane = per_model
            .values()
            .chain(std::iter::once(&default))
            .flat_map(|s| [s.length, s.slide])
            .fold(0, gcd);
        assert!(pane > 0, "window lengths are validated at config load");
        Self { pane, default, per_model }
    }

    pub fn tumbling(length: u32) -> Self {
        Self::new(WindowSpec::tumbling(length), HashMap::new())
    }

    pub fn for_model(&self, model_id: &str) -> WindowSpec {
        if self.per_model.is_empty() {
            return self.default;
        }
        self.per_model.get(model_id).copied().unwrap_or(self.default)
    }

    /// Seconds per pane, the unit partial states are stored in.
    pub fn pane_seconds(&self) -> u32 {
        self.pane
    }

    /// The longest window of any model.
    pub fn longest(&self) -> u32 {
        self.per_model.values().map(|s| s.length).fold(self.default.length, u32::max)
    }

    /// A stable description for the config hash: the length alone for the default (one tumbling
    /// length), as before windows could slide or differ per model.
    pub fn canonical(&self) -> String {
        if self.per_model.is_empty() && !self.default.is_sliding() {
            return self.default.length.to_string();
        }
        let mut models: Vec<_> =
            self.per_model.iter().map(|(m, s)| format!("{m}={}/{}", s.length, s.slide)).collect();
        models.sort();
        format!("{}/{};{}", self.default.length, self.default.slide, models.join(","))
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tumbling_window_holds_each_second_once() {
        let spec = WindowSpec::tumbling(60);
        assert_eq!(spec.starts_containing(0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(spec.starts_containing(59).collect::<Vec<_>>(), vec![0]);
        assert_eq!(spec.starts_containing(60).collect::<Vec<_>>(), vec![60]);
        assert!(!spec.is_sliding());
    }

    #[test]
    fn sliding_windows_overlap_by_length_over_slide() {
        let spec = WindowSpec { length: 300, slide: 60 };
        assert_eq!(spec.starts_containing(1_000).collect::<Vec<_>>(), vec![720, 780, 840, 900, 960]);
        assert_eq!(
            spec.starts_containing(30).collect::<Vec<_>>(),
            vec![0],
            "no window starts before the epoch"
        );
        assert_eq!(spec.starts_containing(299).collect::<Vec<_>>(), vec![0, 60, 120, 180, 240]);
        for t in [0u64, 59, 60, 299, 300, 12_345] {
            for s in spec.starts_containing(t) {
                assert!(u64::from(s) <= t && t < u64::from(s) + 300, "{t} in [{s}, {})", s + 300);
                assert!(spec.has(Window { start: s, length: 300 }));
            }
        }
    }

    #[test]
    fn the_pane_divides_every_length_and_slide() {
        let per_model = HashMap::from([
            ("fraud".to_owned(), WindowSpec { length: 3_600, slide: 900 }),
            ("ads".to_owned(), WindowSpec::tumbling(90)),
        ]);
        let w = Windowing::new(WindowSpec::tumbling(60), per_model);
        assert_eq!(w.pane_seconds(), 30);
        assert_eq!(w.for_model("fraud"), WindowSpec { length: 3_600, slide: 900 });
        assert_eq!(w.for_model("other"), WindowSpec::tumbling(60));
        assert_eq!(w.longest(), 3_600);
        assert_eq!(Windowing::tumbling(60).pane_seconds(), 60, "the default pane is the window");
    }
}
