//! The consume -> decode -> update window states -> flush loop.
//!
//! Exactly-once effect: each flush stores its partial window states and, on the same rows, the next offset of
//! every partition it covers, in one atomic INSERT. After a restart or rebalance the monitor
//! reads those positions back and skips messages below them, so whatever Kafka redelivers is
//! counted once. Kafka offset commits follow the stored positions and only save re-reading.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use vigil_events::decode_prediction_view;
use vigil_store::Store;

use crate::partials::{PendingPartials, Segmenter};
use crate::clock::WindowClock;
use crate::http::Readiness;
use crate::drift::{categorical_drift, numeric_drift};
use crate::window::WindowState;
use crate::kafka::{self, DeadLetters, MonitorConsumer, Origin, Remediations};
use crate::policy::{self, Streaks, Verdict};
use crate::{MonitorError, MonitorMetrics, MonitorSettings};

struct Pipeline {
    settings: MonitorSettings,
    store: Store,
    consumer: Arc<MonitorConsumer>,
    dead_letters: DeadLetters,
    metrics: MonitorMetrics,
    readiness: Readiness,
    pending: PendingPartials,
    segments: Segmenter,
    clock: WindowClock,
    config_hash: String,
    /// Reference per (model, version): its id and state. Loaded with the stored positions.
    references: HashMap<(String, String), (String, WindowState)>,
    drift_policy: vigil_stats::DriftPolicy,
    remediations: Remediations,
    streaks: Streaks,
    /// Stored next offset per partition; `None` until read from ClickHouse after a (re)start or
    /// rebalance.
    stored: Option<HashMap<u32, i64>>,
    /// Counted per message, added to Prometheus per flush.
    local: LocalCounts,
}

#[derive(Default)]
struct LocalCounts {
    consumed: u64,
    late: u64,
    decoded: u64,
    skipped: u64,
}

/// Runs until `shutdown` is cancelled (then drains, flushes and commits) or a fatal error.
pub async fn run(
    settings: MonitorSettings,
    store: Store,
    metrics: MonitorMetrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), MonitorError> {
    let (consumer, notes) = kafka::consumer(&settings.kafka, &settings.group_id, metrics.consumer_lag.clone())?;
    let consumer = Arc::new(consumer);
    consumer
        .subscribe(&[&settings.predictions_topic])
        .map_err(|e| MonitorError::Kafka { action: "subscribe", source: e })?;
    let dead_letters = DeadLetters::new(&settings.kafka, &settings.deadletter_topic)?;
    store.ping().await?;
    readiness.set(true);
    tracing::info!(topic = %settings.predictions_topic, group = %settings.group_id, "monitor consuming");

    let mut pipeline = Pipeline {
        pending: PendingPartials::new(settings.window_seconds),
        segments: Segmenter::new(settings.segment_tags.clone(), settings.max_segments_per_model),
        clock: WindowClock::new(settings.window_seconds, settings.allowed_lateness.as_secs() as u32),
        config_hash: settings.config_hash(),
        references: HashMap::new(),
        // Both sides of a window comparison are samples: the two-sample chi-square, not the
        // goodness-of-fit one, which treats a small reference as exact and over-alarms.
        drift_policy: vigil_stats::DriftPolicy {
            categorical_small: vigil_stats::TestChoice::of(vigil_stats::DriftTest::ChiSquare2Samp),
            ..Default::default()
        },
        remediations: Remediations::new(&settings.kafka, &settings.remediations_topic)?,
        streaks: Streaks::default(),
        settings,
        store,
        consumer: consumer.clone(),
        dead_letters,
        metrics,
        readiness,
        stored: None,
        local: LocalCounts::default(),
    };
    let mut tick = tokio::time::interval(pipeline.settings.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let result = loop {
        let step = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            _ = tick.tick() => pipeline.flush().await,
            message = consumer.recv() => match message {
                Ok(message) => {
                    let (rebalanced, revoked) = kafka::take_rebalance(&notes);
                    if rebalanced {
                        pipeline.on_rebalance(&revoked);
                    }
                    pipeline.handle(&message).await
                }
                Err(error) => {
                    // Broker-side trouble (e.g. a partition leader moving) passes; librdkafka
                    // reconnects by itself.
                    tracing::warn!(%error, "kafka consumer error");
                    Ok(())
                }
            },
        };
        if let Err(error) = step {
            break Err(error);
        }
        if pipeline.pending.messages() >= pipeline.settings.max_pending_messages {
            if let Err(error) = pipeline.flush().await {
                break Err(error);
            }
        }
    };
    pipeline.readiness.set(false);
    match result {
        Ok(()) => {
            tracing::info!("shutting down: storing what is pending");
            let drain = pipeline.settings.drain_timeout;
            match tokio::time::timeout(drain, pipeline.flush()).await {
                Ok(flushed) => flushed?,
                Err(_) => tracing::warn!(?drain, "final flush timed out; the next start re-reads from the stored position"),
            }
            pipeline.commit(CommitMode::Sync);
            Ok(())
        }
        Err(error) => Err(error),
    }
}

