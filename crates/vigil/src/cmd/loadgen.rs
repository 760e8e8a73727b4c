use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use vigil_loadgen::{Drift, LoadReport, LoadSpec, Synthetic};
use vigil_sdk::{Producer, SdkConfig};

use crate::config::Config;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Predictions per second (0: as fast as possible).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// How long to run, e.g. 30s or 5m.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    pub duration: Duration,
    /// Stop after this many predictions.
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Number of models (named model-1, model-2, ...).
    #[arg(long, default_value_t = 3)]
    pub models: usize,
    /// Versions per model (v1, v2, ...).
    #[arg(long, default_value_t = 2)]
    pub versions: usize,
    /// Numeric features per prediction.
    #[arg(long, default_value_t = 20)]
    pub features: usize,
    /// Seed for the synthetic data; the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Make this model's inputs drift (with --drift-version), e.g. model-3.
    #[arg(long, requires = "drift_version")]
    pub drift_model: Option<String>,
    /// The version whose inputs drift, e.g. v2.
    #[arg(long, requires = "drift_model")]
    pub drift_version: Option<String>,
    /// When the drift starts, from the beginning of the run.
    #[arg(long, default_value = "0s", value_parser = super::parse_duration)]
    pub drift_after: Duration,
    /// Shift of the drifting features, in standard deviations.
    #[arg(long, default_value_t = 1.5)]
    pub drift_shift: f64,
    /// How many numeric features drift (the first ones: f00, f01, ...).
    #[arg(long, default_value_t = 3)]
    pub drift_features: usize,
    /// Share of predictions that get an outcome (ground truth) on topics.outcomes, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub label_rate: f64,
    /// How long after its prediction an outcome is observed (event time), e.g. 2s or 1m.
    /// Outcomes are sent at once, dated this far ahead: the monitor dead-letters event times
    /// more than monitor.max_event_time_ahead_seconds (default 300) ahead of their send time.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub label_delay: Duration,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let token = super::shutdown_on_signal();
    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        stop_on_signal.store(true, Ordering::Relaxed);
    });
    let report = publish(config, args, stop).await?;
    println!(
        "loadgen: sent {} predictions and {} outcomes in {:.1}s ({:.0} predictions/s); queue-full retries {}",
        report.sent,
        report.outcomes_sent,
        report.elapsed.as_secs_f64(),
        report.events_per_second(),
        report.dropped_queue_full
    );
    Ok(())
}

/// Creates the topics if needed, then publishes on a blocking thread until done or `stop`.
pub async fn publish(config: &Config, args: Args, stop: Arc<AtomicBool>) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(args.models > 0 && args.versions > 0, "--models and --versions must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.label_rate),
        "--label-rate {} must be between 0 and 1",
        args.label_rate
    );
    let ahead = config.monitor.max_event_time_ahead_seconds;
    if args.label_rate > 0.0 && args.label_delay.as_secs() > ahead {
        tracing::warn!(
            "--label-delay {:?} dates outcomes more than monitor.max_event_time_ahead_seconds ({ahead} s) ahead of their send time: the monitor will dead-letter them",
            args.label_delay
        );
    }
    vigil_monitor::ensure_topics(
        &config.kafka_settings(),
        &[&config.topics.predictions, &config.topics.outcomes],
        config.kafka.topic_partitions,
    )
    .await
    .context("preparing kafka topics (is the broker running? see deploy/local/up)")?;
    let mut sdk = SdkConfig::new(&config.kafka.brokers);
    sdk.predictions_topic = config.topics.predictions.clone();
    sdk.outcomes_topic = config.topics.outcomes.clone();
    sdk.kafka = config.kafka.client.clone();
    let producer = Producer::new(sdk)?;
    let drift = args.drift_model.clone().zip(args.drift_version.clone()).map(|(model, version)| Drift {
        model,
        version,
        features: args.drift_features.min(args.features),
        shift: args.drift_shift,
        active: false,
    });
    let drift_after = drift.is_some().then_some(args.drift_after);
    let mut generator = Synthetic::new(
        args.seed,
        (1..=args.models).map(|i| format!("model-{i}")).collect(),
        (1..=args.versions).map(|i| format!("v{i}")).collect(),
        args.features,
    )
    .with_drift(drift)
    .with_labels((args.label_rate > 0.0).then_some(vigil_loadgen::Labels {
        rate: args.label_rate,
        delay_ms: args.label_delay.as_millis() as i64,
    }));
    let spec = LoadSpec {
        rate: args.rate,
        duration: args.duration,
        max_events: args.max_events,
        progress_every: Duration::from_secs(5),
        drift_after,
    };
    let report =
        tokio::task::spawn_blocking(move || vigil_loadgen::run(&producer, &mut generator, &spec, &stop))
            .await??;
    Ok(report)
}
