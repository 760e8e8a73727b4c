//! The consume -> decode -> update window states -> flush loop, over predictions and outcomes.
//!
//! Exactly-once effect: each flush stores its partial window states and, on the same rows, the next offset of
//! every partition it covers, in one atomic INSERT. After a restart or rebalance the monitor
//! reads those positions back and skips messages below them, so whatever Kafka redelivers is
//! counted once. Kafka offset commits follow the stored positions and only save re-reading.
//!
//! Outcomes join their predictions in memory (`join.rs`). That state is not stored: after a
//! (re)start or rebalance it is rebuilt by re-reading the join horizon before the stored
//! positions (`rebuild_join`), so a restarted monitor matches what an uninterrupted one would.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use vigil_events::{decode, decode_prediction_view, OutcomeEvent};
use vigil_store::Store;

use crate::clock::WindowClock;
use crate::http::Readiness;
use crate::join::{Matched, OutcomeJoin, WaitingPrediction};
use crate::kafka::{self, DeadLetters, MonitorConsumer, Origin, Remediations};
use crate::partials::{PendingPartials, Segmenter, Source};
use crate::performance::Observed;
use crate::policy::{self, Escalation, Judgement, Streaks, Verdict};
use crate::rows;
use crate::window::WindowState;
use crate::windowing::Window;
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
    /// Windows whose performance was judged (they had enough outcomes); restored at reload.
    performance_decided: std::collections::HashSet<WindowKey>,
    /// Versions already reported as having no reference (reported once each).
    missing_reference_noted: std::collections::HashSet<(String, String)>,
    /// Performance of each baseline reference window, by reference id: the yardstick for the
    /// accuracy drop.
    reference_performance: HashMap<String, crate::performance::PerformanceSummary>,
    join: OutcomeJoin,
    /// Reused per prediction for the segment names the join keeps.
    segment_names: Vec<String>,
    /// Stored next offset per (topic, partition); `None` until read from ClickHouse after a
    /// (re)start or rebalance.
    stored: Option<HashMap<(Source, u32), i64>>,
    /// Counted per message, added to Prometheus per flush.
    local: LocalCounts,
    /// What librdkafka's rebalance callbacks noted, applied by [`Self::apply_rebalance`].
    notes: Arc<std::sync::Mutex<kafka::RebalanceNotes>>,
    /// When references were last compared with the store (uploads take effect without a restart).
    references_checked: Instant,
    /// Newest event time (s) read per (topic, partition), and the outcome partitions paused
    /// until their predictions catch up ([`Self::align_topics`]).
    newest_read_s: HashMap<(Source, i32), u64>,
    paused_outcomes: std::collections::BTreeSet<i32>,
}

/// How often the references in use are compared with the store.
const REFERENCE_REFRESH: Duration = Duration::from_secs(30);

#[derive(Default)]
struct LocalCounts {
    consumed: u64,
    late: u64,
    decoded: u64,
    outcomes: u64,
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
    let (consumer, notes) =
        kafka::consumer(&settings.kafka, &settings.group_id, metrics.consumer_lag.clone())?;
    let consumer = Arc::new(consumer);
    let (predictions, outcomes) = (
        kafka::partition_count(&consumer, &settings.predictions_topic)?,
        kafka::partition_count(&consumer, &settings.outcomes_topic)?,
    );
    if predictions != outcomes {
        return Err(MonitorError::Config(format!(
            "topics.predictions {:?} has {predictions} partitions but topics.outcomes {:?} has {outcomes}: \
             outcomes join predictions per partition, so give both topics the same partition count",
            settings.predictions_topic, settings.outcomes_topic
        )));
    }
    consumer
        .subscribe(&[&settings.predictions_topic, &settings.outcomes_topic])
        .map_err(|e| MonitorError::Kafka { action: "subscribe", source: e })?;
    let dead_letters = DeadLetters::new(&settings.kafka, &settings.deadletter_topic)?;
    store.ping().await?;
    readiness.set(true);
    tracing::info!(predictions = %settings.predictions_topic, outcomes = %settings.outcomes_topic, group = %settings.group_id, "monitor consuming");

    let mut pipeline = Pipeline {
        pending: PendingPartials::new(settings.windows.pane_seconds(), &settings.positive_label),
        join: OutcomeJoin::new(settings.join),
        segment_names: Vec::new(),
        segments: Segmenter::new(settings.segment_tags.clone(), settings.max_segments_per_model),
        clock: WindowClock::new(settings.allowed_lateness.as_secs() as u32)
            .with_idle_timeout(settings.idle_timeout),
        config_hash: settings.config_hash(),
        references: HashMap::new(),
        drift_policy: rows::drift_policy(),
        remediations: Remediations::new(&settings.kafka, &settings.remediations_topic)?,
        streaks: Streaks::default(),
        performance_decided: Default::default(),
        missing_reference_noted: Default::default(),
        reference_performance: HashMap::new(),
        settings,
        store,
        consumer: consumer.clone(),
        dead_letters,
        metrics,
        readiness,
        stored: None,
        local: LocalCounts::default(),
        references_checked: Instant::now(),
        newest_read_s: HashMap::new(),
        paused_outcomes: Default::default(),
        notes,
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
                    pipeline.apply_rebalance();
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
                Err(_) => tracing::warn!(
                    ?drain,
                    "final flush timed out; the next start re-reads from the stored position"
                ),
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
        let source = if message.topic() == self.settings.predictions_topic {
            Source::Predictions
        } else {
            Source::Outcomes
        };
        if self.stored.is_none() {
            self.reload().await?;
        }
        let stored = self.stored.as_ref().expect("loaded above");
        if stored.get(&(source, partition as u32)).is_some_and(|next| offset < *next) {
            self.local.skipped += 1;
            return Ok(());
        }
        let payload = message.payload().unwrap_or_default();
        let error = match source {
            Source::Predictions => self.take_prediction(partition, offset, payload).err(),
            Source::Outcomes => self.take_outcome(partition, offset, payload).err(),
        };
        if let Some(error) = error {
            let reason = error.reason();
            self.metrics.deadlettered.with_label_values(&[reason]).inc();
            let origin = Origin { topic: message.topic(), partition, offset, key: message.key() };
            self.dead_letters.send(origin, payload, reason, &error.to_string()).await?;
            self.pending.record_other(source, partition, offset);
        }
        Ok(())
    }