impl Pipeline {
    async fn handle(&mut self, message: &BorrowedMessage<'_>) -> Result<(), MonitorError> {
        self.local.consumed += 1;
        let (partition, offset) = (message.partition(), message.offset());
        let stored = match &self.stored {
            Some(stored) => stored,
            None => {
                // After a (re)start or rebalance: resume behind what is stored, with the segments
                // it already admitted.
                self.segments.admit_stored(self.store.stored_segments().await?);
                for reference in self.store.references().await? {
                    let state: WindowState = serde_json::from_str(&reference.state)?;
                    self.references.insert((reference.model_id, reference.model_version), (reference.reference_id, state));
                }
                for (partition, window_start) in self.store.unclosed_windows().await? {
                    self.clock.reopen(partition as i32, window_start);
                }
                self.stored.insert(self.store.stored_positions(&self.settings.predictions_topic).await?)
            }
        };
        if stored.get(&(partition as u32)).is_some_and(|next| offset < *next) {
            self.local.skipped += 1;
            return Ok(());
        }
        let payload = message.payload().unwrap_or_default();
        match decode_prediction_view(payload) {
            Ok(event) => {
                self.local.decoded += 1;
                let window_start = self.pending.window_start(event.event_time_ms);
                let late = self.clock.observe(partition, window_start, event.event_time_ms);
                self.local.late += u64::from(late);
                self.pending.record_event(partition, offset, &event, late, &mut self.segments);
            }
            Err(error) => {
                let reason = error.reason();
                self.metrics.deadlettered.with_label_values(&[reason]).inc();
                let origin = Origin { topic: message.topic(), partition, offset, key: message.key() };
                self.dead_letters.send(origin, payload, reason, &error.to_string()).await?;
                self.pending.record_other(partition, offset);
            }
        }
        Ok(())
    }

    /// Drops work on revoked partitions and forgets positions: the next message reloads them,
    /// so partitions this consumer just gained start from what their last owner stored.
    fn on_rebalance(&mut self, revoked: &[i32]) {
        self.metrics.rebalances.inc();
        self.pending.revoke(revoked);
        self.clock.revoke(revoked);
        self.stored = None;
    }

    async fn flush(&mut self) -> Result<(), MonitorError> {
        self.publish_local_counts();
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        self.dead_letters.settle().await?;
        let rows = self.pending.rows(&self.settings.predictions_topic, unix_seconds())?;
        self.write_with_retry(&rows).await?;
        if let Some(stored) = &mut self.stored {
            for (partition, next) in self.pending.positions() {
                stored.insert(partition as u32, next);
            }
        }
        self.metrics.flushes.inc();
        self.metrics.rows_written.inc_by(rows.len() as u64);
        self.metrics.events_written.inc_by(rows.iter().filter(|r| r.segment.is_empty()).map(|r| r.events).sum());
        self.metrics.flush_seconds.observe(started.elapsed().as_secs_f64());
        self.commit(CommitMode::Async);
        self.pending.clear();
        self.close_due_windows().await;
        Ok(())
    }

    /// Closes the windows the watermark has passed, now that their partials are stored: merges
    /// each (model, version, segment)'s partials and writes its numbers. A failure leaves the
    /// window open for the next flush; closing again is idempotent.
    async fn close_due_windows(&mut self) {
        for (partition, window_start) in self.clock.take_closable() {
            match self.close_window(partition, window_start).await {
                Ok(keys) => {
                    self.metrics.windows_closed.inc_by(keys);
                }
                Err(error) => {
                    tracing::warn!(%error, partition, window_start, "closing window failed; retrying at the next flush");
                    self.metrics.close_errors.inc();
                    self.clock.reopen(partition, window_start);
                }
            }
        }
    }

