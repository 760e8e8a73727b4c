//! Synthetic traffic: a seeded generator of plausible predictions (pure), and a rate-limited
//! loop that publishes them through the SDK like a serving app would.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vigil_events::{OutcomeEvent, Prediction, PredictionEvent};
use vigil_sdk::{Producer, SdkError};

/// Deterministic for a seed, so a test can regenerate exactly what it sent.
pub struct Synthetic {
    rng: SmallRng,
    models: Vec<String>,
    versions: Vec<String>,
    features: Vec<String>,
    sequence: u64,
    run_id: u64,
    drift: Option<Drift>,
    labels: Option<Labels>,
    /// Its own stream, so turning outcomes on leaves the predictions of a seed unchanged.
    label_rng: SmallRng,
    /// Outcomes generated but not yet due, in due order (a fixed delay keeps them sorted).
    outcomes: VecDeque<OutcomeEvent>,
}

/// Ground truth for a share of the predictions, observed `delay_ms` after each (event time).
/// The truth follows the model's score on the *undrifted* inputs, so a drifted version (its
/// inputs shifted by a broken upstream) also loses accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Labels {
    pub rate: f64,
    pub delay_ms: i64,
}

/// Input drift for one model version: its first `features` numeric features shift by `shift`
/// (in standard deviations) once switched on, as a canary fed by a changed upstream might.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    pub model: String,
    pub version: String,
    pub features: usize,
    pub shift: f64,
    pub active: bool,
}

const DEVICES: [&str; 3] = ["ios", "android", "web"];
const COUNTRIES: [&str; 4] = ["DE", "US", "BR", "IN"];

impl Synthetic {
    pub fn new(seed: u64, models: Vec<String>, versions: Vec<String>, features: usize) -> Self {
        assert!(!models.is_empty() && !versions.is_empty(), "at least one model and version");
        Self {
            rng: SmallRng::seed_from_u64(seed),
            models,
            versions,
            features: (0..features).map(|i| format!("f{i:02}")).collect(),
            sequence: 0,
            run_id: seed,
            drift: None,
            labels: None,
            label_rng: SmallRng::seed_from_u64(seed ^ 0x6c61_6265_6c73),
            outcomes: VecDeque::new(),
        }
    }

    /// Generates outcomes for a share of the predictions; see [`Synthetic::due_outcomes`].
    pub fn with_labels(mut self, labels: Option<Labels>) -> Self {
        self.labels = labels;
        self
    }

    /// Takes the outcomes whose event time is at or before `now_ms`.
    pub fn due_outcomes(&mut self, now_ms: i64) -> Vec<OutcomeEvent> {
        let due = self.outcomes.iter().take_while(|o| o.event_time_ms <= now_ms).count();
        self.outcomes.drain(..due).collect()
    }

    /// Sets (or clears) the drift to apply; see [`Synthetic::set_drift_active`].
    pub fn with_drift(mut self, drift: Option<Drift>) -> Self {
        self.drift = drift;
        self
    }

    pub fn set_drift_active(&mut self, active: bool) {
        if let Some(d) = &mut self.drift {
            d.active = active;
        }
    }

