//! The Kafka side: consumer with rebalance and lag tracking, topic creation, dead letters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntGauge;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};

use crate::MonitorError;

/// Connection settings shared by every Kafka client vigil makes.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    /// Extra librdkafka settings (security, timeouts), applied last.
    pub client: BTreeMap<String, String>,
}

impl KafkaSettings {
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }
}

/// Partitions revoked by a rebalance, handed from librdkafka's callback to the pipeline.
#[derive(Default)]
pub struct RebalanceNotes {
    revoked: Vec<i32>,
    happened: bool,
}

pub struct MonitorContext {
    notes: Arc<Mutex<RebalanceNotes>>,
    lag: IntGauge,
}

impl ClientContext for MonitorContext {
    fn stats(&self, statistics: Statistics) {
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        self.lag.set(lag);
    }
}

impl ConsumerContext for MonitorContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut notes = self.notes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        notes.happened = true;
        match rebalance {
            Rebalance::Revoke(list) => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions revoked");
                notes.revoked.extend(partitions);
            }
            Rebalance::Assign(list) => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

pub type MonitorConsumer = StreamConsumer<MonitorContext>;

pub fn consumer(
    settings: &KafkaSettings,
    group_id: &str,
    instance_id: Option<&str>,
    session_timeout: Duration,
    lag: IntGauge,
) -> Result<(MonitorConsumer, Arc<Mutex<RebalanceNotes>>), MonitorError> {
    let notes = Arc::new(Mutex::new(RebalanceNotes::default()));
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", group_id)
        // Positions live in ClickHouse with the counts; Kafka commits only follow them.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Range assigns the same partition numbers of every subscribed topic to one member, so
        // an outcome is consumed where its prediction's partition is (the join needs both).
        .set("partition.assignment.strategy", "range")
        .set("statistics.interval.ms", "5000")
        .set("session.timeout.ms", session_timeout.as_millis().to_string());
    if let Some(id) = instance_id {
        // Static membership: a restarted member with the same id takes its partitions back at
        // once (no rebalance, no wait for the dead member's session to expire).
        config.set("group.instance.id", id);
    }
    for (key, value) in &settings.client {
        config.set(key, value);
    }
    let consumer = config
        .create_with_context(MonitorContext { notes: notes.clone(), lag })
        .map_err(|e| MonitorError::Kafka { action: "create consumer", source: e })?;
    Ok((consumer, notes))
}

/// How many partitions `topic` has, from the broker's metadata.
pub fn partition_count(consumer: &MonitorConsumer, topic: &str) -> Result<usize, MonitorError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| MonitorError::Kafka { action: "fetch topic metadata", source: e })?;
    Ok(metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len()))
}

/// The offset after a partition's last message (its high watermark).
pub fn log_end(consumer: &MonitorConsumer, topic: &str, partition: i32) -> Result<i64, MonitorError> {
    let (_, end) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .map_err(|e| MonitorError::Kafka { action: "fetch watermarks", source: e })?;
    Ok(end)
}

/// A stretch of one partition to read again: from the first message at or after `from_ms`
/// (Kafka timestamp) up to `end_offset`, exclusive.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRange {
    pub topic: String,
    pub partition: i32,
    pub from_ms: i64,
    pub end_offset: i64,
}