    /// Checks the drift policy for one closed window and, on a breach that lasted the configured
    /// windows, publishes a remediation with the evidence.
    #[allow(clippy::too_many_arguments)]
    async fn evaluate_policy(
        &mut self,
        model_id: &str,
        model_version: &str,
        window_start: u32,
        reference_id: &str,
        events: u64,
        results: &[crate::drift::FeatureDrift],
        now: u32,
    ) -> Result<vigil_store::PolicyCheckRow, MonitorError> {
        let settings = &self.settings.drift_policy;
        let check = policy::check(settings, events, results);
        let streak = self.streaks.record(model_id, model_version, check.verdict);
        let mut remediation_id = String::new();
        if check.verdict == Verdict::Breach && streak >= settings.consecutive_windows {
            remediation_id = policy::remediation_id(model_id, model_version, window_start, &settings.name, &self.config_hash);
            let evidence = results
                .iter()
                .filter(|r| check.drifted.contains(&r.feature))
                .map(|r| vigil_events::Evidence {
                    metric: format!("drift.{}", r.result.test.name()),
                    value: r.result.p_value.unwrap_or(r.result.statistic),
                    threshold: if r.result.p_value.is_some() { check.corrected_alpha } else { r.result.threshold },
                    feature: Some(r.feature.clone()),
                })
                .collect();
            let event = vigil_events::RemediationEvent {
                remediation_id: remediation_id.clone(),
                model_id: model_id.to_owned(),
                model_version: model_version.to_owned(),
                window_start_ms: i64::from(window_start) * 1000,
                window_end_ms: (i64::from(window_start) + i64::from(self.settings.window_seconds)) * 1000,
                severity: settings.severity,
                action: settings.action,
                policy: settings.name.clone(),
                evidence,
                reference_id: Some(reference_id.to_owned()),
                config_hash: self.config_hash.clone(),
                created_at_ms: i64::from(now) * 1000,
            };
            self.remediations.send(&event).await?;
            self.metrics.remediations.inc();
            tracing::warn!(model_id, model_version, window_start, remediation_id, drifted = ?check.drifted, "drift policy breached: remediation sent");
        }
        let detail = format!(
            "{{\"drifted\":{},\"tested\":{},\"corrected_alpha\":{}}}",
            serde_json_list(&check.drifted),
            check.tested,
            check.corrected_alpha
        );
        Ok(vigil_store::PolicyCheckRow {
            model_id: model_id.to_owned(),
            model_version: model_version.to_owned(),
            window_start,
            policy: settings.name.clone(),
            verdict: check.verdict.name().to_owned(),
            value: check.drifted.len() as f64,
            threshold: settings.min_drifted_features as f64,
            detail,
            streak,
            remediation_id,
            events,
            reference_id: reference_id.to_owned(),
            config_hash: self.config_hash.clone(),
            computed_at: now,
        })
    }

    /// Makes `state` (a version's first closed window with enough events) its reference.
    async fn create_baseline(&mut self, model_id: &str, model_version: &str, window_start: u32, state: &WindowState, now: u32) -> Result<(), MonitorError> {
        let json = serde_json::to_string(state)?;
        let content_hash = vigil_events::fnv1a64(json.as_bytes());
        let reference_id = format!("baseline:{model_id}:{model_version}:{window_start}");
        self.store
            .insert_reference(&vigil_store::ReferenceRow {
                model_id: model_id.to_owned(),
                model_version: model_version.to_owned(),
                reference_id: reference_id.clone(),
                content_hash: format!("{content_hash:016x}"),
                source: format!("live baseline: window {window_start}, {} events", state.events),
                events: state.events,
                state: json,
                created_at: now,
            })
            .await?;
        tracing::info!(model_id, model_version, reference_id, events = state.events, "baseline reference created");
        self.metrics.references_created.inc();
        self.references.insert((model_id.to_owned(), model_version.to_owned()), (reference_id, state.clone()));
        Ok(())
    }

