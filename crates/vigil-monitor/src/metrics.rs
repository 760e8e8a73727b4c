//! Prometheus metrics, named `vigil_monitor_<name>_<unit>`. Labels are bounded: a dead-letter
//! reason is one of a fixed set, never an error text.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
    pub consumer_lag: IntGauge,
    pub rebalances: IntCounter,
    pub segment_overflow: IntCounter,
    pub late_events: IntCounter,
    pub windows_closed: IntCounter,
    pub close_errors: IntCounter,
    pub drift_tests: IntCounter,
    pub features_drifted: IntCounter,
    pub references_created: IntCounter,
    pub remediations: IntCounter,
    pub outcomes_decoded: IntCounter,
    pub outcomes_matched: IntCounter,
    pub predictions_expired: IntCounter,
    pub outcomes_expired: IntCounter,
    pub join_evicted: IntCounter,
    pub join_duplicates: IntCounter,
    pub join_waiting_predictions: IntGauge,
    pub join_waiting_outcomes: IntGauge,
    pub performance_rows: IntCounter,
}

impl MonitorMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(format!("vigil_monitor_{name}"), help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let deadlettered = IntCounterVec::new(
            Opts::new("vigil_monitor_deadlettered_total", "Messages sent to the dead-letter topic, by reason"),
            &["reason"],
        )?;
        registry.register(Box::new(deadlettered.clone()))?;
        let flush_seconds = Histogram::with_opts(
            HistogramOpts::new("vigil_monitor_flush_duration_seconds", "Time to store one flush in ClickHouse")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        registry.register(Box::new(flush_seconds.clone()))?;
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
            consumer_lag,
            rebalances: counter("rebalances_total", "Consumer group rebalances seen")?,
            late_events: counter("late_events_total", "Events for a window that had already closed (counted, window recomputed)")?,
            windows_closed: counter("windows_closed_total", "Window closes (and re-closes after late events) written to window_metrics")?,
            drift_tests: counter("drift_tests_total", "Feature drift tests run at window close")?,
            features_drifted: counter("features_drifted_total", "Feature drift tests whose verdict was drift")?,
            remediations: counter("remediations_total", "Remediation events published after a policy breach")?,
            references_created: counter("references_created_total", "Baseline references taken from a first closed window")?,
            close_errors: counter("window_close_errors_total", "Window closes that failed and will be retried")?,
            segment_overflow: counter(
                "segment_overflow_total",
                "Events whose segment value was past the per-model cap and went to tag=__other__",
            )?,
        })
    }
}
