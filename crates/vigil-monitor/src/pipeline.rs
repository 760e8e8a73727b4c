//! The live driver of the monitor: the consume task reads Kafka and feeds the monitor core
//! ([`MonitorCore`]: decode, clock, panes, join), stores each flush's partials with the
//! positions they cover, and hands windows that became closable to the closing task
//! (`closing.rs`) over a bounded channel.
//!
//! ```text
//! Kafka ─> consume task: core.on_message ─> flush: partials + positions, one INSERT ─> ClickHouse
//!              │ closable windows, watermarks (bounded channel, blocks when full)
//!              v
//!          closing task: merge partials ─> close() (pure) ─> rows + checks ─> remediations ─> commit
//! ```
//!
//! Exactly-once effect: each flush stores its partial window states and, on the same rows, the
//! next offset of every partition it covers, in one atomic INSERT. After a restart or rebalance
//! the monitor reads those positions back and the core skips messages below them, so whatever
//! Kafka redelivers is counted once. Kafka offset commits follow the stored positions and only
//! save re-reading.
//!
//! Outcomes join their predictions in memory (`join.rs`). That state is not stored: after a
//! (re)start or rebalance it is rebuilt by re-reading the join horizon before the stored
//! positions (`rebuild_join`), so a restarted monitor matches what an uninterrupted one would.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_store::Store;

use crate::closing::{CloseRequest, Closing, CLOSE_QUEUE};
use crate::http::Readiness;
use crate::kafka::{self, DeadLetters, MonitorConsumer, Origin, Remediations};
use crate::monitor_core::CoreSettings;
use crate::partials::Source;
use crate::shards::{Batch, ShardedCore};
use crate::windowing::Window;
use crate::{MonitorError, MonitorMetrics, MonitorSettings};

struct Pipeline {
    settings: MonitorSettings,
    store: Store,
    consumer: Arc<MonitorConsumer>,
    dead_letters: DeadLetters,
    metrics: MonitorMetrics,
    readiness: Readiness,
    /// The monitor core, one shard per thread.
    core: ShardedCore,
    /// Messages read but not yet taken by the core: taken a batch at a time, in parallel.
    batch: Batch,
    /// Whether the core resumed from the store since the last (re)start or rebalance.
    resumed: bool,
    /// What librdkafka's rebalance callbacks noted, applied by [`Self::apply_rebalance`].
    notes: Arc<std::sync::Mutex<kafka::RebalanceNotes>>,
    closing: mpsc::Sender<CloseRequest>,
    /// Outcome partitions paused until their predictions catch up ([`Self::align_topics`]).
    paused_outcomes: BTreeSet<i32>,
    /// When partials were last stored.
    flushed_at: Instant,
    /// Writer schemas of Confluent-framed messages, fetched by id on first sight.
    registry: Option<vigil_registry::Cache>,
}

/// Messages the core takes at once, split over its shards.
const BATCH_MESSAGES: usize = 2_048;