    /// After a (re)start or rebalance: resume behind what is stored, with the segments and
    /// references it already has, and the outcome join rebuilt from the log.
    async fn reload(&mut self) -> Result<(), MonitorError> {
        self.segments.admit_stored(self.store.stored_segments().await?);
        for reference in self.store.references_in_use().await? {
            let state = WindowState::decode(&reference.state)?;
            self.references
                .insert((reference.model_id, reference.model_version), (reference.reference_id, state));
        }
        let assigned: std::collections::BTreeSet<i32> = match self.consumer.assignment() {
            Ok(list) => list.elements().iter().map(|e| e.partition()).collect(),
            Err(error) => return Err(MonitorError::Kafka { action: "read assignment", source: error }),
        };
        let newest = self.store.newest_windows().await?;
        self.reopen_unclosed(&assigned, &newest).await?;
        self.restore_policy_state(&newest).await?;
        let stored = self.stored_positions().await?;
        self.check_positions_within_topics(&assigned, &stored)?;
        self.rebuild_join(&assigned, &stored, &newest).await?;
        self.stored = Some(stored);
        Ok(())
    }

    /// How far back (event time) from a partition's newest pane a restart looks for work: windows
    /// still to close and windows outcomes can still reach.
    fn lookback_seconds(&self) -> u64 {
        u64::from(self.settings.windows.longest())
            + self.settings.allowed_lateness.as_secs()
            + self.settings.join.horizon_seconds
    }

    /// Reopens, on the assigned partitions, every window with partials stored since it was last
    /// closed, or never closed: the previous owner's next flush would have (re)closed it. That
    /// covers late events and late outcomes stored just before a crash. Partials written in the
    /// second of the close count as newer: closing again is idempotent.
    async fn reopen_unclosed(
        &mut self,
        assigned: &std::collections::BTreeSet<i32>,
        newest: &HashMap<u32, u32>,
    ) -> Result<(), MonitorError> {
        for (partition, pane) in newest.iter().filter(|(p, _)| assigned.contains(&(**p as i32))) {
            self.clock.resume(*partition as i32, u64::from(*pane));
        }
        let Some(oldest_newest) =
            newest.iter().filter(|(p, _)| assigned.contains(&(**p as i32))).map(|(_, w)| u64::from(*w)).min()
        else {
            return Ok(());
        };
        let since = oldest_newest.saturating_sub(self.lookback_seconds()) as u32;
        let closed = self.store.closed_windows(since).await?;
        for ((partition, model_id, pane), written_at) in self.store.stored_panes(since).await? {
            if !assigned.contains(&(partition as i32)) {
                continue;
            }
            for window in self.settings.windows.for_model(&model_id).windows_containing(u64::from(pane)) {
                if closed
                    .get(&(partition, window.start, window.length))
                    .is_none_or(|closed_at| written_at >= *closed_at)
                {
                    self.clock.reopen(partition as i32, window);
                }
            }
        }
        Ok(())
    }

    /// Takes up references uploaded (or otherwise changed) since they were loaded: only the ids
    /// are compared; a changed one's state is read.
    async fn refresh_references(&mut self) -> Result<(), MonitorError> {
        for info in self.store.reference_list(None).await?.into_iter().filter(|r| r.in_use) {
            let key = (info.model_id.clone(), info.model_version.clone());
            if self.references.get(&key).is_some_and(|(id, _)| *id == info.reference_id) {
                continue;
            }
            let Some(row) = self.store.reference(&info.reference_id).await? else { continue };
            let state = WindowState::decode(&row.state)?;
            tracing::info!(model_id = %key.0, model_version = %key.1, reference_id = %info.reference_id, source = %info.source, "reference changed: later windows are tested against it");
            self.missing_reference_noted.remove(&key);
            self.references.insert(key, (info.reference_id, state));
        }
        Ok(())
    }

    /// Streaks, decided windows and reference performance as stored, so a restart continues them.
    async fn restore_policy_state(&mut self, newest: &HashMap<u32, u32>) -> Result<(), MonitorError> {
        for decision in self.store.latest_decisions().await? {
            self.streaks.restore(
                &decision.model_id,
                &decision.model_version,
                &decision.policy,
                decision.window_start,
                decision.streak,
            );
            self.metrics.latest.verdict(
                &decision.model_id,
                &decision.model_version,
                &decision.policy,
                decision.verdict == Verdict::Breach.name(),
            );
        }
        // Performance is judged when a window first has enough outcomes, not in window order:
        // the windows outcomes can still reach keep their own record.
        let since =
            newest.values().min().map_or(0, |w| u64::from(*w).saturating_sub(self.lookback_seconds()) as u32);
        let policy = self.settings.policies.default.performance.escalation.name.clone();
        for (model_id, model_version, window_start) in self.store.decided_windows(&policy, since).await? {
            self.performance_decided.insert(WindowKey { model_id, model_version, window_start });
        }
        for row in self.store.baseline_performance().await? {
            let summary = crate::performance::PerformanceSummary {
                labeled: row.labeled,
                accuracy: row.accuracy,
                mae: row.mae,
                ..Default::default()
            };
            self.reference_performance.insert(row.reference_id, summary);
        }
        Ok(())
    }

