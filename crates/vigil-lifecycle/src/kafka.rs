//! The thin Kafka adapter: replay `vigil.lifecycle.v1` from the beginning into a [`Registry`],
//! then consume `vigil.remediations.v1` and the commands people send (through the HTTP API),
//! decide, and publish the decisions to the lifecycle log. The consumer task is the registry's
//! only writer, so decisions and commands are applied and published in one order.
//!
//! Exactly-once effect without transactions: decisions have deterministic event ids and the log
//! is replayed before any remediation is read, so a remediation redelivered after a crash (its
//! offset was not committed yet) finds its decision already in the registry and publishes
//! nothing. The remediation offset is committed only after the broker acknowledged the
//! decision (idempotent producer, `acks=all`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use vigil_events::{decode, encode, LifecycleEvent, RemediationEvent};

use crate::approvals::Approvals;
use crate::engine::{Command, CommandError, CommandErrorKind, Engine};
use crate::{now_ms, Decision, LifecycleError, LifecyclePolicy, Outcome, Registry};

/// What [`run`] needs, already validated by the caller.
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    pub brokers: String,
    /// Extra librdkafka settings (security, timeouts), applied last.
    pub client: BTreeMap<String, String>,
    pub lifecycle_topic: String,
    pub remediations_topic: String,
    /// Where remediations that do not decode go, with the reason in headers (the monitor's
    /// dead-letter topic).
    pub deadletter_topic: String,
    /// Consumer group for remediations; the lifecycle log is always read whole, without a group.
    pub group_id: String,
    pub policy: LifecyclePolicy,
    /// Longest time the start-up replay of the lifecycle log may take.
    pub replay_timeout: Duration,
}

impl LifecycleSettings {
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config
    }

    fn finish(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }
}

/// Counts from a replay of the lifecycle log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub applied: u64,
    /// Undecodable messages and events the registry rejected: skipped, the same way on every
    /// machine, and logged.
    pub rejected: u64,
    /// Next offset per partition once the replay ended.
    pub positions: BTreeMap<i32, i64>,
}

/// An event of the lifecycle log with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub event: LifecycleEvent,
    pub partition: i32,
    pub offset: i64,
}

/// Where events newly applied to the registry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The log, replayed at start.
    Replay,
    /// The log's tail: events others published (a `register`, another instance).
    Log,
    /// This consumer's decisions on remediations.
    Decision,
    /// Commands from the HTTP API.
    Command,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Replay => "replay",
            Origin::Log => "log",
            Origin::Decision => "decision",
            Origin::Command => "command",
        }
    }
}

/// What the consumer tells the rest of the process (alerts, the serving platform, the audit
/// table, metrics). Every method runs on the consumer's task, so none may block.
pub trait Observer: Send {
    /// Events newly applied to the registry (`registry` is the state after them) with their
    /// positions in the log: the replay at start, then the tail, decisions and commands, the
    /// consumer's own once the broker acknowledged them.
    fn applied(&mut self, _registry: &Registry, _events: &[Logged], _origin: Origin) {}
    /// The replay is done: remediations and commands are taken from now on.
    fn running(&mut self, _registry: &Registry) {}
    /// Every remediation read and what was decided (a redelivered one: `Outcome::Duplicate`).
    fn decided(&mut self, _remediation: &RemediationEvent, _decision: &Decision) {}
}

/// The engine the consumer task writes and the HTTP API reads. The lock is never held across an
/// await.
pub type SharedEngine = Arc<Mutex<Engine>>;

pub fn lock(engine: &SharedEngine) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A command for the consumer task and where its answer goes: the events it published, or why
/// nothing changed.
pub struct Request {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Vec<LifecycleEvent>, CommandError>>,
}

/// Reads the lifecycle log from its beginning to its end as of the call, folding it into a
/// registry. Blocking librdkafka calls run on a blocking thread.
pub async fn replay(settings: &LifecycleSettings) -> Result<(Registry, ReplayStats), LifecycleError> {
    replay_logged(settings).await.map(|(registry, stats, _)| (registry, stats))
}

/// [`replay`], with every event it applied and its position.
pub async fn replay_logged(
    settings: &LifecycleSettings,
) -> Result<(Registry, ReplayStats, Vec<Logged>), LifecycleError> {
    let settings = settings.clone();
    match tokio::task::spawn_blocking(move || replay_blocking(&settings)).await {
        Ok(replayed) => replayed,
        Err(join) => {
            tracing::error!(%join, "replay task died");
            Err(LifecycleError::Kafka { action: "replay lifecycle log", source: KafkaError::Canceled })
        }
    }
}

