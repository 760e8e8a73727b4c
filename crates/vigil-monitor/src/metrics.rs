//! Prometheus metrics, named `vigil_monitor_<name>_<unit>`. Labels are bounded: a dead-letter
//! reason is one of a fixed set, never an error text.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus::{GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Model versions with latest-value gauges; later ones are counted in
/// `vigil_monitor_latest_series_dropped_total` instead, so a label explosion cannot take
/// Prometheus down.
pub const MAX_LATEST_VERSIONS: usize = 2_000;

#[derive(Clone)]
pub struct MonitorMetrics {
    pub consumed: IntCounter,
    pub decoded: IntCounter,
    pub deadlettered: IntCounterVec,
    pub skipped_already_stored: IntCounter,
    pub rows_written: IntCounter,
    pub events_written: IntCounter,
    pub flushes: IntCounter,
    pub sink_errors: IntCounter,
    pub flush_seconds: Histogram,
    pub close_latency_seconds: Histogram,
    pub consumer_lag: IntGauge,
    pub rebalances: IntCounter,
    pub segment_overflow: IntCounter,
    pub late_events: IntCounter,
    pub windows_closed: IntCounter,
    pub close_errors: IntCounter,
    pub drift_tests: IntCounter,
    pub features_drifted: IntCounter,
    pub references_created: IntCounter,
    pub windows_without_reference: IntCounter,
    pub remediations: IntCounter,
    pub outcomes_decoded: IntCounter,
    pub outcomes_matched: IntCounter,
    pub predictions_expired: IntCounter,
    pub outcomes_expired: IntCounter,
    pub join_evicted: IntCounter,
    pub join_duplicates: IntCounter,
    pub join_waiting_predictions: IntGauge,
    pub join_waiting_outcomes: IntGauge,
    pub outcomes_paused_partitions: IntGauge,
    pub performance_rows: IntCounter,
    pub latest: LatestGauges,
}

/// The latest closed window's numbers per (model, version), labels bounded by
/// [`MAX_LATEST_VERSIONS`].
#[derive(Clone)]
pub struct LatestGauges {
    events: GaugeVec,
    drifted_features: GaugeVec,
    latency_p99_ms: GaugeVec,
    accuracy: GaugeVec,
    coverage: GaugeVec,
    /// 1 while the version's latest check of a policy is a breach.
    breach: GaugeVec,
    admitted: Arc<Mutex<HashSet<(String, String)>>>,
    dropped: IntCounter,
}

/// What one closed window reports to the gauges (segment: all traffic).
#[derive(Debug, Clone, Default)]
pub struct LatestWindow {
    pub events: u64,
    pub drifted_features: Option<usize>,
    pub latency_p99_ms: Option<f64>,
}