    pub fn next_prediction(&mut self, event_time_ms: i64) -> PredictionEvent {
        self.sequence += 1;
        let model = &self.models[self.rng.random_range(0..self.models.len())];
        let version = &self.versions[self.rng.random_range(0..self.versions.len())];
        let shift = match &self.drift {
            Some(d) if d.active && d.model == *model && d.version == *version => Some((d.features, d.shift)),
            _ => None,
        };
        let (mut logit, mut true_logit) = (0.0, 0.0);
        let mut numeric_features = BTreeMap::new();
        for (i, name) in self.features.iter().enumerate() {
            let mut x = standard_normal(&mut self.rng);
            if i < 3 {
                true_logit += x;
            }
            if let Some((n, by)) = shift {
                if i < n {
                    x += by;
                }
            }
            if i < 3 {
                logit += x;
            }
            numeric_features.insert(name.clone(), x);
        }
        let score = 1.0 / (1.0 + (-logit).exp());
        let prediction_id = format!("p-{:016x}-{}", self.run_id, self.sequence);
        if let Some(labels) = self.labels {
            if self.label_rng.random::<f64>() < labels.rate {
                let truth = self.label_rng.random::<f64>() < 1.0 / (1.0 + (-true_logit).exp());
                self.outcomes.push_back(OutcomeEvent {
                    event_id: format!("o-{:016x}-{}", self.run_id, self.sequence),
                    prediction_id: prediction_id.clone(),
                    model_id: model.clone(),
                    event_time_ms: event_time_ms + labels.delay_ms,
                    label: Some(if truth { "1" } else { "0" }.to_owned()),
                    value: None,
                });
            }
        }
        let device = DEVICES[self.rng.random_range(0..DEVICES.len())];
        let country = COUNTRIES[self.rng.random_range(0..COUNTRIES.len())];
        PredictionEvent {
            event_id: format!("{:016x}-{}", self.run_id, self.sequence),
            prediction_id,
            model_id: model.clone(),
            model_version: version.clone(),
            event_time_ms,
            segment: BTreeMap::from([("country".to_owned(), country.to_owned())]),
            numeric_features,
            categorical_features: BTreeMap::from([("device".to_owned(), device.to_owned())]),
            prediction: Prediction {
                label: Some(if score >= 0.5 { "1" } else { "0" }.to_owned()),
                probabilities: None,
                score: Some(score),
                value: None,
            },
            serving_latency_ms: Some(1.0 + 4.0 * self.rng.random::<f64>()),
        }
    }
}

