//! `monitor.window_seconds` / `monitor.slide_seconds` and their per-model replacements in
//! `[monitor.models.<model id>]`. How windows are cut: `crates/vigil-monitor/src/windowing.rs`.

use std::collections::HashMap;

use vigil_monitor::{WindowSpec, Windowing};

use super::MonitorSection;

/// The longest window: a week.
const MAX_WINDOW_SECONDS: u32 = 7 * 86_400;

/// Reports every invalid window setting with its key.
pub(super) fn check(m: &MonitorSection, errors: &mut Vec<String>) {
    check_spec("monitor", m.window_seconds, m.slide_seconds, errors);
    for (model, o) in &m.models {
        if o.window_seconds.is_some() || o.slide_seconds.is_some() {
            let length = o.window_seconds.unwrap_or(m.window_seconds);
            check_spec(
                &format!("monitor.models.{model}"),
                length,
                o.slide_seconds.or(o.window_seconds.map(|_| length)).or(m.slide_seconds),
                errors,
            );
        }
    }
}

fn check_spec(section: &str, length: u32, slide: Option<u32>, errors: &mut Vec<String>) {
    let slide = slide.unwrap_or(length);
    if slide == 0 || !86_400u32.is_multiple_of(slide) {
        let key = if slide == length { "window_seconds" } else { "slide_seconds" };
        errors.push(format!("{section}.{key}: {slide} must divide a day evenly (e.g. 60, 300, 3600), so windows line up across days"));
        return;
    }
    if length < slide || !length.is_multiple_of(slide) || length > MAX_WINDOW_SECONDS {
        errors.push(format!(
            "{section}.window_seconds: {length} must be a multiple of the slide ({slide} s) and at most {MAX_WINDOW_SECONDS} (a week)"
        ));
    }
}

fn spec(length: u32, slide: Option<u32>) -> WindowSpec {
    WindowSpec { length, slide: slide.unwrap_or(length) }
}

/// The validated windows (after [`check`] passed). A model that sets only `window_seconds` gets
/// tumbling windows of that length.
pub(super) fn windowing(m: &MonitorSection) -> Windowing {
    let per_model: HashMap<String, WindowSpec> = m
        .models
        .iter()
        .filter(|(_, o)| o.window_seconds.is_some() || o.slide_seconds.is_some())
        .map(|(model, o)| {
            let length = o.window_seconds.unwrap_or(m.window_seconds);
            (
                model.clone(),
                spec(length, o.slide_seconds.or(o.window_seconds.map(|_| length)).or(m.slide_seconds)),
            )
        })
        .collect();
    Windowing::new(spec(m.window_seconds, m.slide_seconds), per_model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::ModelPolicySection;

    fn errors(m: &MonitorSection) -> Vec<String> {
        let mut errors = Vec::new();
        check(m, &mut errors);
        errors
    }

    #[test]
    fn models_get_their_own_tumbling_or_sliding_windows() {
        let mut m = MonitorSection { window_seconds: 300, slide_seconds: Some(60), ..Default::default() };
        m.models
            .insert("fraud".into(), ModelPolicySection { window_seconds: Some(3_600), ..Default::default() });
        m.models.insert("ads".into(), ModelPolicySection { slide_seconds: Some(150), ..Default::default() });
        m.models.insert(
            "thresholds_only".into(),
            ModelPolicySection { max_p99_ms: Some(9.0), ..Default::default() },
        );
        assert!(errors(&m).is_empty(), "{:?}", errors(&m));
        let w = windowing(&m);
        assert_eq!(
            w.for_model("fraud"),
            WindowSpec::tumbling(3_600),
            "a model's own length is tumbling unless it slides too"
        );
        assert_eq!(w.for_model("ads"), WindowSpec { length: 300, slide: 150 });
        assert_eq!(w.for_model("thresholds_only"), WindowSpec { length: 300, slide: 60 });
        assert_eq!(w.pane_seconds(), 30);
    }

    #[test]
    fn bad_windows_are_named_by_their_key() {
        let mut m = MonitorSection { window_seconds: 7, ..Default::default() };
        m.models.insert(
            "fraud".into(),
            ModelPolicySection { window_seconds: Some(600), slide_seconds: Some(900), ..Default::default() },
        );
        m.models.insert(
            "ads".into(),
            ModelPolicySection { window_seconds: Some(700), slide_seconds: Some(300), ..Default::default() },
        );
        let errors = errors(&m);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("monitor.window_seconds: 7 must divide a day"), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.starts_with(
                "monitor.models.fraud.window_seconds: 600 must be a multiple of the slide (900 s)"
            )),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.starts_with("monitor.models.ads.window_seconds: 700")), "{errors:?}");
        let sliding = MonitorSection { window_seconds: 600, slide_seconds: Some(7), ..Default::default() };
        assert!(super::tests::errors(&sliding)[0].starts_with("monitor.slide_seconds: 7"));
    }
}