/// Reads `ranges` with a group-less consumer and calls `f(topic, partition, timestamp, payload)` for each
/// message, in offset order per partition; returns how many it read. Stops early, with a
/// warning, if the broker sends nothing for 30 s.
pub async fn read_history(
    settings: &KafkaSettings,
    ranges: &[HistoryRange],
    mut f: impl FnMut(&str, i32, Option<i64>, &[u8]),
) -> Result<u64, MonitorError> {
    if ranges.is_empty() {
        return Ok(0);
    }
    let kafka = |action: &'static str| move |source| MonitorError::Kafka { action, source };
    let consumer: StreamConsumer = settings
        .client_config()
        .set("group.id", "vigil-monitor-history")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(kafka("create history consumer"))?;
    let mut query = TopicPartitionList::new();
    for r in ranges {
        query
            .add_partition_offset(&r.topic, r.partition, Offset::Offset(r.from_ms))
            .map_err(kafka("look up history offsets"))?;
    }
    let starts = consumer
        .offsets_for_times(query, Duration::from_secs(30))
        .map_err(kafka("look up history offsets"))?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for start in starts.elements() {
        let Some(range) =
            ranges.iter().find(|r| r.topic == start.topic() && r.partition == start.partition())
        else {
            continue;
        };
        // `End`: no message at or after the timestamp, nothing to read.
        let first = match start.offset() {
            Offset::Offset(o) => o,
            Offset::End => continue,
            _ => 0,
        };
        if first < range.end_offset {
            assignment
                .add_partition_offset(&range.topic, range.partition, Offset::Offset(first))
                .map_err(kafka("assign history"))?;
            remaining.insert((range.topic.clone(), range.partition), range.end_offset);
        }
    }
    if remaining.is_empty() {
        return Ok(0);
    }
    consumer.assign(&assignment).map_err(kafka("assign history"))?;
    let mut read = 0;
    while !remaining.is_empty() {
        let message = match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Ok(message) => message.map_err(kafka("read history"))?,
            Err(_) => {
                tracing::warn!(?remaining, "history read stalled; continuing with what was read");
                break;
            }
        };
        let key = (message.topic().to_owned(), message.partition());
        let Some(&end) = remaining.get(&key) else { continue };
        if message.offset() < end {
            let timestamp_ms = message.timestamp().to_millis();
            f(message.topic(), message.partition(), timestamp_ms, message.payload().unwrap_or_default());
            read += 1;
        }
        if message.offset() + 1 >= end {
            remaining.remove(&key);
        }
    }
    Ok(read)
}

/// Where one partition's retained log starts and ends.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionExtent {
    pub topic: String,
    pub partition: i32,
    /// The oldest offset still retained (the low watermark; above 0 once retention deleted some).
    pub start: i64,
    /// The offset the next message will get (the high watermark).
    pub end: i64,
}

/// Every partition of `topics` with its retained extent. Blocks for up to 30 s per call to the
/// broker. A topic the broker does not know is an error.
pub fn log_extents(settings: &KafkaSettings, topics: &[&str]) -> Result<Vec<PartitionExtent>, MonitorError> {
    let kafka = |action: &'static str| move |source| MonitorError::Kafka { action, source };
    let consumer: BaseConsumer = settings.client_config().create().map_err(kafka("create log reader"))?;
    let timeout = Duration::from_secs(30);
    let mut extents = Vec::new();
    for topic in topics {
        let metadata =
            consumer.fetch_metadata(Some(topic), timeout).map_err(kafka("fetch topic metadata"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == *topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(MonitorError::Config(format!("topic {topic:?} does not exist or has no partitions")));
        }
        for partition in partitions {
            let (start, end) =
                consumer.fetch_watermarks(topic, partition, timeout).map_err(kafka("fetch watermarks"))?;
            extents.push(PartitionExtent { topic: (*topic).to_owned(), partition, start, end });
        }
    }
    extents.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(extents)
}

/// One message read back from the log.
#[derive(Debug, Clone, Copy)]
pub struct RetainedMessage<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp (create or log-append time), if it has one.
    pub timestamp_ms: Option<i64>,
    pub payload: &'a [u8],
}