/// Box-Muller; good enough for synthetic features.
fn standard_normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Events per second; 0 sends as fast as the producer accepts.
    pub rate: u64,
    pub duration: Duration,
    /// Stop after this many events, if set.
    pub max_events: Option<u64>,
    pub progress_every: Duration,
    /// When the generator's drift (if any) switches on, counted from the start.
    pub drift_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadReport {
    pub sent: u64,
    pub outcomes_sent: u64,
    pub dropped_queue_full: u64,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn events_per_second(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Publishes at `spec.rate` in 10 ms slices until the duration passes, `max_events` are sent or
/// `stop` is set; then flushes the producer. Blocking: run it on its own thread.
pub fn run(
    producer: &Producer,
    generator: &mut Synthetic,
    spec: &LoadSpec,
    stop: &AtomicBool,
) -> Result<LoadReport, SdkError> {
    const SLICE: Duration = Duration::from_millis(10);
    let started = Instant::now();
    let mut report = LoadReport::default();
    let mut next_progress = spec.progress_every;
    let limit = spec.max_events.unwrap_or(u64::MAX);
    while started.elapsed() < spec.duration && report.sent < limit && !stop.load(Ordering::Relaxed) {
        let due = if spec.rate == 0 {
            report.sent + 1000
        } else {
            (spec.rate as f64 * started.elapsed().as_secs_f64()) as u64 + 1
        };
        if spec.drift_after.is_some_and(|after| started.elapsed() >= after) {
            generator.set_drift_active(true);
        }
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        while report.sent < due.min(limit) {
            let event = generator.next_prediction(now_ms);
            retry_full(&mut report, || producer.log_prediction(&event))?;
            report.sent += 1;
        }
        for outcome in generator.due_outcomes(now_ms) {
            retry_full(&mut report, || producer.log_outcome(&outcome))?;
            report.outcomes_sent += 1;
        }
        if started.elapsed() >= next_progress {
            tracing::info!(
                sent = report.sent,
                rate = (report.sent as f64 / started.elapsed().as_secs_f64()) as u64,
                "loadgen progress"
            );
            next_progress += spec.progress_every;
        }
        if spec.rate > 0 {
            std::thread::sleep(SLICE);
        }
    }
    // Outcomes not yet due are sent now, with their (future) event times.
    for outcome in generator.due_outcomes(i64::MAX) {
        retry_full(&mut report, || producer.log_outcome(&outcome))?;
        report.outcomes_sent += 1;
    }
    producer.flush(Duration::from_secs(30))?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Sends until the SDK's queue takes the event: a load generator wants every event delivered,
/// so it backs off rather than drops.
fn retry_full(
    report: &mut LoadReport,
    mut send: impl FnMut() -> Result<(), SdkError>,
) -> Result<(), SdkError> {
    loop {
        match send() {
            Ok(()) => return Ok(()),
            Err(SdkError::QueueFull { .. }) => {
                report.dropped_queue_full += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(seed: u64) -> Synthetic {
        Synthetic::new(seed, vec!["a".into(), "b".into()], vec!["v1".into(), "v2".into()], 20)
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let (mut g1, mut g2) = (generator(7), generator(7));
        for _ in 0..100 {
            assert_eq!(g1.next_prediction(5), g2.next_prediction(5));
        }
    }

    #[test]
    fn drift_shifts_only_the_chosen_version_and_features_once_active() {
        let drift =
            Drift { model: "a".into(), version: "v1".into(), features: 2, shift: 10.0, active: false };
        let mut g = generator(3).with_drift(Some(drift));
        let mean_of = |g: &mut Synthetic, feature: &str, model: &str, version: &str| {
            let xs: Vec<f64> = (0..4000)
                .map(|_| g.next_prediction(0))
                .filter(|e| e.model_id == model && e.model_version == version)
                .map(|e| e.numeric_features[feature])
                .collect();
            xs.iter().sum::<f64>() / xs.len() as f64
        };
        assert!(mean_of(&mut g, "f00", "a", "v1").abs() < 0.2, "inactive drift changes nothing");
        g.set_drift_active(true);
        assert!((mean_of(&mut g, "f00", "a", "v1") - 10.0).abs() < 0.2);
        assert!((mean_of(&mut g, "f01", "a", "v1") - 10.0).abs() < 0.2);
        assert!(mean_of(&mut g, "f02", "a", "v1").abs() < 0.2, "only the first 2 features");
        assert!(mean_of(&mut g, "f00", "b", "v1").abs() < 0.2, "other models unchanged");
        assert!(mean_of(&mut g, "f00", "a", "v2").abs() < 0.2, "other versions unchanged");
    }

    #[test]
    fn events_are_valid_and_spread_over_models_and_versions() {
        use vigil_events::AvroRecord;
        let mut g = generator(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let e = g.next_prediction(1_764_000_000_000);
            e.validate().unwrap();
            assert_eq!(e.numeric_features.len(), 20);
            seen.insert((e.model_id, e.model_version));
        }
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn outcomes_follow_their_predictions_and_leave_the_predictions_unchanged() {
        let labels = Labels { rate: 0.5, delay_ms: 1_000 };
        let (mut plain, mut labelled) = (generator(9), generator(9).with_labels(Some(labels)));
        let mut ids = std::collections::BTreeMap::new();
        for t in 0..2000 {
            let p = labelled.next_prediction(t);
            assert_eq!(p, plain.next_prediction(t));
            ids.insert(p.prediction_id.clone(), p);
        }
        assert!(labelled.due_outcomes(999).is_empty(), "no outcome is due before the delay");
        let outcomes = labelled.due_outcomes(i64::MAX);
        assert!((900..1100).contains(&outcomes.len()), "{} of 2000 labelled at rate 0.5", outcomes.len());
        for o in &outcomes {
            let p = &ids[&o.prediction_id];
            assert_eq!(
                (o.model_id.as_str(), o.event_time_ms),
                (p.model_id.as_str(), p.event_time_ms + 1_000)
            );
            use vigil_events::AvroRecord;
            o.validate().unwrap();
        }
        // The truth is drawn from the model's own score: the predicted label is right about
        // E[max(s, 1 - s)], near 0.8 for a logit that is a sum of 3 standard normals.
        let right = outcomes.iter().filter(|o| ids[&o.prediction_id].prediction.label == o.label).count();
        let accuracy = right as f64 / outcomes.len() as f64;
        assert!((0.72..0.88).contains(&accuracy), "{accuracy}");
    }
}