/// A partition's watermarks. Retried while the broker is still electing the leader of a topic
/// created moments ago (`vigil lifecycle register` creates the topic, then replays it).
fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    deadline: Instant,
) -> Result<(i64, i64), KafkaError> {
    use rdkafka::types::RDKafkaErrorCode::{
        LeaderNotAvailable, NotLeaderForPartition, UnknownTopicOrPartition,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.fetch_watermarks(topic, partition, left.min(Duration::from_secs(5))) {
            Err(KafkaError::MetadataFetch(
                LeaderNotAvailable | NotLeaderForPartition | UnknownTopicOrPartition,
            )) if left > Duration::from_millis(100) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

fn replay_blocking(
    settings: &LifecycleSettings,
) -> Result<(Registry, ReplayStats, Vec<Logged>), LifecycleError> {
    let kafka = |action| move |source| LifecycleError::Kafka { action, source };
    let mut config = settings.client_config();
    config
        .set("group.id", format!("{}.replay", settings.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = settings.finish(config).create().map_err(kafka("create replay consumer"))?;
    let topic = settings.lifecycle_topic.as_str();
    let timeout = settings.replay_timeout;
    let metadata =
        consumer.fetch_metadata(Some(topic), timeout).map_err(kafka("read lifecycle topic metadata"))?;
    let mut stats = ReplayStats::default();
    // Partitions with messages still to read, and the end to read them to.
    let mut pending = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = watermarks(&consumer, topic, partition.id(), Instant::now() + timeout)
            .map_err(kafka("read lifecycle watermarks"))?;
        stats.positions.insert(partition.id(), high);
        if high > low {
            pending.insert(partition.id(), high);
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Beginning)
                .map_err(kafka("assign lifecycle partitions"))?;
        }
    }
    consumer.assign(&assignment).map_err(kafka("assign lifecycle partitions"))?;
    let mut registry = Registry::new();
    let mut logged = Vec::new();
    let started = Instant::now();
    while !pending.is_empty() {
        if started.elapsed() > timeout {
            tracing::error!(?pending, "lifecycle replay did not reach the end of the log in time");
            return Err(LifecycleError::Kafka {
                action: "replay lifecycle log in time",
                source: KafkaError::Canceled,
            });
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.map_err(kafka("read lifecycle log"))?;
        logged.extend(apply_message(
            &mut registry,
            &mut stats,
            topic,
            message.partition(),
            message.offset(),
            message.payload(),
        ));
        if pending.get(&message.partition()).is_some_and(|end| message.offset() + 1 >= *end) {
            pending.remove(&message.partition());
        }
    }
    tracing::info!(topic, applied = stats.applied, rejected = stats.rejected, "lifecycle log replayed");
    Ok((registry, stats, logged))
}

/// Applies one message of the log; the event when it was new to the registry.
fn apply_message(
    registry: &mut Registry,
    stats: &mut ReplayStats,
    topic: &str,
    partition: i32,
    offset: i64,
    payload: Option<&[u8]>,
) -> Option<Logged> {
    stats.positions.insert(partition, offset + 1);
    let applied = decode::<LifecycleEvent>(payload.unwrap_or_default())
        .map_err(|source| LifecycleError::Decode { topic: topic.to_owned(), partition, offset, source })
        .and_then(|event| {
            let new = !registry.contains_event(&event.event_id);
            registry.apply(&event).map(|()| new.then_some(event))
        });
    match applied {
        Ok(event) => {
            stats.applied += 1;
            event.map(|event| Logged { event, partition, offset })
        }
        Err(error) => {
            stats.rejected += 1;
            tracing::warn!(%error, partition, offset, "lifecycle event skipped");
            None
        }
    }
}

/// Replays the log, then decides on remediations until `shutdown` is cancelled; returns the
/// registry as it stands then. Events others publish to the log meanwhile (a human approving a
/// gated decision) are folded in as they arrive, before the next remediation.
pub async fn run(
    settings: LifecycleSettings,
    shutdown: CancellationToken,
) -> Result<Registry, LifecycleError> {
    run_with_hook(settings, shutdown, |_, _| {}).await
}

/// [`run`], calling `on_decision` with every remediation read and what was decided about it,
/// once its events (if any) are acknowledged by the broker. A duplicate remediation comes with
/// [`Outcome::Duplicate`]. The hook runs on the consumer's task, so it must not block.
pub async fn run_with_hook(
    settings: LifecycleSettings,
    shutdown: CancellationToken,
    on_decision: impl FnMut(&RemediationEvent, &Decision) + Send,
) -> Result<Registry, LifecycleError> {
    struct Hook<F>(F);
    impl<F: FnMut(&RemediationEvent, &Decision) + Send> Observer for Hook<F> {
        fn decided(&mut self, remediation: &RemediationEvent, decision: &Decision) {
            (self.0)(remediation, decision)
        }
    }
    let engine: SharedEngine =
        Arc::new(Mutex::new(Engine::new(Registry::new(), Approvals::in_memory(), settings.policy.clone())));
    let (_commands, requests) = mpsc::channel(1);
    run_engine(settings, engine.clone(), requests, &mut Hook(on_decision), shutdown).await?;
    let registry = lock(&engine).registry.clone();
    Ok(registry)
}

/// The consumer: replays the log into `engine` (keeping its pending approvals that the log has
/// not answered), then takes remediations, commands from `requests` and the log's tail until
/// `shutdown`, telling `observer` about everything applied. Remediation offsets are committed
/// after the decision's events are acknowledged; a command is answered after its events are.
pub async fn run_engine(
    settings: LifecycleSettings,
    engine: SharedEngine,
    mut requests: mpsc::Receiver<Request>,
    observer: &mut impl Observer,
    shutdown: CancellationToken,
) -> Result<(), LifecycleError> {
    let kafka = |action| move |source| LifecycleError::Kafka { action, source };
    let (registry, mut stats, replayed) = replay_logged(&settings).await?;
    {
        let mut guard = lock(&engine);
        let approvals = std::mem::take(&mut guard.approvals);
        *guard = Engine::new(registry, approvals, settings.policy.clone());
        observer.applied(&guard.registry, &replayed, Origin::Replay);
    }

    let mut config = settings.client_config();
    config.set("group.id", format!("{}.tail", settings.group_id)).set("enable.auto.commit", "false");
    let tail: StreamConsumer =
        settings.finish(config).create().map_err(kafka("create lifecycle tail consumer"))?;
    let mut from = TopicPartitionList::new();
    for (partition, next) in &stats.positions {
        from.add_partition_offset(&settings.lifecycle_topic, *partition, Offset::Offset(*next))
            .map_err(kafka("assign lifecycle tail"))?;
    }
    tail.assign(&from).map_err(kafka("assign lifecycle tail"))?;

    let mut config = settings.client_config();
    config
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let remediations: StreamConsumer =
        settings.finish(config).create().map_err(kafka("create remediation consumer"))?;
    remediations.subscribe(&[&settings.remediations_topic]).map_err(kafka("subscribe to remediations"))?;

    let producer = producer(&settings)?;
    tracing::info!(remediations = %settings.remediations_topic, lifecycle = %settings.lifecycle_topic, "lifecycle consumer running");
    observer.running(&lock(&engine).registry);

    let mut commands_open = true;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            request = requests.recv(), if commands_open => match request {
                Some(request) => command(&settings, &engine, &producer, request, observer).await?,
                None => commands_open = false,
            },
            message = tail.recv() => match message {
                Ok(m) => {
                    let mut guard = lock(&engine);
                    if let Some(logged) = apply_message(&mut guard.registry, &mut stats, m.topic(), m.partition(), m.offset(), m.payload()) {
                        // Someone answered a pending approval elsewhere (another instance).
                        if let Some(remediation) = logged.event.remediation_id.clone() {
                            guard.approvals.retain(|p| p.remediation_id.as_deref() != Some(remediation.as_str()));
                        }
                        observer.applied(&guard.registry, std::slice::from_ref(&logged), Origin::Log);
                    }
                }
                Err(error) => tracing::warn!(%error, "lifecycle tail error"),
            },
            message = remediations.recv() => {
                let m = match message {
                    Ok(m) => m,
                    Err(error) => {
                        // librdkafka reconnects by itself; broker trouble passes.
                        tracing::warn!(%error, "remediation consumer error");
                        continue;
                    }
                };
                match decode::<RemediationEvent>(m.payload().unwrap_or_default()) {
                    Ok(remediation) => handle(&settings, &engine, &producer, &remediation, observer).await?,
                    Err(source) => {
                        let reason = source.reason();
                        let error = LifecycleError::Decode { topic: m.topic().to_owned(), partition: m.partition(), offset: m.offset(), source };
                        tracing::warn!(%error, deadletter = %settings.deadletter_topic, "remediation dead-lettered");
                        if !dead_letter(&settings, &producer, &m, reason, &error.to_string(), &shutdown).await {
                            break;
                        }
                    }
                }
                if let Err(error) = remediations.commit_message(&m, CommitMode::Async) {
                    // Harmless: a redelivered remediation decides nothing new.
                    tracing::debug!(%error, "remediation offset commit failed");
                }
            },
        }
    }
    tracing::info!("lifecycle consumer stopped");
    Ok(())
}

/// Copies an undecodable remediation to the dead-letter topic with the reason and its origin in
/// headers, retrying with backoff while the broker refuses; `false` if shutdown came first (the
/// message is then not committed and is read again at the next start).
async fn dead_letter(
    settings: &LifecycleSettings,
    producer: &FutureProducer,
    message: &rdkafka::message::BorrowedMessage<'_>,
    reason: &str,
    detail: &str,
    shutdown: &CancellationToken,
) -> bool {
    use rdkafka::message::{Header, OwnedHeaders};
    let (partition, offset) = (message.partition().to_string(), message.offset().to_string());
    let headers = OwnedHeaders::new()
        .insert(Header { key: "vigil.reason", value: Some(reason) })
        .insert(Header { key: "vigil.error", value: Some(detail) })
        .insert(Header { key: "vigil.source.topic", value: Some(message.topic()) })
        .insert(Header { key: "vigil.source.partition", value: Some(&partition) })
        .insert(Header { key: "vigil.source.offset", value: Some(&offset) });
    let payload = message.payload().unwrap_or_default();
    let mut wait = Duration::from_millis(100);
    loop {
        let mut record = FutureRecord::<[u8], [u8]>::to(&settings.deadletter_topic)
            .payload(payload)
            .headers(headers.clone());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        match producer.send(record, Duration::from_secs(10)).await {
            Ok(_) => return true,
            Err((error, _)) => {
                tracing::warn!(%error, retry_in = ?wait, "dead letter not delivered; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

async fn handle(
    settings: &LifecycleSettings,
    engine: &SharedEngine,
    producer: &FutureProducer,
    remediation: &RemediationEvent,
    observer: &mut impl Observer,
) -> Result<(), LifecycleError> {
    let decision = lock(engine).remediation(remediation, now_ms());
    match &decision.outcome {
        Outcome::Duplicate | Outcome::NoAction { .. } => {
            tracing::debug!(remediation = %remediation.remediation_id, outcome = ?decision.outcome, "no lifecycle change");
        }
        outcome => {
            tracing::info!(remediation = %remediation.remediation_id, model = %remediation.model_id, ?outcome, "lifecycle decision")
        }
    }
    let logged = send(settings, producer, &decision.events).await?;
    if !logged.is_empty() {
        observer.applied(&lock(engine).registry, &logged, Origin::Decision);
    }
    observer.decided(remediation, &decision);
    Ok(())
}

/// Carries out one command; a publish failure answers `Unavailable` and stops the consumer (the
/// registry already holds the events, so it must not go on).
async fn command(
    settings: &LifecycleSettings,
    engine: &SharedEngine,
    producer: &FutureProducer,
    request: Request,
    observer: &mut impl Observer,
) -> Result<(), LifecycleError> {
    let kind = request.command.kind();
    let events = match lock(engine).command(&request.command, now_ms()) {
        Ok(events) => events,
        Err(refused) => {
            tracing::info!(command = kind, %refused, "command refused");
            let _ = request.reply.send(Err(refused));
            return Ok(());
        }
    };
    match send(settings, producer, &events).await {
        Ok(logged) => {
            tracing::info!(command = kind, events = logged.len(), "command applied");
            observer.applied(&lock(engine).registry, &logged, Origin::Command);
            let _ = request.reply.send(Ok(events));
            Ok(())
        }
        Err(error) => {
            let _ = request.reply.send(Err(CommandError::new(
                CommandErrorKind::Unavailable,
                format!("could not publish to {}: {error}", settings.lifecycle_topic),
            )));
            Err(error)
        }
    }
}

/// The idempotent producer (`acks=all`) every lifecycle event goes out with.
fn producer(settings: &LifecycleSettings) -> Result<FutureProducer, LifecycleError> {
    let mut config = settings.client_config();
    config.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "0");
    settings
        .finish(config)
        .create()
        .map_err(|source| LifecycleError::Kafka { action: "create lifecycle producer", source })
}

/// Publishes `events` in order, keyed by model, each acknowledged before the next is sent; their
/// positions.
async fn send(
    settings: &LifecycleSettings,
    producer: &FutureProducer,
    events: &[LifecycleEvent],
) -> Result<Vec<Logged>, LifecycleError> {
    let mut logged = Vec::with_capacity(events.len());
    for event in events {
        let payload = encode(event);
        let record = FutureRecord::to(&settings.lifecycle_topic).key(&event.model_id).payload(&payload);
        let delivery = producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(source, _)| LifecycleError::Kafka { action: "publish lifecycle event", source })?;
        logged.push(Logged { event: event.clone(), partition: delivery.partition, offset: delivery.offset });
    }
    Ok(logged)
}

/// Appends `events` to the lifecycle log as they are, for callers outside the consumer (a human
/// registering a version, an approval). Check them against a replayed [`Registry`] first: the
/// log keeps whatever is sent, and a replay skips an illegal event.
pub async fn publish(settings: &LifecycleSettings, events: &[LifecycleEvent]) -> Result<(), LifecycleError> {
    send(settings, &producer(settings)?, events).await.map(drop)
}