/// Reads every extent from `start` up to `end` (exclusive) with a group-less consumer and calls
/// `f` for each message, in offset order per partition; returns how many it read. Unlike
/// [`read_history`], a broker that sends nothing for `stall` is an error: a replay must see
/// every message it asked for.
pub async fn read_retained(
    settings: &KafkaSettings,
    extents: &[PartitionExtent],
    stall: Duration,
    mut f: impl FnMut(RetainedMessage<'_>),
) -> Result<u64, MonitorError> {
    let kafka = |action: &'static str| move |source| MonitorError::Kafka { action, source };
    let mut assignment = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for e in extents.iter().filter(|e| e.start < e.end) {
        assignment
            .add_partition_offset(&e.topic, e.partition, Offset::Offset(e.start))
            .map_err(kafka("assign log reader"))?;
        remaining.insert((e.topic.clone(), e.partition), e.end);
    }
    if remaining.is_empty() {
        return Ok(0);
    }
    let consumer: StreamConsumer = settings
        .client_config()
        .set("group.id", "vigil-replay")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(kafka("create log reader"))?;
    consumer.assign(&assignment).map_err(kafka("assign log reader"))?;
    let mut read = 0;
    while !remaining.is_empty() {
        let message = match tokio::time::timeout(stall, consumer.recv()).await {
            Ok(message) => message.map_err(kafka("read the log"))?,
            Err(_) => {
                tracing::error!(?remaining, ?stall, "the broker sent nothing");
                return Err(MonitorError::Kafka {
                    action: "read the log (the broker stalled)",
                    source: KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
                });
            }
        };
        let key = (message.topic().to_owned(), message.partition());
        let Some(&end) = remaining.get(&key) else { continue };
        if message.offset() < end {
            f(RetainedMessage {
                topic: message.topic(),
                partition: message.partition(),
                offset: message.offset(),
                timestamp_ms: message.timestamp().to_millis(),
                payload: message.payload().unwrap_or_default(),
            });
            read += 1;
        }
        if message.offset() + 1 >= end {
            remaining.remove(&key);
        }
    }
    Ok(read)
}

/// Takes what the rebalance callbacks noted since the last call: (any rebalance?, revoked).
pub fn take_rebalance(notes: &Mutex<RebalanceNotes>) -> (bool, Vec<i32>) {
    let mut notes = notes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let happened = std::mem::take(&mut notes.happened);
    (happened, std::mem::take(&mut notes.revoked))
}

/// Creates missing topics; an existing topic is left as it is.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[&str],
    partitions: i32,
) -> Result<(), MonitorError> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config()
        .create()
        .map_err(|e| MonitorError::Kafka { action: "create admin client", source: e })?;
    let new_topics: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(new_topics.iter(), &options)
        .await
        .map_err(|e| MonitorError::Kafka { action: "create topics", source: e })?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(MonitorError::Kafka {
                    action: "create topics",
                    source: KafkaError::AdminOp(code),
                })
                .inspect_err(|_| tracing::error!(topic, ?code, "topic creation failed"));
            }
        }
    }
    Ok(())
}

/// Where a dead letter came from, for its headers.
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
}

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    in_flight: Vec<InFlight>,
}

/// A dead letter on its way, with what a reference to it needs should the broker refuse it.
struct InFlight {
    delivery: DeliveryFuture,
    headers: OwnedHeaders,
    size: usize,
}

impl DeadLetters {
    pub fn new(settings: &KafkaSettings, topic: &str) -> Result<Self, MonitorError> {
        let producer = settings
            .client_config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .map_err(|e| MonitorError::Kafka { action: "create dead-letter producer", source: e })?;
        Ok(Self { producer, topic: topic.to_owned(), in_flight: Vec::new() })
    }