    /// A stored position past the end of its partition means the positions belong to another
    /// log: the topic was deleted and created again, or the database served another cluster.
    /// Resuming there would skip every message below it, so the monitor stops and says so.
    fn check_positions_within_topics(
        &self,
        assigned: &std::collections::BTreeSet<i32>,
        stored: &HashMap<(Source, u32), i64>,
    ) -> Result<(), MonitorError> {
        for (source, key, topic) in [
            (Source::Predictions, "topics.predictions", &self.settings.predictions_topic),
            (Source::Outcomes, "topics.outcomes", &self.settings.outcomes_topic),
        ] {
            for &partition in assigned {
                let Some(&position) = stored.get(&(source, partition as u32)) else { continue };
                let end = kafka::log_end(&self.consumer, topic, partition)?;
                if position > end {
                    return Err(MonitorError::Config(format!(
                        "{key} {topic:?} partition {partition} ends at offset {end}, but ClickHouse holds a stored position of {position} for it: \
                         the topic was deleted and created again, or clickhouse.database was filled from another Kafka cluster. \
                         Resuming would skip every message below {position}: point clickhouse.database at a new database \
                         (or drop this one) to start over"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn stored_positions(&self) -> Result<HashMap<(Source, u32), i64>, MonitorError> {
        let mut stored = HashMap::new();
        for (source, topic) in [
            (Source::Predictions, &self.settings.predictions_topic),
            (Source::Outcomes, &self.settings.outcomes_topic),
        ] {
            for (partition, next) in self.store.stored_positions(topic).await? {
                stored.insert((source, partition), next);
            }
        }
        Ok(stored)
    }

    /// Re-reads, for each assigned partition with stored positions, the join horizon (plus the
    /// allowed lateness) before them into the join only: predictions and outcomes still waiting
    /// at the stored positions wait again; pairs that matched there match again and are dropped,
    /// their numbers being stored already.
    async fn rebuild_join(
        &mut self,
        assigned: &std::collections::BTreeSet<i32>,
        stored: &HashMap<(Source, u32), i64>,
        newest: &HashMap<u32, u32>,
    ) -> Result<(), MonitorError> {
        let back = self.settings.join.horizon_seconds + self.settings.allowed_lateness.as_secs();
        let mut ranges = Vec::new();
        for partition in assigned {
            let Some(window) = newest.get(&(*partition as u32)) else { continue };
            let from_ms =
                (i64::from(*window) + i64::from(self.settings.windows.pane_seconds()) - back as i64).max(0)
                    * 1000;
            for (source, topic) in [
                (Source::Predictions, &self.settings.predictions_topic),
                (Source::Outcomes, &self.settings.outcomes_topic),
            ] {
                if let Some(&end_offset) = stored.get(&(source, *partition as u32)) {
                    ranges.push(kafka::HistoryRange {
                        topic: topic.clone(),
                        partition: *partition,
                        from_ms,
                        end_offset,
                    });
                }
            }
        }
        if ranges.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let predictions_topic = self.settings.predictions_topic.clone();
        let kafka_settings = self.settings.kafka.clone();
        let read = kafka::read_history(&kafka_settings, &ranges, |topic, partition, payload| {
            // Matches here were counted before the restart; what matters is what still waits.
            if topic == predictions_topic {
                let _ = self.join_prediction(partition, payload);
            } else if let Ok(outcome) = decode::<OutcomeEvent>(payload) {
                let _ = self.join_outcome(partition, &outcome);
            }
        })
        .await?;
        self.join.take_counts();
        let (predictions, outcomes) = self.join.waiting();
        tracing::info!(
            read,
            predictions,
            outcomes,
            seconds = started.elapsed().as_secs_f64(),
            "outcome join rebuilt from the log"
        );
        Ok(())
    }

    fn take_prediction(
        &mut self,
        partition: i32,
        offset: i64,
        payload: &[u8],
    ) -> Result<(), vigil_events::DecodeError> {
        let event = decode_prediction_view(payload)?;
        self.local.decoded += 1;
        let pane = self.pending.pane_start(event.event_time_ms);
        note_newest(&mut self.newest_read_s, (Source::Predictions, partition), event.event_time_ms);
        let late = self.clock.observe(
            partition,
            self.settings.windows.for_model(event.model_id),
            event.event_time_ms,
        );
        self.local.late += u64::from(late);
        self.pending.record_event(
            partition,
            offset,
            &event,
            late,
            &mut self.segments,
            &mut self.segment_names,
        );
        if let Some(matched) = self.join.on_prediction(
            partition,
            event.model_id,
            event.prediction_id,
            WaitingPrediction::of(&event, pane, &self.segment_names),
        ) {
            self.pending.record_matched(Source::Predictions, partition, &matched);
        }
        Ok(())
    }

    fn take_outcome(
        &mut self,
        partition: i32,
        offset: i64,
        payload: &[u8],
    ) -> Result<(), vigil_events::DecodeError> {
        let outcome = decode::<OutcomeEvent>(payload)?;
        self.local.outcomes += 1;
        note_newest(&mut self.newest_read_s, (Source::Outcomes, partition), outcome.event_time_ms);
        self.pending.record_other(Source::Outcomes, partition, offset);
        if let Some(matched) = self.join_outcome(partition, &outcome) {
            self.pending.record_matched(Source::Outcomes, partition, &matched);
        }
        Ok(())
    }

    /// The join alone, for a prediction re-read while rebuilding.
    fn join_prediction(
        &mut self,
        partition: i32,
        payload: &[u8],
    ) -> Result<Option<Matched>, vigil_events::DecodeError> {
        let event = decode_prediction_view(payload)?;
        let pane = self.pending.pane_start(event.event_time_ms);
        self.segment_names.clear();
        let names = &mut self.segment_names;
        self.segments.for_each(&event, |segment| {
            if !segment.is_empty() {
                names.push(segment.to_owned());
            }
        });
        Ok(self.join.on_prediction(
            partition,
            event.model_id,
            event.prediction_id,
            WaitingPrediction::of(&event, pane, &self.segment_names),
        ))
    }

    fn join_outcome(&mut self, partition: i32, outcome: &OutcomeEvent) -> Option<Matched> {
        let observed = Observed { label: outcome.label.clone(), value: outcome.value };
        let time_s = (outcome.event_time_ms / 1000) as u64;
        self.join.on_outcome(partition, &outcome.model_id, &outcome.prediction_id, observed, time_s)
    }

    /// Takes what the rebalance callbacks noted since the last call. Runs before every message
    /// and at the start of every flush, so a flush never stores a partition this consumer no
    /// longer owns (its new owner may already have read the stored positions).
    fn apply_rebalance(&mut self) {
        let (rebalanced, revoked) = kafka::take_rebalance(&self.notes);
        if rebalanced {
            self.on_rebalance(&revoked);
        }
    }

    /// Drops work on revoked partitions and forgets positions and window clocks: the next message
    /// reloads them for the partitions this consumer owns now, from what their last owner stored.
    fn on_rebalance(&mut self, revoked: &[i32]) {
        self.metrics.rebalances.inc();
        self.pending.revoke(revoked);
        // Windows of partitions owned elsewhere must not stay open here: reload reopens those of
        // the current assignment only.
        self.clock = WindowClock::new(self.settings.allowed_lateness.as_secs() as u32)
            .with_idle_timeout(self.settings.idle_timeout);
        self.join.revoke(revoked);
        self.stored = None;
        self.newest_read_s.clear();
        let paused = std::mem::take(&mut self.paused_outcomes);
        self.metrics.outcomes_paused_partitions.set(0);
        if !paused.is_empty() {
            // Partitions still owned flow again; revoked ones answer with an error, ignored.
            let _ = self.consumer.resume(&self.outcome_partitions(&paused));
        }
    }

    /// Event-time alignment of the two topics, for catching up a backlog: read in parallel, the
    /// outcomes topic (small messages) runs far ahead of the predictions topic, its outcomes
    /// wait in the join, and the predictions that will never get one push them out (evicted at
    /// `join_capacity`) before their own predictions arrive. An outcome partition whose newest
    /// event time is more than a second ahead of its predictions' pauses while the predictions
    /// partition still has messages to read, and resumes once they have caught up.
    fn align_topics(&mut self) {
        let Ok(assigned) = self.consumer.assignment() else { return };
        let partitions: std::collections::BTreeSet<i32> =
            assigned.elements().iter().map(|e| e.partition()).collect();
        let (mut pause, mut resume) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
        for partition in partitions {
            let outcomes = self.newest_read_s.get(&(Source::Outcomes, partition)).copied().unwrap_or(0);
            let predictions = self.newest_read_s.get(&(Source::Predictions, partition)).copied().unwrap_or(0);
            let paused = self.paused_outcomes.contains(&partition);
            if !paused && outcomes > predictions + 1 && self.has_unread_predictions(partition) {
                pause.insert(partition);
            } else if paused && (outcomes <= predictions || !self.has_unread_predictions(partition)) {
                resume.insert(partition);
            }
        }
        if !pause.is_empty() && self.consumer.pause(&self.outcome_partitions(&pause)).is_ok() {
            tracing::debug!(?pause, "outcomes ahead of their predictions in event time: paused");
            self.paused_outcomes.extend(pause);
        }
        if !resume.is_empty() && self.consumer.resume(&self.outcome_partitions(&resume)).is_ok() {
            tracing::debug!(?resume, "predictions caught up: outcomes resumed");
            self.paused_outcomes.retain(|p| !resume.contains(p));
        }
        self.metrics.outcomes_paused_partitions.set(self.paused_outcomes.len() as i64);
    }

    /// Whether the predictions partition has messages this consumer has not read yet.
    fn has_unread_predictions(&self, partition: i32) -> bool {
        let topic = &self.settings.predictions_topic;
        let Ok((_, end)) = self.consumer.fetch_watermarks(topic, partition, Duration::from_secs(1)) else {
            return false;
        };
        let next = self.consumer.position().ok().and_then(|list| {
            match list.find_partition(topic, partition)?.offset() {
                Offset::Offset(next) => Some(next),
                _ => None,
            }
        });
        // Nothing read yet (no position): not known to be behind, so outcomes never wait on a
        // partition that may have nothing to deliver.
        next.is_some_and(|next| next < end)
    }

    fn outcome_partitions(&self, partitions: &std::collections::BTreeSet<i32>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition(&self.settings.outcomes_topic, *partition);
        }
        list
    }

    async fn flush(&mut self) -> Result<(), MonitorError> {
        self.apply_rebalance();
        self.publish_local_counts();
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        self.dead_letters.settle().await?;
        let topics = [self.settings.predictions_topic.as_str(), self.settings.outcomes_topic.as_str()];
        let rows = self.pending.rows(topics, unix_seconds())?;
        self.write_with_retry(&rows).await?;
        if let Some(stored) = &mut self.stored {
            for (source, partition, next) in self.pending.positions() {
                stored.insert((source, partition as u32), next);
            }
        }
        let with_outcomes = self.pending.panes_with_outcomes();
        self.metrics.flushes.inc();
        self.metrics.rows_written.inc_by(rows.len() as u64);
        self.metrics
            .events_written
            .inc_by(rows.iter().filter(|r| r.segment.is_empty()).map(|r| r.events).sum());
        self.metrics.flush_seconds.observe(started.elapsed().as_secs_f64());
        self.commit(CommitMode::Async);
        self.pending.clear();
        self.align_topics();
        if self.references_checked.elapsed() >= REFERENCE_REFRESH {
            self.references_checked = Instant::now();
            if let Err(error) = self.refresh_references().await {
                tracing::warn!(%error, "could not check for new references; keeping the current ones");
            }
        }
        self.close_due_windows().await;
        // Outcomes for windows closed before: recompute their performance (only; their drift
        // and policy verdicts stand). Windows still open get them when they close.
        let mut reached = std::collections::BTreeSet::new();
        for (partition, model_id, pane) in with_outcomes {
            for window in self.settings.windows.for_model(&model_id).windows_containing(u64::from(pane)) {
                if !self.clock.is_open(partition, window) {
                    reached.insert((partition, window));
                }
            }
        }
        for (partition, window) in reached {
            if let Err(error) = self.close_performance(partition, window).await {
                tracing::warn!(%error, partition, window_start = window.start, "updating a closed window's performance failed; the next outcome for it retries");
                self.metrics.close_errors.inc();
            }
        }
        Ok(())
    }

    /// The states of the models that cut `window`, merged from the partials of its panes.
    async fn merged_partials(
        &self,
        partition: i32,
        window: Window,
    ) -> Result<std::collections::BTreeMap<(String, String, String), WindowState>, MonitorError> {
        let partials =
            self.store.partials_on_partition(partition as u32, window.start, window.end() as u32).await?;
        let mut merged: std::collections::BTreeMap<(String, String, String), WindowState> =
            Default::default();
        for p in partials {
            if !self.settings.windows.for_model(&p.model_id).has(window) {
                continue;
            }
            let state = WindowState::decode(&p.state)?;
            merged.entry((p.model_id, p.model_version, p.segment)).or_default().merge(&state)?;
        }
        Ok(merged)
    }

    async fn close_performance(&mut self, partition: i32, window: Window) -> Result<(), MonitorError> {
        let merged = self.merged_partials(partition, window).await?;
        let computed_at = unix_seconds();
        let window_start = window.start;
        let rows: Vec<_> = merged
            .iter()
            .filter(|(_, state)| state.events > 0)
            .map(|(key, state)| self.performance_row(key, window, state, computed_at))
            .collect();
        let mut checks = Vec::new();
        for row in rows.iter().filter(|r| r.segment.is_empty()) {
            let key = WindowKey {
                model_id: row.model_id.clone(),
                model_version: row.model_version.clone(),
                window_start,
            };
            let summary = merged[&(row.model_id.clone(), row.model_version.clone(), String::new())]
                .performance
                .as_ref()
                .map(|p| p.summary(&self.settings.positive_label))
                .unwrap_or_default();
            self.note_reference_performance(&key, &summary);
            checks.extend(self.evaluate_performance(&key, &summary, computed_at).await?);
        }
        self.store.insert_policy_checks(&checks).await?;
        self.export_latest(&checks, &rows);
        self.store.insert_window_performance(&rows).await?;
        self.metrics.performance_rows.inc_by(rows.len() as u64);
        Ok(())
    }

    /// Latest verdicts and performance (all traffic) to the Prometheus gauges.
    fn export_latest(
        &self,
        checks: &[vigil_store::PolicyCheckRow],
        performance: &[vigil_store::WindowPerformanceRow],
    ) {
        for c in checks.iter().filter(|c| c.verdict != Verdict::InsufficientData.name()) {
            self.metrics.latest.verdict(
                &c.model_id,
                &c.model_version,
                &c.policy,
                c.verdict == Verdict::Breach.name(),
            );
        }
        for p in performance.iter().filter(|p| p.segment.is_empty() && p.labeled > 0) {
            self.metrics.latest.performance(&p.model_id, &p.model_version, p.accuracy, p.coverage);
        }
    }

    /// Keeps the performance of a version's baseline window as the yardstick for later ones.
    fn note_reference_performance(
        &mut self,
        window: &WindowKey,
        summary: &crate::performance::PerformanceSummary,
    ) {
        let Some((reference_id, _)) =
            self.references.get(&(window.model_id.clone(), window.model_version.clone()))
        else {
            return;
        };
        if reference_id.ends_with(&format!(":{}", window.window_start)) {
            self.reference_performance.insert(reference_id.clone(), summary.clone());
        }
    }

    fn row_context(&self, window_seconds: u32, computed_at: u32) -> rows::RowContext<'_> {
        rows::RowContext {
            window_seconds,
            config_hash: &self.config_hash,
            positive_label: &self.settings.positive_label,
            drift_policy: &self.drift_policy,
            computed_at,
        }
    }

    fn reference_id(&self, model_id: &str, model_version: &str) -> String {
        self.references
            .get(&(model_id.to_owned(), model_version.to_owned()))
            .map(|(id, _)| id.clone())
            .unwrap_or_default()
    }

    fn performance_row(
        &self,
        (model_id, model_version, segment): &(String, String, String),
        window: Window,
        state: &WindowState,
        computed_at: u32,
    ) -> vigil_store::WindowPerformanceRow {
        let key = rows::RowKey {
            model_id: model_id.clone(),
            model_version: model_version.clone(),
            segment: segment.clone(),
            window_start: window.start,
        };
        rows::performance(
            &self.row_context(window.length, computed_at),
            &key,
            state,
            &self.reference_id(model_id, model_version),
        )
    }

    /// Closes the windows the watermark has passed, now that their partials are stored: merges
    /// each (model, version, segment)'s partials and writes its numbers. A failure leaves the
    /// window open for the next flush; closing again is idempotent.
    async fn close_due_windows(&mut self) {
        for (partition, window, waited) in self.clock.take_closable() {
            match self.close_window(partition, window).await {
                Ok(keys) => {
                    self.metrics.windows_closed.inc_by(keys);
                    self.metrics.close_latency_seconds.observe(waited.as_secs_f64());
                }
                Err(error) => {
                    tracing::warn!(%error, partition, window_start = window.start, window_seconds = window.length, "closing window failed; retrying at the next flush");
                    self.metrics.close_errors.inc();
                    self.clock.reopen(partition, window);
                }
            }
        }
    }

    /// Checks the drift policy for one closed window, unless an earlier close decided it.
    async fn evaluate_drift(
        &mut self,
        window: &WindowKey,
        reference_id: &str,
        events: u64,
        results: &[crate::drift::FeatureDrift],
        now: u32,
    ) -> Result<Option<vigil_store::PolicyCheckRow>, MonitorError> {
        let settings = self.settings.policies.for_model(&window.model_id).drift.clone();
        if self.streaks.decided(
            &window.model_id,
            &window.model_version,
            &settings.escalation.name,
            window.window_start,
        ) {
            return Ok(None);
        }
        let check = policy::check(&settings, events, results);
        let evidence = results
            .iter()
            .filter(|r| check.drifted.contains(&r.feature))
            .map(|r| vigil_events::Evidence {
                metric: format!("drift.{}", r.result.test.name()),
                value: r.result.p_value.unwrap_or(r.result.statistic),
                threshold: if r.result.p_value.is_some() {
                    check.corrected_alpha
                } else {
                    r.result.threshold
                },
                feature: Some(r.feature.clone()),
            })
            .collect();
        let detail = format!(
            "{{\"drifted\":{},\"tested\":{},\"corrected_alpha\":{}}}",
            serde_json_list(&check.drifted),
            check.tested,
            check.corrected_alpha
        );
        let judgement = Judgement {
            verdict: check.verdict,
            value: check.drifted.len() as f64,
            threshold: settings.min_drifted_features as f64,
            evidence,
        };
        Ok(Some(
            self.decide(window, &settings.escalation, judgement, detail, reference_id, events, now).await?,
        ))
    }

    /// Records one policy's verdict on a window: extends or resets the streak and, on a breach
    /// that lasted the configured windows, publishes a remediation with the evidence.
    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &mut self,
        window: &WindowKey,
        escalation: &Escalation,
        judgement: Judgement,
        detail: String,
        reference_id: &str,
        events: u64,
        now: u32,
    ) -> Result<vigil_store::PolicyCheckRow, MonitorError> {
        let WindowKey { model_id, model_version, window_start } = window;
        let streak =
            self.streaks.record(model_id, model_version, &escalation.name, *window_start, judgement.verdict);
        let mut remediation_id = String::new();
        if judgement.verdict == Verdict::Breach && streak >= escalation.consecutive_windows {
            remediation_id = policy::remediation_id(
                model_id,
                model_version,
                *window_start,
                &escalation.name,
                &self.config_hash,
            );
            let event = vigil_events::RemediationEvent {
                remediation_id: remediation_id.clone(),
                model_id: model_id.clone(),
                model_version: model_version.clone(),
                window_start_ms: i64::from(*window_start) * 1000,
                window_end_ms: (i64::from(*window_start)
                    + i64::from(self.settings.windows.for_model(model_id).length))
                    * 1000,
                severity: escalation.severity,
                action: escalation.action,
                policy: escalation.name.clone(),
                evidence: judgement.evidence,
                reference_id: (!reference_id.is_empty()).then(|| reference_id.to_owned()),
                config_hash: self.config_hash.clone(),
                created_at_ms: i64::from(now) * 1000,
            };
            self.remediations.send(&event).await?;
            self.metrics.remediations.inc();
            tracing::warn!(model_id, model_version, window_start, remediation_id, policy = %escalation.name, %detail, "policy breached: remediation sent");
        }
        let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
        Ok(vigil_store::PolicyCheckRow {
            model_id: model_id.clone(),
            model_version: model_version.clone(),
            window_start: *window_start,
            policy: escalation.name.clone(),
            verdict: judgement.verdict.name().to_owned(),
            value: finite(judgement.value),
            threshold: finite(judgement.threshold),
            detail,
            streak,
            remediation_id,
            events,
            reference_id: reference_id.to_owned(),
            config_hash: self.config_hash.clone(),
            computed_at: now,
        })
    }

    /// Judges a window's performance once it has enough outcomes: a window is decided once (the
    /// first time it has `min_labeled`), so late outcomes do not re-run its streak. Before that,
    /// its check is stored as insufficient data. `events` on performance checks counts outcomes.
    async fn evaluate_performance(
        &mut self,
        window: &WindowKey,
        summary: &crate::performance::PerformanceSummary,
        now: u32,
    ) -> Result<Option<vigil_store::PolicyCheckRow>, MonitorError> {
        if self.performance_decided.contains(window) {
            return Ok(None);
        }
        let settings = self.settings.policies.for_model(&window.model_id).performance.clone();
        let reference = self
            .references
            .get(&(window.model_id.clone(), window.model_version.clone()))
            .map(|(id, _)| id.clone())
            .unwrap_or_default();
        let judgement =
            policy::check_performance(&settings, summary, self.reference_performance.get(&reference));
        if judgement.verdict == Verdict::InsufficientData {
            let detail =
                format!("{{\"labeled\":{},\"min_labeled\":{}}}", summary.labeled, settings.min_labeled);
            return Ok(Some(self.insufficient_row(
                window,
                &settings.escalation.name,
                detail,
                &reference,
                summary.labeled,
                now,
            )));
        }
        self.performance_decided.insert(window.clone());
        let detail = format!(
            "{{\"labeled\":{},\"accuracy\":{},\"reference_accuracy\":{}}}",
            summary.labeled,
            json_number(summary.accuracy),
            json_number(self.reference_performance.get(&reference).and_then(|r| r.accuracy))
        );
        Ok(Some(
            self.decide(window, &settings.escalation, judgement, detail, &reference, summary.labeled, now)
                .await?,
        ))
    }

    /// A check row that changes no streak.
    fn insufficient_row(
        &self,
        window: &WindowKey,
        policy: &str,
        detail: String,
        reference_id: &str,
        events: u64,
        now: u32,
    ) -> vigil_store::PolicyCheckRow {
        vigil_store::PolicyCheckRow {
            model_id: window.model_id.clone(),
            model_version: window.model_version.clone(),
            window_start: window.window_start,
            policy: policy.to_owned(),
            verdict: Verdict::InsufficientData.name().to_owned(),
            value: 0.0,
            threshold: 0.0,
            detail,
            streak: self.streaks.current(&window.model_id, &window.model_version, policy),
            remediation_id: String::new(),
            events,
            reference_id: reference_id.to_owned(),
            config_hash: self.config_hash.clone(),
            computed_at: now,
        }
    }

    async fn evaluate_latency(
        &mut self,
        window: &WindowKey,
        events: u64,
        p99_ms: Option<f64>,
        now: u32,
    ) -> Result<Option<vigil_store::PolicyCheckRow>, MonitorError> {
        let settings = self.settings.policies.for_model(&window.model_id).latency.clone();
        if settings.max_p99_ms.is_none()
            || self.streaks.decided(
                &window.model_id,
                &window.model_version,
                &settings.escalation.name,
                window.window_start,
            )
        {
            return Ok(None);
        }
        let judgement = policy::check_latency(&settings, events, p99_ms);
        let detail = format!("{{\"p99_ms\":{},\"events\":{events}}}", json_number(p99_ms));
        Ok(Some(self.decide(window, &settings.escalation, judgement, detail, "", events, now).await?))
    }

    /// Makes `state` (a version's first closed window with enough events) its reference.
    async fn create_baseline(
        &mut self,
        model_id: &str,
        model_version: &str,
        window_start: u32,
        state: &WindowState,
        now: u32,
    ) -> Result<(), MonitorError> {
        // Drift is tested against the events; the outcomes joined by now depend on arrival
        // timing (the baseline's accuracy is its window_performance row).
        let state = &WindowState { performance: None, ..state.clone() };
        let encoded = state.encode()?;
        let content_hash = crate::reference::state_content_hash(state)?;
        let reference_id = format!("baseline:{model_id}:{model_version}:{window_start}");
        self.store
            .insert_reference(&vigil_store::ReferenceRow {
                model_id: model_id.to_owned(),
                model_version: model_version.to_owned(),
                reference_id: reference_id.clone(),
                content_hash,
                source: format!("live baseline: window {window_start}, {} events", state.events),
                events: state.events,
                state: encoded,
                created_at: now,
            })
            .await?;
        tracing::info!(
            model_id,
            model_version,
            reference_id,
            events = state.events,
            "baseline reference created"
        );
        self.metrics.references_created.inc();
        self.references
            .insert((model_id.to_owned(), model_version.to_owned()), (reference_id, state.clone()));
        Ok(())
    }

    async fn close_window(&mut self, partition: i32, window: Window) -> Result<u64, MonitorError> {
        let merged = self.merged_partials(partition, window).await?;
        let window_start = window.start;
        let computed_at = unix_seconds();
        let mut rows = Vec::with_capacity(merged.len());
        let mut performance_rows = Vec::with_capacity(merged.len());
        let mut drift_rows = Vec::new();
        let mut policy_inputs = Vec::new();
        let mut budget_inputs = Vec::new();
        let mut without_reference = Vec::new();
        for ((model_id, model_version, segment), state) in merged {
            if state.events == 0 {
                // Only outcomes so far (their predictions' partials are elsewhere or not yet
                // stored): nothing to report until the predictions close this window.
                continue;
            }
            let reference_key = (model_id.clone(), model_version.clone());
            if !self.references.contains_key(&reference_key)
                && segment.is_empty()
                && state.events >= self.settings.baseline_min_events
            {
                self.create_baseline(&model_id, &model_version, window_start, &state, computed_at).await?;
            }
            let key = rows::RowKey { model_id, model_version, segment, window_start };
            let ctx = self.row_context(window.length, computed_at);
            let reference_id = match self.references.get(&reference_key) {
                Some((id, reference)) => {
                    let (results, rows, skipped) =
                        rows::drift(&ctx, &key, &state, &rows::ReferenceRef { id, state: reference });
                    for (feature, error) in skipped {
                        tracing::debug!(%error, feature, model_id = %key.model_id, "drift test skipped");
                    }
                    self.metrics.drift_tests.inc_by(results.len() as u64);
                    self.metrics
                        .features_drifted
                        .inc_by(results.iter().filter(|r| r.result.drifted).count() as u64);
                    if key.segment.is_empty() && !results.is_empty() {
                        policy_inputs.push((
                            key.model_id.clone(),
                            key.model_version.clone(),
                            id.clone(),
                            state.events,
                            results,
                        ));
                    }
                    drift_rows.extend(rows);
                    id.clone()
                }
                None => {
                    if key.segment.is_empty() {
                        without_reference.push((reference_key.clone(), state.events));
                    }
                    String::new()
                }
            };
            let metrics_row = rows::metrics(&ctx, &key, &state, &reference_id, partition as u32);
            performance_rows.push(rows::performance(&ctx, &key, &state, &reference_id));
            if key.segment.is_empty() {
                let performance = state
                    .performance
                    .as_ref()
                    .map(|p| p.summary(&self.settings.positive_label))
                    .unwrap_or_default();
                let window = WindowKey {
                    model_id: key.model_id.clone(),
                    model_version: key.model_version.clone(),
                    window_start,
                };
                budget_inputs.push((window, state.events, metrics_row.latency_p99_ms, performance));
            }
            rows.push(metrics_row);
        }
        for ((model_id, model_version), events) in without_reference {
            self.metrics.windows_without_reference.inc();
            if self.missing_reference_noted.insert((model_id.clone(), model_version.clone())) {
                tracing::warn!(
                    model_id,
                    model_version,
                    window_start,
                    events,
                    baseline_min_events = self.settings.baseline_min_events,
                    "no reference for this version yet: drift is not tested until a window reaches \
                     monitor.baseline_min_events or a reference is uploaded (vigil reference upload)"
                );
            }
        }
        for row in rows.iter().filter(|r| r.segment.is_empty()) {
            let drifted = drift_rows.iter().filter(|d| {
                d.segment.is_empty() && d.model_id == row.model_id && d.model_version == row.model_version
            });
            let tested = drifted.clone().count();
            let window = crate::metrics::LatestWindow {
                events: row.events,
                drifted_features: (tested > 0).then(|| drifted.filter(|d| d.drifted == 1).count()),
                latency_p99_ms: row.latency_p99_ms,
            };
            self.metrics.latest.window(&row.model_id, &row.model_version, &window);
        }
        // Drift and policies first: a window counts as closed once its metrics row exists.
        self.store.insert_feature_drift(&drift_rows).await?;
        let mut checks = Vec::new();
        for (model_id, model_version, reference_id, events, results) in policy_inputs {
            let window = WindowKey { model_id, model_version, window_start };
            checks.extend(self.evaluate_drift(&window, &reference_id, events, &results, computed_at).await?);
        }
        for (window, events, p99, performance) in budget_inputs {
            checks.extend(self.evaluate_latency(&window, events, p99, computed_at).await?);
            self.note_reference_performance(&window, &performance);
            checks.extend(self.evaluate_performance(&window, &performance, computed_at).await?);
        }
        self.store.insert_policy_checks(&checks).await?;
        self.export_latest(&checks, &performance_rows);
        self.store.insert_window_performance(&performance_rows).await?;
        self.metrics.performance_rows.inc_by(performance_rows.len() as u64);
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
            if let Ok(stored) = self.stored_positions().await {
                if self
                    .pending
                    .positions()
                    .all(|(source, p, next)| stored.get(&(source, p as u32)).is_some_and(|s| *s >= next))
                {
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
        for (source, partition, next) in self.pending.positions() {
            let topic = match source {
                Source::Predictions => &self.settings.predictions_topic,
                Source::Outcomes => &self.settings.outcomes_topic,
            };
            if let Err(error) = list.add_partition_offset(topic, partition, Offset::Offset(next)) {
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
        self.metrics.outcomes_decoded.inc_by(local.outcomes);
        let join = self.join.take_counts();
        self.metrics.outcomes_matched.inc_by(join.matched);
        self.metrics.predictions_expired.inc_by(join.expired_predictions);
        self.metrics.outcomes_expired.inc_by(join.expired_outcomes);
        self.metrics.join_evicted.inc_by(join.evicted);
        self.metrics.join_duplicates.inc_by(join.duplicate_predictions + join.duplicate_outcomes);
        let (predictions, outcomes) = self.join.waiting();
        self.metrics.join_waiting_predictions.set(predictions as i64);
        self.metrics.join_waiting_outcomes.set(outcomes as i64);
    }
}

fn serde_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn note_newest(newest: &mut HashMap<(Source, i32), u64>, key: (Source, i32), event_time_ms: i64) {
    let seconds = (event_time_ms / 1000).max(0) as u64;
    let entry = newest.entry(key).or_insert(seconds);
    *entry = (*entry).max(seconds);
}

fn unix_seconds() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

/// One window of one model version (all segments).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WindowKey {
    model_id: String,
    model_version: String,
    window_start: u32,
}

fn json_number(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite()).map_or_else(|| "null".to_owned(), |x| x.to_string())
}