/// Runs until `shutdown` is cancelled (then drains, flushes and commits) or a fatal error.
pub async fn run(
    settings: MonitorSettings,
    store: Store,
    metrics: MonitorMetrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), MonitorError> {
    let (consumer, notes) = kafka::consumer(
        &settings.kafka,
        &settings.group_id,
        settings.instance_id.as_deref(),
        settings.session_timeout,
        metrics.consumer_lag.clone(),
    )?;
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
    tracing::info!(predictions = %settings.predictions_topic, outcomes = %settings.outcomes_topic, group = %settings.group_id, instance = settings.instance_id.as_deref().unwrap_or("-"), "monitor consuming");

    let registry = match &settings.schema_registry {
        Some((config, capacity)) => Some(vigil_registry::Cache::new(
            vigil_registry::Client::new(config.clone())
                .map_err(|e| MonitorError::Config(format!("schema_registry.url: {e}")))?,
            *capacity,
        )),
        None => None,
    };
    let remediations = Remediations::new(&settings.kafka, &settings.remediations_topic)?;
    let (closing, requests) = mpsc::channel(CLOSE_QUEUE);
    let abandon = CancellationToken::new();
    let closer = Closing::new(&settings, store.clone(), metrics.clone(), remediations);
    let closing_task = tokio::spawn(closer.run(requests, abandon.clone()));

    let mut pipeline = Pipeline {
        core: ShardedCore::new(CoreSettings::of(&settings), settings.threads),
        batch: Batch::default(),
        resumed: false,
        settings,
        store,
        consumer: consumer.clone(),
        dead_letters,
        metrics,
        readiness,
        notes,
        closing,
        paused_outcomes: BTreeSet::new(),
        flushed_at: Instant::now(),
        registry,
    };
    let mut tick = tokio::time::interval(pipeline.settings.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let result = loop {
        let step = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            _ = tick.tick() => pipeline.flush().await,
            message = consumer.recv() => match message {
                Ok(message) => pipeline.handle(&message).await,
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
        // A full batch, or a window that became due (its partials must be stored before it can
        // close: flushing early keeps close latency under a flush interval), at most every
        // quarter interval: catching up a backlog makes windows due all the time, and every
        // flush costs per key, whatever it holds.
        let early = pipeline.resumed
            && pipeline.core.window_due()
            && pipeline.flushed_at.elapsed() >= pipeline.settings.flush_interval / 4;
        if early
            || pipeline.core.pending_messages() + pipeline.batch.len()
                >= pipeline.settings.max_pending_messages
        {
            if let Err(error) = pipeline.flush().await {
                break Err(error);
            }
        }
    };
    pipeline.readiness.set(false);
    let drain = pipeline.settings.drain_timeout;
    let deadline = Instant::now() + drain;
    let result = match result {
        Ok(()) => {
            tracing::info!("shutting down: storing what is pending");
            match tokio::time::timeout(drain, pipeline.flush()).await {
                Ok(flushed) => flushed,
                Err(_) => {
                    tracing::warn!(
                        ?drain,
                        "final flush timed out; the next start re-reads from the stored position"
                    );
                    Ok(())
                }
            }
            .map(|()| pipeline.commit(CommitMode::Sync))
        }
        Err(error) => Err(error),
    };
    // The closing task finishes what was handed to it, within what is left of the drain time;
    // windows it leaves are reopened by the next start (their partials are newer than any close).
    drop(pipeline);
    let remaining = deadline.saturating_duration_since(Instant::now());
    if tokio::time::timeout(remaining, async {
        while !closing_task.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await
        }
    })
    .await
    .is_err()
    {
        tracing::warn!("closing did not finish within the drain time; the next start closes what is left");
        abandon.cancel();
    }
    let _ = closing_task.await;
    result
}

impl Pipeline {
    async fn handle(&mut self, message: &BorrowedMessage<'_>) -> Result<(), MonitorError> {
        self.apply_rebalance().await?;
        if !self.resumed {
            self.reload().await?;
        }
        let source = if message.topic() == self.settings.predictions_topic {
            Source::Predictions
        } else {
            Source::Outcomes
        };
        let payload = message.payload().unwrap_or_default();
        self.fetch_writer_schema(payload).await;
        self.batch.push(source, message.partition(), message.offset(), message.key(), payload);
        if self.batch.len() >= BATCH_MESSAGES {
            self.take_batch().await?;
        }
        Ok(())
    }

    /// For a message in the Confluent wire format whose schema id the core has not seen: fetches
    /// the writer schema from the registry, waiting out a registry that does not answer (with
    /// backoff, consumption paused meanwhile). An id the registry does not have, or no registry,
    /// leaves the core to dead-letter the message (`unknown_schema_id`).
    async fn fetch_writer_schema(&mut self, payload: &[u8]) {
        let Ok(vigil_events::Framing::Confluent { schema_id }) = vigil_events::detect(payload) else {
            return;
        };
        if self.core.knows_writer_schema(schema_id) {
            return;
        }
        let Some(registry) = &self.registry else { return };
        let mut backoff = Duration::from_millis(200);
        loop {
            match registry.schema(schema_id).await {
                Ok(schema) => {
                    tracing::info!(schema_id, "writer schema fetched from the registry");
                    self.core.add_writer_schema(schema_id, schema);
                    return;
                }
                Err(error) if error.retriable() => {
                    tracing::warn!(%error, schema_id, retry_in = ?backoff, "schema registry unavailable; waiting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(error) => {
                    tracing::warn!(%error, schema_id, "schema id unknown to the registry: its messages are dead-lettered");
                    return;
                }
            }
        }
    }

    /// Has the core take the batch (its shards in parallel) and dead-letters what it could not
    /// use, before any flush stores the positions that pass it.
    async fn take_batch(&mut self) -> Result<(), MonitorError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut rejected = Vec::new();
        self.core.take(&mut self.batch, |r| {
            rejected.push((
                r.source,
                r.partition,
                r.offset,
                r.key.map(<[u8]>::to_vec),
                r.payload.to_vec(),
                r.error,
            ));
        });
        for (source, partition, offset, key, payload, error) in rejected {
            let reason = error.reason();
            self.metrics.deadlettered.with_label_values(&[reason]).inc();
            let topic = match source {
                Source::Predictions => self.settings.predictions_topic.as_str(),
                Source::Outcomes => self.settings.outcomes_topic.as_str(),
            };
            let origin = Origin { topic, partition, offset, key: key.as_deref() };
            self.dead_letters.send(origin, &payload, reason, &error.to_string()).await?;
        }
        Ok(())
    }

    /// After a (re)start or rebalance: resume behind what is stored, with the segments it
    /// already has, the windows still to (re)close, and the outcome join rebuilt from the log.
    async fn reload(&mut self) -> Result<(), MonitorError> {
        let assigned: BTreeSet<i32> = match self.consumer.assignment() {
            Ok(list) => list.elements().iter().map(|e| e.partition()).collect(),
            Err(error) => return Err(MonitorError::Kafka { action: "read assignment", source: error }),
        };
        let newest: HashMap<i32, u64> = self
            .store
            .newest_windows()
            .await?
            .into_iter()
            .map(|(p, pane)| (p as i32, u64::from(pane)))
            .filter(|(p, _)| assigned.contains(p))
            .collect();
        let reopen = self.unclosed_windows(&newest).await?;
        let stored = self.stored_positions().await?;
        self.check_positions_within_topics(&assigned, &stored)?;
        let segments = self.store.stored_segments().await?;
        self.core.resume(stored.clone(), segments, newest.clone(), reopen);
        self.rebuild_join(&assigned, &stored, &newest).await?;
        self.closing.send(CloseRequest::Reload).await.map_err(|_| closing_gone())?;
        self.resumed = true;
        Ok(())
    }

    /// How far back (event time) from a partition's newest pane a restart looks for work: windows
    /// still to close and windows outcomes can still reach.
    fn lookback_seconds(&self) -> u64 {
        u64::from(self.settings.windows.longest())
            + self.settings.allowed_lateness.as_secs()
            + self.settings.join.horizon_seconds
    }

    /// Every window, on the assigned partitions, with partials stored since it was last closed,
    /// or never closed: the previous owner's next flush would have (re)closed it. That covers
    /// late events and late outcomes stored just before a crash. Partials written in the second
    /// of the close count as newer: closing again is idempotent.
    async fn unclosed_windows(&self, newest: &HashMap<i32, u64>) -> Result<Vec<(i32, Window)>, MonitorError> {
        let Some(oldest_newest) = newest.values().min() else { return Ok(Vec::new()) };
        let since = oldest_newest.saturating_sub(self.lookback_seconds()) as u32;
        let closed = self.store.closed_windows(since).await?;
        let mut reopen = Vec::new();
        for ((partition, model_id, pane), written_at) in self.store.stored_panes(since).await? {
            if !newest.contains_key(&(partition as i32)) {
                continue;
            }
            for window in self.settings.windows.for_model(&model_id).windows_containing(u64::from(pane)) {
                if closed
                    .get(&(partition, window.start, window.length))
                    .is_none_or(|closed_at| written_at >= *closed_at)
                {
                    reopen.push((partition as i32, window));
                }
            }
        }
        Ok(reopen)
    }

    /// Re-reads, for each assigned partition with stored positions, the join horizon (plus the
    /// allowed lateness) before them into the join only: predictions and outcomes still waiting
    /// at the stored positions wait again; pairs that matched there match again and are dropped,
    /// their numbers being stored already.
    async fn rebuild_join(
        &mut self,
        assigned: &BTreeSet<i32>,
        stored: &HashMap<(Source, i32), i64>,
        newest: &HashMap<i32, u64>,
    ) -> Result<(), MonitorError> {
        let back = self.settings.join.horizon_seconds + self.settings.allowed_lateness.as_secs();
        let mut ranges = Vec::new();
        for partition in assigned {
            let Some(pane) = newest.get(partition) else { continue };
            let from_ms =
                (*pane as i64 + i64::from(self.settings.windows.pane_seconds()) - back as i64).max(0) * 1000;
            for (source, topic) in [
                (Source::Predictions, &self.settings.predictions_topic),
                (Source::Outcomes, &self.settings.outcomes_topic),
            ] {
                if let Some(&end_offset) = stored.get(&(source, *partition)) {
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
        let core = &mut self.core;
        let read = kafka::read_history(&kafka_settings, &ranges, |topic, partition, payload| {
            let source = if topic == predictions_topic { Source::Predictions } else { Source::Outcomes };
            core.rejoin(source, partition, payload);
        })
        .await?;
        let (predictions, outcomes) = self.core.rejoined();
        tracing::info!(
            read,
            predictions,
            outcomes,
            seconds = started.elapsed().as_secs_f64(),
            "outcome join rebuilt from the log"
        );
        Ok(())
    }

    /// Takes what the rebalance callbacks noted since the last call. Runs before every message
    /// and at the start of every flush, so a flush never stores a partition this consumer no
    /// longer owns (its new owner may already have read the stored positions). Messages read
    /// before the rebalance are taken first, under the assignment they were read in.
    async fn apply_rebalance(&mut self) -> Result<(), MonitorError> {
        let (rebalanced, revoked) = kafka::take_rebalance(&self.notes);
        if rebalanced {
            self.take_batch().await?;
            self.on_rebalance(&revoked);
        }
        Ok(())
    }

    /// Drops work on revoked partitions and forgets positions and window clocks: the next message
    /// reloads them for the partitions this consumer owns now, from what their last owner stored.
    fn on_rebalance(&mut self, revoked: &[i32]) {
        self.metrics.rebalances.inc();
        self.core.revoke(revoked);
        self.resumed = false;
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
            let outcomes = self.core.newest(Source::Outcomes, partition).unwrap_or(0);
            let predictions = self.core.newest(Source::Predictions, partition).unwrap_or(0);
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

    /// A stored position past the end of its partition means the positions belong to another
    /// log: the topic was deleted and created again, or the database served another cluster.
    /// Resuming there would skip every message below it, so the monitor stops and says so.
    fn check_positions_within_topics(
        &self,
        assigned: &std::collections::BTreeSet<i32>,
        stored: &HashMap<(Source, i32), i64>,
    ) -> Result<(), MonitorError> {
        for (source, key, topic) in [
            (Source::Predictions, "topics.predictions", &self.settings.predictions_topic),
            (Source::Outcomes, "topics.outcomes", &self.settings.outcomes_topic),
        ] {
            for &partition in assigned {
                let Some(&position) = stored.get(&(source, partition)) else { continue };
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

    async fn stored_positions(&self) -> Result<HashMap<(Source, i32), i64>, MonitorError> {
        let mut stored = HashMap::new();
        for (source, topic) in [
            (Source::Predictions, &self.settings.predictions_topic),
            (Source::Outcomes, &self.settings.outcomes_topic),
        ] {
            for (partition, next) in self.store.stored_positions(topic).await? {
                stored.insert((source, partition as i32), next);
            }
        }
        Ok(stored)
    }

    fn commit(&self, mode: CommitMode) {
        let mut list = TopicPartitionList::new();
        for (source, partition, next) in self.core.positions() {
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

    /// Stores what is pending with its positions, then hands the closing task every window that
    /// became closable (by event time, or by wall clock on a quiet partition: this runs on every
    /// tick, whether or not anything arrived) and the watermarks.
    async fn flush(&mut self) -> Result<(), MonitorError> {
        self.apply_rebalance().await?;
        self.take_batch().await?;
        self.publish_counts();
        let mut with_outcomes = BTreeSet::new();
        if !self.core.nothing_pending() {
            let started = Instant::now();
            self.dead_letters.settle().await?;
            let topics = [self.settings.predictions_topic.as_str(), self.settings.outcomes_topic.as_str()];
            let rows = self.core.pending_rows(topics, unix_seconds())?;
            self.write_with_retry(&rows).await?;
            with_outcomes = self.core.panes_with_outcomes();
            self.metrics.flushes.inc();
            self.metrics.rows_written.inc_by(rows.len() as u64);
            self.metrics
                .events_written
                .inc_by(rows.iter().filter(|r| r.segment.is_empty()).map(|r| r.events).sum());
            self.metrics.flush_seconds.observe(started.elapsed().as_secs_f64());
            self.commit(CommitMode::Async);
            self.core.flushed();
            self.flushed_at = Instant::now();
            self.align_topics();
        }
        if !self.resumed {
            return Ok(());
        }
        let now = Instant::now();
        for (partition, window, waited) in self.core.closable(now) {
            self.request(CloseRequest::Window { partition, window, waited, handed_at: now }).await?;
        }
        // Outcomes for windows closed before: their performance again (only; their drift and
        // policy verdicts stand). Windows still open get them when they close.
        let mut reached = BTreeSet::new();
        for (partition, model_id, pane) in with_outcomes {
            for window in self.settings.windows.for_model(&model_id).windows_containing(u64::from(pane)) {
                if !self.core.is_open(partition, window) {
                    reached.insert((partition, window));
                }
            }
        }
        for (partition, window) in reached {
            self.request(CloseRequest::Performance { partition, window }).await?;
        }
        self.request(CloseRequest::Tick { watermarks: self.core.watermarks(now) }).await
    }

    /// Hands a request to the closing task, waiting while its queue is full (backpressure).
    async fn request(&self, request: CloseRequest) -> Result<(), MonitorError> {
        self.closing.send(request).await.map_err(|_| closing_gone())
    }

    /// Stores a flush's partials and positions, retrying with backoff for as long as
    /// ClickHouse is unreachable (consumption waits meanwhile). A rejected insert is a bug or a
    /// broken schema: it stops the monitor with the server's message.
    async fn write_with_retry(&mut self, rows: &[vigil_store::WindowPartialRow]) -> Result<(), MonitorError> {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            let error = match self.store.insert_window_partials(rows).await {
                Ok(()) => {
                    self.readiness.set(true);
                    return Ok(());
                }
                Err(error) => error,
            };
            self.metrics.sink_errors.inc();
            if !error.is_retryable() {
                return Err(error.into());
            }
            tracing::warn!(%error, attempt, ?backoff, "clickhouse write failed, retrying");
            self.readiness.set(false);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
            if let Ok(stored) = self.stored_positions().await {
                if self
                    .core
                    .positions()
                    .into_iter()
                    .all(|(source, p, next)| stored.get(&(source, p)).is_some_and(|s| *s >= next))
                {
                    tracing::info!(attempt, "the failed write had landed");
                    self.readiness.set(true);
                    return Ok(());
                }
            }
        }
    }

    /// The core's counts since the last flush, to Prometheus (per batch, not per event).
    fn publish_counts(&mut self) {
        let c = self.core.take_counts();
        let m = &self.metrics;
        m.consumed.inc_by(c.messages);
        m.decoded.inc_by(c.predictions);
        m.skipped_already_stored.inc_by(c.already_stored);
        m.late_events.inc_by(c.late_events);
        m.segment_overflow.inc_by(c.segment_overflow);
        m.outcomes_decoded.inc_by(c.outcomes);
        m.outcomes_matched.inc_by(c.join.matched);
        m.predictions_expired.inc_by(c.join.expired_predictions);
        m.outcomes_expired.inc_by(c.join.expired_outcomes);
        m.join_evicted.inc_by(c.join.evicted);
        m.join_duplicates.inc_by(c.join.duplicate_predictions + c.join.duplicate_outcomes);
        let (predictions, outcomes) = self.core.waiting();
        m.join_waiting_predictions.set(predictions as i64);
        m.join_waiting_outcomes.set(outcomes as i64);
    }
}

fn closing_gone() -> MonitorError {
    MonitorError::Config("the closing task stopped".into())
}

fn unix_seconds() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}