impl LatestGauges {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let vec = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<GaugeVec> {
            let g = GaugeVec::new(Opts::new(format!("vigil_monitor_latest_{name}"), help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let version = &["model", "version"];
        let dropped = IntCounter::new(
            "vigil_monitor_latest_series_dropped_total",
            "Window updates not exported as latest-value gauges: too many model versions",
        )?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(Self {
            events: vec("window_events", "Predictions in the latest closed window", version)?,
            drifted_features: vec(
                "drifted_features",
                "Features drifted in the latest tested window",
                version,
            )?,
            latency_p99_ms: vec(
                "latency_p99_ms",
                "p99 serving latency of the latest closed window, ms",
                version,
            )?,
            accuracy: vec("accuracy", "Accuracy of the latest window with outcomes", version)?,
            coverage: vec(
                "label_coverage",
                "Share of the latest window's predictions with an outcome so far",
                version,
            )?,
            breach: vec(
                "breach",
                "1 while the latest check of the policy breached",
                &["model", "version", "policy"],
            )?,
            admitted: Arc::default(),
            dropped,
        })
    }

    /// Whether (model, version) may have series: admitted until the cap is reached.
    fn admit(&self, model: &str, version: &str) -> bool {
        let mut admitted = self.admitted.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (model.to_owned(), version.to_owned());
        if admitted.contains(&key) || admitted.len() < MAX_LATEST_VERSIONS {
            admitted.insert(key);
            true
        } else {
            self.dropped.inc();
            false
        }
    }

    pub fn window(&self, model: &str, version: &str, w: &LatestWindow) {
        if !self.admit(model, version) {
            return;
        }
        let labels = &[model, version];
        self.events.with_label_values(labels).set(w.events as f64);
        if let Some(n) = w.drifted_features {
            self.drifted_features.with_label_values(labels).set(n as f64);
        }
        if let Some(p99) = w.latency_p99_ms {
            self.latency_p99_ms.with_label_values(labels).set(p99);
        }
    }

    pub fn performance(&self, model: &str, version: &str, accuracy: Option<f64>, coverage: f64) {
        if !self.admit(model, version) {
            return;
        }
        let labels = &[model, version];
        if let Some(a) = accuracy {
            self.accuracy.with_label_values(labels).set(a);
        }
        self.coverage.with_label_values(labels).set(coverage);
    }

    pub fn verdict(&self, model: &str, version: &str, policy: &str, breach: bool) {
        if self.admit(model, version) {
            self.breach.with_label_values(&[model, version, policy]).set(if breach { 1.0 } else { 0.0 });
        }
    }
}

impl MonitorMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(format!("vigil_monitor_{name}"), help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let deadlettered = IntCounterVec::new(
            Opts::new(
                "vigil_monitor_deadlettered_total",
                "Messages sent to the dead-letter topic, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(deadlettered.clone()))?;
        let flush_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "vigil_monitor_flush_duration_seconds",
                "Time to store one flush in ClickHouse",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        registry.register(Box::new(flush_seconds.clone()))?;
        let close_latency_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "vigil_monitor_window_close_latency_seconds",
                "From the watermark passing a window's end to its rows being in ClickHouse",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]),
        )?;
        registry.register(Box::new(close_latency_seconds.clone()))?;
        let consumer_lag = IntGauge::new(
            "vigil_monitor_consumer_lag_messages",
            "Messages on assigned partitions not yet consumed, from librdkafka statistics",
        )?;
        registry.register(Box::new(consumer_lag.clone()))?;
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(format!("vigil_monitor_{name}"), help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(Self {
            latest: LatestGauges::register(registry)?,
            outcomes_decoded: counter("outcomes_decoded_total", "Outcome messages decoded into valid events")?,
            outcomes_matched: counter("outcomes_matched_total", "Outcomes joined to their prediction")?,
            predictions_expired: counter(
                "join_predictions_expired_total",
                "Predictions that got no outcome within the join horizon",
            )?,
            outcomes_expired: counter(
                "join_outcomes_expired_total",
                "Outcomes whose prediction did not arrive within the join horizon (unmatched)",
            )?,
            join_evicted: counter("join_evicted_total", "Waiting predictions or outcomes pushed out by the join capacity")?,
            join_duplicates: counter("join_duplicates_total", "Predictions or outcomes whose prediction id was already waiting (ignored)")?,
            join_waiting_predictions: gauge("join_waiting_predictions", "Predictions waiting for their outcome")?,
            join_waiting_outcomes: gauge("join_waiting_outcomes", "Outcomes waiting for their prediction")?,
            outcomes_paused_partitions: gauge(
                "outcomes_paused_partitions",
                "Outcome partitions paused because their event time ran ahead of their predictions' (catching up a backlog)",
            )?,
            performance_rows: counter("performance_rows_total", "Window performance rows written (at close and after late outcomes)")?,
            consumed: counter("messages_consumed_total", "Messages read from Kafka")?,
            decoded: counter("events_decoded_total", "Messages decoded into valid events")?,
            deadlettered,
            skipped_already_stored: counter(
                "messages_skipped_total",
                "Messages re-read after a restart whose counts were already stored",
            )?,
            rows_written: counter("rows_written_total", "Rows inserted into ClickHouse")?,
            events_written: counter("events_written_total", "Events counted in rows inserted into ClickHouse")?,
            flushes: counter("flushes_total", "Flushes stored in ClickHouse")?,
            sink_errors: counter("sink_errors_total", "Failed ClickHouse writes (retried or fatal)")?,
            flush_seconds,
            close_latency_seconds,
            consumer_lag,
            rebalances: counter("rebalances_total", "Consumer group rebalances seen")?,
            late_events: counter("late_events_total", "Events for a window that had already closed (counted, window recomputed)")?,
            windows_closed: counter("windows_closed_total", "Window closes (and re-closes after late events) written to window_metrics")?,
            drift_tests: counter("drift_tests_total", "Feature drift tests run at window close")?,
            features_drifted: counter("features_drifted_total", "Feature drift tests whose verdict was drift")?,
            remediations: counter("remediations_total", "Remediation events published after a policy breach")?,
            references_created: counter("references_created_total", "Baseline references taken from a first closed window")?,
            windows_without_reference: counter(
                "windows_without_reference_total",
                "Closed windows (all traffic) of a version with no reference yet: drift not tested",
            )?,
            close_errors: counter("window_close_errors_total", "Window closes that failed and will be retried")?,
            segment_overflow: counter(
                "segment_overflow_total",
                "Events whose segment value was past the per-model cap and went to tag=__other__",
            )?,
        })
    }
}