    async fn close_window(&mut self, partition: i32, window_start: u32) -> Result<u64, MonitorError> {
        let partials = self.store.partials_at(partition as u32, window_start).await?;
        let mut merged: std::collections::BTreeMap<(String, String, String), WindowState> = Default::default();
        for p in partials {
            let state: WindowState = serde_json::from_str(&p.state)?;
            merged.entry((p.model_id, p.model_version, p.segment)).or_default().merge(&state)?;
        }
        let computed_at = unix_seconds();
        let mut rows = Vec::with_capacity(merged.len());
        let mut drift_rows = Vec::new();
        let mut policy_inputs = Vec::new();
        for ((model_id, model_version, segment), state) in merged {
            let reference_key = (model_id.clone(), model_version.clone());
            if !self.references.contains_key(&reference_key) && segment.is_empty() && state.events >= self.settings.baseline_min_events {
                self.create_baseline(&model_id, &model_version, window_start, &state, computed_at).await?;
            }
            let reference_id = match self.references.get(&reference_key) {
                Some((id, reference)) => {
                    if !id.ends_with(&format!(":{window_start}")) {
                        let (mut results, mut skipped) = numeric_drift(reference, &state, &self.drift_policy);
                        let (categorical, categorical_skipped) = categorical_drift(reference, &state, &self.drift_policy);
                        results.extend(categorical);
                        skipped.extend(categorical_skipped);
                        for (feature, error) in skipped {
                            tracing::debug!(%error, feature, model_id, "drift test skipped");
                        }
                        if segment.is_empty() {
                            policy_inputs.push((model_id.clone(), model_version.clone(), id.clone(), state.events, results.clone()));
                        }
                        self.metrics.drift_tests.inc_by(results.len() as u64);
                        self.metrics.features_drifted.inc_by(results.iter().filter(|r| r.result.drifted).count() as u64);
                        drift_rows.extend(results.into_iter().map(|r| vigil_store::FeatureDriftRow {
                            model_id: model_id.clone(),
                            model_version: model_version.clone(),
                            segment: segment.clone(),
                            window_start,
                            feature: r.feature,
                            test: r.result.test.name().to_owned(),
                            statistic: r.result.statistic,
                            p_value: r.result.p_value,
                            error_bound: r.result.error_bound,
                            threshold: r.result.threshold,
                            drifted: u8::from(r.result.drifted),
                            current_count: r.current_count,
                            events: state.events,
                            reference_id: id.clone(),
                            config_hash: self.config_hash.clone(),
                            computed_at,
                        }));
                    }
                    id.clone()
                }
                None => String::new(),
            };
            let summary = state.summary();
            let [p50, p95, p99] = summary.latency_ms.map_or([None; 3], |l| l.map(Some));
            rows.push(vigil_store::WindowMetricsRow {
                model_id,
                model_version,
                segment,
                window_start,
                window_seconds: self.settings.window_seconds,
                events: state.events,
                late_events: state.late_events,
                latency_p50_ms: p50,
                latency_p95_ms: p95,
                latency_p99_ms: p99,
                score_mean: summary.score_mean,
                predicted_labels: serde_json::to_string(&summary.predicted_labels).unwrap_or_default(),
                feature_means: serde_json::to_string(&summary.feature_means).unwrap_or_default(),
                features_missing: summary.features_missing,
                reference_id,
                config_hash: self.config_hash.clone(),
                source_partition: partition as u32,
                computed_at,
            });
        }
        // Drift and policies first: a window counts as closed once its metrics row exists.
        self.store.insert_feature_drift(&drift_rows).await?;
        let mut checks = Vec::new();
        for (model_id, model_version, reference_id, events, results) in policy_inputs {
            checks.push(self.evaluate_policy(&model_id, &model_version, window_start, &reference_id, events, &results, computed_at).await?);
        }
        self.store.insert_policy_checks(&checks).await?;
        self.store.insert_window_metrics(&rows).await?;
        Ok(rows.len() as u64)
    }

    /// Retries transient ClickHouse errors with backoff. An INSERT that timed out may still have
    /// landed, so before each retry the stored positions are read back: if they already cover
    /// this flush, it is done.
    async fn write_with_retry(&mut self, rows: &[vigil_store::WindowPartialRow]) -> Result<(), MonitorError> {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.store.insert_window_partials(rows).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            self.metrics.sink_errors.inc();
            if !error.is_retryable() || attempt >= 8 {
                return Err(error.into());
            }
            tracing::warn!(%error, attempt, ?backoff, "clickhouse write failed, retrying");
            self.readiness.set(false);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
            if let Ok(stored) = self.store.stored_positions(&self.settings.predictions_topic).await {
                if self.pending.positions().all(|(p, next)| stored.get(&(p as u32)).is_some_and(|s| *s >= next)) {
                    tracing::info!(attempt, "the failed write had landed");
                    self.readiness.set(true);
                    return Ok(());
                }
            }
            self.readiness.set(true);
        }
    }

    fn commit(&self, mode: CommitMode) {
        let mut list = TopicPartitionList::new();
        for (partition, next) in self.pending.positions() {
            if let Err(error) = list.add_partition_offset(&self.settings.predictions_topic, partition, Offset::Offset(next)) {
                tracing::warn!(%error, partition, "could not build offset commit");
            }
        }
        if list.count() > 0 {
            if let Err(error) = self.consumer.commit(&list, mode) {
                // Harmless: positions are in ClickHouse; a later commit catches up.
                tracing::debug!(%error, "kafka offset commit failed");
            }
        }
    }

    fn publish_local_counts(&mut self) {
        let local = std::mem::take(&mut self.local);
        self.metrics.consumed.inc_by(local.consumed);
        self.metrics.decoded.inc_by(local.decoded);
        self.metrics.skipped_already_stored.inc_by(local.skipped);
        self.metrics.late_events.inc_by(local.late);
        self.metrics.segment_overflow.inc_by(self.segments.take_overflowed());
    }
}

fn serde_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn unix_seconds() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}