    /// Queues the original bytes with the reason in headers; [`Self::settle`] awaits delivery.
    /// A message too large for the dead-letter topic goes there by reference instead: no payload,
    /// its source topic, partition, offset and size in headers (the original stays in its topic
    /// until retention removes it).
    pub async fn send(
        &mut self,
        origin: Origin<'_>,
        payload: &[u8],
        reason: &str,
        detail: &str,
    ) -> Result<(), MonitorError> {
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "vigil.reason", value: Some(reason) })
            .insert(Header { key: "vigil.error", value: Some(detail) })
            .insert(Header { key: "vigil.source.topic", value: Some(origin.topic) })
            .insert(Header { key: "vigil.source.partition", value: Some(&partition) })
            .insert(Header { key: "vigil.source.offset", value: Some(&offset) });
        let topic = self.topic.clone();
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic).payload(payload).headers(headers.clone());
        if let Some(key) = origin.key {
            record = record.key(key);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push(InFlight { delivery, headers, size: payload.len() });
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    self.settle().await?;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    return self.send_reference(headers, payload.len()).await;
                }
                Err((error, _)) => {
                    return Err(MonitorError::Kafka { action: "send dead letter", source: error })
                }
            }
        }
    }

    /// Sends a dead letter without its payload and waits for the broker to have it.
    async fn send_reference(&self, headers: OwnedHeaders, size: usize) -> Result<(), MonitorError> {
        let size = size.to_string();
        let headers = headers
            .insert(Header {
                key: "vigil.payload",
                value: Some("omitted: too large for the dead-letter topic"),
            })
            .insert(Header { key: "vigil.source.size", value: Some(&size) });
        let record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        self.producer.send(record, Duration::from_secs(30)).await.map(|_| ()).map_err(|(error, _)| {
            MonitorError::Kafka { action: "send dead letter by reference", source: error }
        })
    }

    /// Waits until every queued dead letter is acknowledged by the broker. A flush calls this
    /// before storing its position, so a dead letter is never behind a stored position unsent.
    pub async fn settle(&mut self) -> Result<(), MonitorError> {
        let mut refused = Vec::new();
        for InFlight { delivery, headers, size } in self.in_flight.drain(..) {
            match delivery.await {
                Ok(Ok(_)) => {}
                // The broker's limit for the topic can be below the producer's.
                Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _))) => {
                    refused.push((headers, size));
                }
                Ok(Err((error, _))) => {
                    return Err(MonitorError::Kafka { action: "deliver dead letter", source: error })
                }
                Err(_) => {
                    return Err(MonitorError::Kafka {
                        action: "deliver dead letter",
                        source: KafkaError::Canceled,
                    })
                }
            }
        }
        for (headers, size) in refused {
            self.send_reference(headers, size).await?;
        }
        Ok(())
    }
}

/// Publishes remediation events, keyed by model id, with an idempotent producer; a send returns
/// once the broker has the event.
pub struct Remediations {
    producer: FutureProducer,
    topic: String,
    settings: KafkaSettings,
}

impl Remediations {
    pub fn new(settings: &KafkaSettings, topic: &str) -> Result<Self, MonitorError> {
        let producer = settings
            .client_config()
            .set("enable.idempotence", "true")
            .create()
            .map_err(|e| MonitorError::Kafka { action: "create remediation producer", source: e })?;
        Ok(Self { producer, topic: topic.to_owned(), settings: settings.clone() })
    }

    /// Which of `ids` the remediations topic already holds, reading every partition from
    /// `since_ms` (Kafka timestamps) to its end: a remediation whose send a crash interrupted
    /// after the broker had it is not sent twice.
    pub async fn already_sent(
        &self,
        ids: &std::collections::HashSet<String>,
        since_ms: i64,
    ) -> Result<std::collections::HashSet<String>, MonitorError> {
        let (settings, topic) = (self.settings.clone(), self.topic.clone());
        let extents = tokio::task::spawn_blocking(move || log_extents(&settings, &[&topic])).await.map_err(
            |_| MonitorError::Kafka { action: "read remediation extents", source: KafkaError::Canceled },
        )??;
        let ranges: Vec<HistoryRange> = extents
            .into_iter()
            .filter(|e| e.end > e.start)
            .map(|e| HistoryRange {
                topic: e.topic,
                partition: e.partition,
                from_ms: since_ms,
                end_offset: e.end,
            })
            .collect();
        let mut found = std::collections::HashSet::new();
        read_history(&self.settings, &ranges, |_, _, _, payload| {
            if let Ok(event) = vigil_events::decode::<vigil_events::RemediationEvent>(payload) {
                if ids.contains(&event.remediation_id) {
                    found.insert(event.remediation_id);
                }
            }
        })
        .await?;
        Ok(found)
    }

    pub async fn send(&self, event: &vigil_events::RemediationEvent) -> Result<(), MonitorError> {
        let payload = vigil_events::encode(event);
        let record = FutureRecord::to(&self.topic).key(&event.model_id).payload(&payload);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(error, _)| MonitorError::Kafka { action: "send remediation", source: error })
    }
}
